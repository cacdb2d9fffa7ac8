"""devicelink's tables in a PostgreSQL schema of their own (``DEVICELINK_DATABASE_SCHEMA``):
the schema is created if missing, the migrations and their version table run there, and
every connection (the engine's, the fast path's, the listening one) reads and writes
there, whatever other tables of the same names the database holds."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from devicelink.cli import main
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.storage.fast_path import AsyncpgFastPath
from devicelink.storage.migrate import alembic_config
from devicelink.storage.tables import metadata, on_database
from tests.support.databases import (
    fresh_postgres_database,
    pg_admin,
    pg_fetch_now,
    pg_script,
)

SCHEMA = "devicelink"


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    with fresh_postgres_database("devicelink_schema", migrate=False) as url:
        yield url


def tables_by_schema(url: str) -> dict[str, set[str]]:
    rows = pg_fetch_now(
        url,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_schema"], set()).add(row["table_name"])
    return found


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def test_migrations_create_the_schema_and_keep_to_it(empty_postgres: str) -> None:
    upgrade_database(empty_postgres, schema=SCHEMA)
    upgrade_database(empty_postgres, schema=SCHEMA)  # idempotent
    tables = tables_by_schema(empty_postgres)
    assert set(tables) == {SCHEMA}  # nothing in public
    assert {"alembic_version", "users", "api_keys", "issuer_revocations"} <= tables[SCHEMA]
    versions = pg_fetch_now(empty_postgres, f"SELECT version_num FROM {SCHEMA}.alembic_version")
    assert [row["version_num"] for row in versions] == [head_revision()]

    def diff(connection: Connection) -> list[Any]:
        include = on_database(connection.dialect.name)
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(context, metadata))

    async def compare() -> list[Any]:
        engine = create_engine_for_url(empty_postgres, schema=SCHEMA, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(diff)
        finally:
            await engine.dispose()

    assert asyncio.run(compare()) == []  # the schema migrated into matches the models


def test_a_role_given_only_its_own_schema_migrates_and_works(empty_postgres: str) -> None:
    """A DBA's set-up: the schema made for devicelink's role, which may not create
    schemas in the database (``CREATE SCHEMA IF NOT EXISTS`` alone would be refused)."""
    role = f"devicelink_role_{secrets.token_hex(3)}"
    database = make_url(empty_postgres).database
    asyncio.run(pg_admin(f"CREATE ROLE {role} LOGIN"))
    try:
        asyncio.run(pg_script(empty_postgres, f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {role}"))
        as_role = make_url(empty_postgres).set(username=role).render_as_string(False)
        upgrade_database(as_role, schema=SCHEMA)

        async def use() -> str | None:
            store = SqlStore(create_engine_for_url(as_role, schema=SCHEMA))
            try:
                async with store.transaction() as tx:
                    added = await tx.users.add("alice", None, datetime.now(UTC))
                async with store.transaction() as tx:
                    found = await tx.users.get(added.id)
            finally:
                await store.dispose()
            return found.username if found else None

        assert asyncio.run(use()) == "alice"
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        asyncio.run(pg_admin(f"DROP ROLE IF EXISTS {role}"))


def test_the_fast_path_and_its_listener_keep_to_the_schema(empty_postgres: str) -> None:
    asyncio.run(pg_script(empty_postgres, "CREATE TABLE users (id int, nickname text)"))
    upgrade_database(empty_postgres, schema=SCHEMA)

    async def lookup() -> tuple[bool, bool]:
        hot = await AsyncpgFastPath.connect(
            empty_postgres, max_size=2, key_cache_size=10, schema=SCHEMA
        )
        try:
            missing = await hot.key_with_owner(b"\0" * 32)  # joins devicelink's users
            for _ in range(100):  # the listening connection hears its heartbeat
                if hot.cache.live:
                    break
                await asyncio.sleep(0.05)
            return missing is None, hot.cache.live
        finally:
            await hot.close()

    assert asyncio.run(lookup()) == (True, True)


def test_sqlite_has_no_schemas(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL only"):
        create_engine_for_url(f"sqlite:///{tmp_path / 'x.db'}", schema=SCHEMA)


def test_db_upgrade_takes_the_schema_setting(
    empty_postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICELINK_DATABASE_URL", empty_postgres)
    monkeypatch.setenv("DEVICELINK_DATABASE_SCHEMA", SCHEMA)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"schema {SCHEMA} is up to date" in result.output
    assert set(tables_by_schema(empty_postgres)) == {SCHEMA}

    monkeypatch.delenv("DEVICELINK_DATABASE_URL")
    monkeypatch.setenv("DEVICELINK_DATA_DIR", str(tmp_path / "data"))
    refused = CliRunner().invoke(main, ["db", "upgrade"])
    assert refused.exit_code == 2
    assert "DEVICELINK_DATABASE_SCHEMA applies to PostgreSQL only" in refused.output
