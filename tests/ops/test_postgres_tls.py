"""TLS to PostgreSQL as libpq users write it in DEVICELINK_DATABASE_URL (issue 18, item 1):
``sslmode`` (what managed services hand out), ``ssl`` and a CA file, for `db upgrade`,
the SQLAlchemy engine and the fast path's own asyncpg connections, against a private
PostgreSQL that accepts TLS connections only, with a certificate made for the test."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.cluster import PG_OS_USER, PrivatePostgres
from tests.support.http import poll, run, start_flow
from tests.support.processes import clean_env, run_devicelink
from tests.support.servers import STRONG_SECRET, Launcher

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, signed by themselves."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[tuple[PrivatePostgres, Path]]:
    server = PrivatePostgres()
    try:
        cert, key = self_signed(server.data, "server")
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_OS_USER)
            for path in (cert, key):
                os.chown(path, account.pw_uid, account.pw_gid)
        key.chmod(0o600)
        with open(server.data / "postgresql.conf", "a") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")
        # TLS or nothing: a connection that ignored the URL's parameters would be refused.
        (server.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
        server.start()
        server.create_database("tls")
        yield server, cert
    finally:
        server.destroy()


def db_upgrade(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(DEVICELINK_DATABASE_URL=url, DEVICELINK_SECRET_KEY=STRONG_SECRET)
    return run_devicelink("db", "upgrade", env=env, cwd=cwd)


@pytest.mark.parametrize("query", ["sslmode=disable", "ssl=false"])
def test_the_urls_word_is_followed_even_to_a_refusal(
    tls_postgres: tuple[PrivatePostgres, Path], tmp_path: Path, query: str
) -> None:
    server, _ = tls_postgres
    assert db_upgrade(f"{server.url('tls')}?{query}", tmp_path).returncode != 0


@pytest.mark.parametrize("query", ["sslmode=require", "ssl=require", "ssl=true"])
def test_db_upgrade_takes_the_tls_parameters_of_the_url(
    tls_postgres: tuple[PrivatePostgres, Path], tmp_path: Path, query: str
) -> None:
    server, _ = tls_postgres
    result = db_upgrade(f"{server.url('tls')}?{query}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout


def test_a_ca_file_verifies_the_server_and_another_ca_is_refused(
    tls_postgres: tuple[PrivatePostgres, Path], tmp_path: Path
) -> None:
    server, cert = tls_postgres
    verified = db_upgrade(f"{server.url('tls')}?sslmode=verify-full&sslrootcert={cert}", tmp_path)
    assert verified.returncode == 0, verified.stderr
    stranger, _ = self_signed(tmp_path, "stranger")
    refused = db_upgrade(
        f"{server.url('tls')}?sslmode=verify-full&sslrootcert={stranger}", tmp_path
    )
    assert refused.returncode != 0


@pytest.mark.parametrize("query", ["sslmode=require", "ssl=require"])
def test_serve_polls_on_the_fast_path_over_tls(
    tls_postgres: tuple[PrivatePostgres, Path], tmp_path: Path, launch: Launcher, query: str
) -> None:
    server, _ = tls_postgres
    url = f"{server.url('tls')}?{query}"
    assert db_upgrade(url, tmp_path).returncode == 0
    env = clean_env(
        DEVICELINK_DATABASE_URL=url,
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_FAST_PATH="true",
        DEVICELINK_KEY_CACHE_SIZE="1000",  # the listening connection too
    )
    devicelink = launch(env=env, cwd=tmp_path, wait_for="/readyz")
    with httpx.Client(base_url=devicelink.base_url, timeout=10) as http:
        flow = run(http, start_flow())
        pending = run(http, poll(flow["device_code"]))
    assert pending.json()["error"] == "authorization_pending", pending.text
    assert "Traceback" not in devicelink.logs()
