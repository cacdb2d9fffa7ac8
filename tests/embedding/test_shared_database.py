"""devicelink on the host's own PostgreSQL database (issue 17, item 5): the defect was a
migration that failed on ``users already exists``. With ``DEVICELINK_DATABASE_SCHEMA``
devicelink's tables, its migrations' version table and the fast path's statements live
in a schema of their own, beside the host's ``users``, which nothing touches; and the
lifespan creates the data directory the embedded SQLite default needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.host_app.app import build_app
from pydantic import SecretStr

from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server import DeviceLink
from devicelink.storage.fast_path import AsyncpgFastPath
from tests.support.app import TEST_SECRET
from tests.support.databases import fresh_postgres_database, pg_fetch, pg_script
from tests.support.http import approve, arun, poll, start_flow

pytestmark = pytest.mark.anyio

HOST = "https://app.example.com"
SCHEMA = "devicelink"
HOST_TABLES = """
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL UNIQUE, plan text);
INSERT INTO users (email, plan) VALUES ('owner@acme.example', 'gold');
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('host_0042');
"""
"""The host's own tables: its users, and its own Alembic history."""


@pytest.fixture
def host_database() -> Iterator[str]:
    """A PostgreSQL database that already holds the host's tables, devicelink's not yet."""
    with fresh_postgres_database("devicelink_shared", migrate=False) as url:
        asyncio.run(pg_script(url, HOST_TABLES))
        yield url


async def host_tables(url: str) -> list[tuple[str, str]]:
    rows = await pg_fetch(
        url,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    )
    return [(row["table_schema"], row["table_name"]) for row in rows]


@pytest.fixture
def fast_path_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fast path's statements run in this test, by name."""
    calls: list[str] = []
    for name in ("start_flow", "poll", "key_with_owner"):
        original: Callable[..., Awaitable[Any]] = getattr(AsyncpgFastPath, name)

        def spy(original: Callable[..., Awaitable[Any]], name: str) -> Callable[..., Any]:
            async def counted(*args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return await original(*args, **kwargs)

            return counted

        monkeypatch.setattr(AsyncpgFastPath, name, spy(original, name))
    return calls


async def test_devicelink_in_a_schema_beside_the_hosts_users_table(
    host_database: str, tmp_path: Path, fast_path_calls: list[str]
) -> None:
    settings = Settings(
        database_url=host_database,
        database_schema=SCHEMA,
        auto_migrate=True,  # the host's start-up migrates devicelink, as a host would
        fast_path=True,
        public_url=f"{HOST}/auth",
        secret_key=SecretStr(TEST_SECRET),
        data_dir=tmp_path / "data",
        local_accounts=False,
    )
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=f"{HOST}/auth") as http:
            signed_in = await http.post(f"{HOST}/host/login", data={"username": "alice"})
            assert signed_in.status_code == 200
            flow = await arun(http, start_flow())
            pending = await arun(http, poll(flow["device_code"]))
            assert pending.json()["error"] == "authorization_pending"
            await arun(http, approve(flow["user_code"]))
            token = await arun(http, poll(flow["device_code"]))
            assert token.status_code == 200, token.text
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            me = await http.get("/api/me", headers=auth)
            assert me.status_code == 200, me.text
            assert me.json()["sub"] == "alice"
            assert (await http.get(f"{HOST}/host/whoami", headers=auth)).status_code == 200
            runtime = DeviceLink.runtime_of(app)
            async with runtime.store.transaction() as tx:
                assert await tx.users.count() == 1  # devicelink's users: alice alone

        # Every request the fast path answers on PostgreSQL took it, in the schema.
        assert {"start_flow", "poll", "key_with_owner"} <= set(fast_path_calls)

    tables = await host_tables(host_database)
    assert ("public", "users") in tables
    assert [name for schema, name in tables if schema == "public"] == ["alembic_version", "users"]
    ours = {name for schema, name in tables if schema == SCHEMA}
    assert {"alembic_version", "users", "api_keys", "device_authorizations"} <= ours
    host_users = await pg_fetch(host_database, "SELECT id, email, plan FROM public.users")
    assert [tuple(row) for row in host_users] == [(1, "owner@acme.example", "gold")]
    host_version = await pg_fetch(host_database, "SELECT version_num FROM public.alembic_version")
    assert [row["version_num"] for row in host_version] == ["host_0042"]
    keys = await pg_fetch(host_database, f"SELECT count(*) AS n FROM {SCHEMA}.api_keys")
    assert keys[0]["n"] == 1


async def test_without_a_schema_the_hosts_users_table_is_in_the_way(
    host_database: str, tmp_path: Path
) -> None:
    """The defect as it was: devicelink's migration meets the host's own tables (its
    Alembic history first, then ``users``) and stops, changing nothing of the host's."""
    settings = Settings(
        database_url=host_database,
        auto_migrate=True,
        public_url=f"{HOST}/auth",
        secret_key=SecretStr(TEST_SECRET),
        data_dir=tmp_path / "data",
    )
    app = build_app(settings)
    with pytest.raises(Exception, match=r"already exists|Can't locate revision"):
        async with app.router.lifespan_context(app):
            pass
    host_users = await pg_fetch(host_database, "SELECT email FROM public.users")
    assert [row["email"] for row in host_users] == ["owner@acme.example"]


async def test_the_lifespan_creates_the_data_directory_it_was_given(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "there" / "yet"
    settings = Settings(public_url="http://127.0.0.1:9000/auth", data_dir=data_dir)
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9000") as http:
            flow = await http.post("/auth/oauth/device/authorize", data={})
            assert flow.status_code == 200, flow.text
    assert (data_dir / "devicelink.db").is_file()
    assert data_dir.stat().st_mode & 0o077 == 0  # the secret and the database are kept there


def test_a_schema_is_refused_on_sqlite_with_what_to_do(tmp_path: Path) -> None:
    on_sqlite = Settings(
        public_url="http://127.0.0.1:9000/auth", data_dir=tmp_path, database_schema=SCHEMA
    )
    with pytest.raises(ConfigurationError, match="DATABASE_SCHEMA applies to PostgreSQL only"):
        on_sqlite.check()
    for bad in ("Devicelink", "dev-link", "1st", "pg_devicelink", "a" * 64):
        wrong = Settings(
            public_url="http://127.0.0.1:9000/auth",
            database_url="postgresql://devicelink@127.0.0.1/app",
            database_schema=bad,
        )
        with pytest.raises(ConfigurationError, match="lower-case PostgreSQL name"):
            wrong.check()
    empty = Settings(public_url="http://127.0.0.1:9000/auth", database_schema="")
    assert empty.database_schema is None  # empty: public, as before
