"""Grants and redirect URIs per client (issue 12): migration 0011 on both databases (the
clients that existed keep the device grant; the default client gains same-device
sign-in), the default client of a fresh server, the operator's ``clients add|edit``,
and a host's ``ClientSpec``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from devicelink.cli import main
from devicelink.core.codes import CodeHasher
from devicelink.core.models import AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, Client
from devicelink.runtime.clients import ClientSpec, check_client_specs
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server.app import create_app
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from tests.support.databases import fresh_postgres_database

LOOPBACK = ("http://127.0.0.1/callback", "http://[::1]/callback")


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgres_database("devicelink_0011", migrate=False) as url:
        yield url


async def stored_clients(url: str) -> dict[str, Client]:
    store = SqlStore(create_engine_for_url(url, poolclass=NullPool))
    try:
        async with store.transaction() as tx:
            return {client.client_id: client for client in await tx.clients.list()}
    finally:
        await store.dispose()


def test_after_0011_existing_clients_keep_the_device_grant_and_the_default_gains_loopback(
    empty_database: str,
) -> None:
    upgrade_database(empty_database, "0010")

    async def seed() -> None:
        engine = create_engine_for_url(empty_database, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                for client_id in ("devicelink-cli", "ci-bot"):
                    await connection.execute(
                        text(
                            "INSERT INTO clients (client_id, name, scopes, confidential, "
                            "created_at) VALUES (:id, :id, 'api', false, CURRENT_TIMESTAMP)"
                        ),
                        {"id": client_id},
                    )
        finally:
            await engine.dispose()

    asyncio.run(seed())
    upgrade_database(empty_database)
    clients = asyncio.run(stored_clients(empty_database))
    assert clients["ci-bot"].grant_types == (DEVICE_CODE_GRANT,)
    assert clients["ci-bot"].redirect_uris == ()
    assert set(clients["devicelink-cli"].grant_types) == {
        AUTHORIZATION_CODE_GRANT,
        DEVICE_CODE_GRANT,
    }
    assert clients["devicelink-cli"].redirect_uris == LOOPBACK


@pytest.mark.anyio
async def test_a_fresh_server_creates_the_default_client_with_both_grants(
    settings: Settings,
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        clients = await stored_clients(settings.effective_database_url())
    default = clients["devicelink-cli"]
    assert set(default.grant_types) == {AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT}
    assert default.redirect_uris == LOOPBACK


# --- devicelink clients add|edit ----------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("DEVICELINK_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "data"
    monkeypatch.setenv("DEVICELINK_DATA_DIR", str(directory))
    code, output = run("db", "upgrade")
    assert code == 0, output
    return directory


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def client_in(data_dir: Path, client_id: str) -> Client:
    url = Settings(data_dir=data_dir).effective_database_url()
    return asyncio.run(stored_clients(url))[client_id]


def test_clients_add_takes_repeated_grants_and_redirect_uris(data_dir: Path) -> None:
    code, output = run(
        "clients",
        "add",
        "acme-cli",
        "--grant",
        "authorization_code",
        "--grant",
        "device_code",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--redirect-uri",
        "http://[::1]/callback",
    )
    assert code == 0, output
    client = client_in(data_dir, "acme-cli")
    assert set(client.grant_types) == {AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT}
    assert client.redirect_uris == LOOPBACK


def test_clients_add_without_a_grant_gives_the_device_grant(data_dir: Path) -> None:
    code, output = run("clients", "add", "old-style")
    assert code == 0, output
    client = client_in(data_dir, "old-style")
    assert (client.grant_types, client.redirect_uris) == ((DEVICE_CODE_GRANT,), ())
    code, output = run("clients", "add", "full-name", "--grant", DEVICE_CODE_GRANT)
    assert code == 0, output
    assert client_in(data_dir, "full-name").grant_types == (DEVICE_CODE_GRANT,)


@pytest.mark.rfc("8252", "7.3")
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--redirect-uri", "http://localhost/callback"], "not localhost"),
        (["--redirect-uri", "https://app.example/callback"], "http://127.0.0.1/PATH"),
        (["--redirect-uri", "http://127.0.0.1:8000/callback"], "leave the port out"),
        ([], "needs a redirect URI"),
    ],
)
def test_clients_add_refuses_what_same_device_sign_in_cannot_use(
    data_dir: Path, args: list[str], says: str
) -> None:
    code, output = run("clients", "add", "bad-cli", "--grant", "authorization_code", *args)
    assert code != 0
    assert says in output
    url = Settings(data_dir=data_dir).effective_database_url()
    assert "bad-cli" not in asyncio.run(stored_clients(url))


def test_clients_edit_switches_the_device_grant_off(data_dir: Path) -> None:
    run("clients", "add", "acme-cli")
    code, output = run(
        "clients",
        "edit",
        "acme-cli",
        "--grant",
        "authorization_code",
        "--redirect-uri",
        "http://127.0.0.1/callback",
    )
    assert code == 0, output
    client = client_in(data_dir, "acme-cli")
    assert client.grant_types == (AUTHORIZATION_CODE_GRANT,)
    assert client.redirect_uris == ("http://127.0.0.1/callback",)


# --- a host's clients ---------------------------------------------------------------------


def test_a_client_spec_with_a_bad_redirect_uri_refuses_to_start() -> None:
    good = ClientSpec(
        "acme", grant_types=("authorization_code",), redirect_uris=("http://127.0.0.1/cb",)
    )
    check_client_specs([good])
    bad = ClientSpec(
        "acme", grant_types=("authorization_code",), redirect_uris=("http://localhost/cb",)
    )
    with pytest.raises(ConfigurationError, match="not localhost"):
        check_client_specs([bad])
    with pytest.raises(ConfigurationError, match="unknown grant"):
        check_client_specs([ClientSpec("acme", grant_types=("password",))])


def test_a_client_spec_stores_full_grant_names() -> None:
    spec = ClientSpec(
        "acme",
        grant_types=("device_code", "authorization_code"),
        redirect_uris=("http://127.0.0.1/cb",),
    )
    client = spec.to_client(
        Settings(secret_key=SecretStr("s" * 40)), CodeHasher(b"k" * 32), now=datetime.now(UTC)
    )
    assert set(client.grant_types) == {AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT}
