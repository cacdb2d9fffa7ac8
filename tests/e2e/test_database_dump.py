"""A database dump gives no code and no key away (DESIGN.md defect 2).

A complete flow runs against a real ``devicelink serve`` (start over HTTP, approve
through the service, poll for the key, use it at ``/api/me``); then the database is
dumped the way an operator or an attacker with a backup would see it, and searched for
every secret the flow handed out. The keyed hashes of the same secrets must be there,
so the dump is shown to be of the right database.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devicelink.core.codes import CodeHasher
from tests.support.accounts import approve_through_service
from tests.support.app import TEST_SECRET
from tests.support.databases import pg_dump
from tests.support.http import arun, poll, start_flow
from tests.support.processes import clean_env, free_port, one_time_passwords
from tests.support.servers import GRACEFUL_EXIT, Launcher, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

USER_AGENT = "e2e-dump-test/1.0"


@dataclass(frozen=True)
class FlowSecrets:
    device_code: str
    user_code: str
    access_token: str
    username: str

    def clear_forms(self) -> dict[str, str]:
        """Every clear form of a secret that must not appear in a dump."""
        plain_user_code = self.user_code.replace("-", "")
        # dlk_<random>_<checksum>: the random part alone is the secret, too.
        random_part = self.access_token.split("_")[1]
        return {
            "device code": self.device_code,
            "user code": self.user_code,
            "user code without the dash": plain_user_code,
            "user code in lower case": self.user_code.lower(),
            "user code without the dash in lower case": plain_user_code.lower(),
            "API key": self.access_token,
            "random part of the API key": random_part,
        }

    def hashes(self, secret: bytes) -> dict[str, bytes]:
        hasher = CodeHasher(secret)
        return {
            "device code hash": hasher.device_code(self.device_code),
            "user code hash": hasher.user_code(self.user_code.replace("-", "")),
            "API key hash": hasher.api_key(self.access_token),
        }


async def complete_flow(
    server: ServerProcess, database_url: str, secret: bytes, username: str
) -> FlowSecrets:
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=10, headers={"User-Agent": USER_AGENT}
    ) as http:
        flow = await arun(http, start_flow())
        pending = await arun(http, poll(flow["device_code"]))
        assert pending.json()["error"] == "authorization_pending", pending.text
        await approve_through_service(database_url, secret, flow["user_code"], username)
        granted = await arun(http, poll(flow["device_code"]))
        assert granted.status_code == 200, granted.text
        key = granted.json()["access_token"]
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == username
    return FlowSecrets(flow["device_code"], flow["user_code"], key, username)


def assert_no_secret_in(dump: str | bytes, flow: FlowSecrets, where: str) -> None:
    haystack = dump if isinstance(dump, bytes) else dump.encode("utf-8")
    lowered = haystack.lower()
    leaked = [
        name
        for name, value in flow.clear_forms().items()
        # Binary columns are dumped in hex (pg_dump's \\x..., sqlite3's X'...').
        if value.encode() in haystack or value.encode().hex().encode() in lowered
    ]
    assert not leaked, f"{where} holds in clear: {', '.join(leaked)}"


def raw_database_files(database: Path) -> dict[str, bytes]:
    """The bytes of the SQLite file and of its -wal/-shm/-journal companions."""
    return {
        path.name: path.read_bytes()
        for path in sorted(database.parent.glob(database.name + "*"))
        if path.is_file()
    }


@pytest.mark.defect(2)
async def test_embedded_sqlite_file_and_dump_hold_no_code_and_no_key_in_clear(
    tmp_path: Path, launch: Launcher
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    server = launch(env=clean_env(), cwd=workdir)
    database = workdir / "devicelink-data" / "devicelink.db"
    secret = (workdir / "devicelink-data" / "secret.key").read_bytes().strip()

    flow = await complete_flow(server, f"sqlite:///{database}", secret, "alice")
    (first_password,) = one_time_passwords(server.stderr())

    # While the server runs, recent pages sit in the write-ahead log.
    live = raw_database_files(database)
    assert "devicelink.db" in live
    for name, content in live.items():
        assert_no_secret_in(content, flow, f"{name} (server running)")

    assert server.stop() in GRACEFUL_EXIT, server.logs()
    stopped = raw_database_files(database)
    for name, content in stopped.items():
        assert_no_secret_in(content, flow, f"{name} (server stopped)")

    with closing(sqlite3.connect(database)) as conn:
        dump = "\n".join(conn.iterdump())
    assert_no_secret_in(dump, flow, "the sqlite3 dump")
    assert first_password not in dump, "the first account's password is in the dump"
    for name, content in stopped.items():
        assert first_password.encode() not in content, f"the first password is in {name}"

    # The dump is of the database that served the flow: its rows and hashes are there.
    assert "'alice'" in dump
    assert USER_AGENT in dump
    lowered = dump.lower()
    for name, digest in flow.hashes(secret).items():
        assert digest.hex() in lowered, f"{name} missing from the dump"
    everything = b"".join(live.values()) + b"".join(stopped.values())
    for name, digest in flow.hashes(secret).items():
        assert digest in everything, f"{name} missing from the database files"


@pytest.mark.defect(2)
@pytest.mark.postgres
async def test_pg_dump_holds_no_code_and_no_key_in_clear(
    tmp_path: Path, launch: Launcher, postgres_database: str
) -> None:
    port = free_port()
    env = clean_env(
        DEVICELINK_DATABASE_URL=postgres_database,
        DEVICELINK_SECRET_KEY=TEST_SECRET,
        DEVICELINK_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    server = launch(env=env, cwd=tmp_path, port=port)
    secret = TEST_SECRET.encode()

    flow = await complete_flow(server, postgres_database, secret, "dump-reader")
    dump = pg_dump(postgres_database)

    assert_no_secret_in(dump, flow, "pg_dump")
    # The dump is of the database that served the flow: its rows and hashes are there.
    assert "dump-reader" in dump
    assert USER_AGENT in dump
    for name, digest in flow.hashes(secret).items():
        assert digest.hex() in dump, f"{name} missing from pg_dump"
