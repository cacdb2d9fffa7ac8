"""Schema changes happen only in Alembic migrations.

After ``upgrade_database`` on an empty SQLite file and an empty PostgreSQL database,
Alembic's autogenerate comparison finds nothing between the migrated schema and
``devicelink.storage.tables.metadata``: a change to the models without a migration (or
the reverse) fails here. Upgrading is idempotent and leaves ``alembic_version`` at head.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.storage.migrate import alembic_config
from devicelink.storage.tables import metadata, on_database
from tests.support.databases import fresh_postgres_database


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables at all, of the given backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgres_database("devicelink_migrate", migrate=False) as url:
        yield url


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _inspect(connection: Connection) -> dict[str, Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_object": on_database(connection.dialect.name),
        },
    )
    return {
        "diff": compare_metadata(context, metadata),
        "tables": set(inspect(connection).get_table_names()),
        "versions": [
            row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))
        ],
    }


def inspect_schema(url: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        engine = create_engine_for_url(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_inspect)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_migrated_schema_matches_the_models(empty_database: str) -> None:
    upgrade_database(empty_database)
    schema = inspect_schema(empty_database)
    assert schema["diff"] == [], "the models and the migrations disagree; write a migration"
    assert schema["tables"] == set(metadata.tables) | {"alembic_version"}


def test_alembic_version_holds_the_head_revision(empty_database: str) -> None:
    upgrade_database(empty_database)
    assert inspect_schema(empty_database)["versions"] == [head_revision()]


def test_upgrade_is_idempotent(empty_database: str) -> None:
    upgrade_database(empty_database)
    upgrade_database(empty_database)
    schema = inspect_schema(empty_database)
    assert schema["diff"] == []
    assert schema["versions"] == [head_revision()]


def test_the_comparison_notices_a_schema_the_migrations_did_not_make(
    empty_database: str,
) -> None:
    """The guard itself works: a column added behind Alembic's back is reported."""
    upgrade_database(empty_database)

    async def add_column() -> None:
        engine = create_engine_for_url(empty_database, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("ALTER TABLE users ADD COLUMN nickname TEXT")
        finally:
            await engine.dispose()

    asyncio.run(add_column())
    diff = inspect_schema(empty_database)["diff"]
    assert [(d[0], d[2], d[3].name) for d in diff] == [("remove_column", "users", "nickname")]


# Each process imports first, then waits for a common start so that the upgrades overlap.
UPGRADE_IN_A_PROCESS = """
import sys, time
from devicelink.storage import upgrade_database
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade_database(sys.argv[1])
"""
PROCESSES = 6


@pytest.mark.parametrize("backend", ["postgres"])
def test_concurrent_upgrades_on_postgres_migrate_once(empty_database: str) -> None:
    """Several server processes starting together against one empty PostgreSQL: one
    migrates, the others wait for it and find nothing to do. (Processes, not threads:
    Alembic's ``op`` and ``context`` are module-level proxies.)"""
    start = str(time.time() + 2)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", UPGRADE_IN_A_PROCESS, empty_database, start],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        outcomes = [(worker.communicate(timeout=60)[1], worker.returncode) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [code for _, code in outcomes] == [0] * PROCESSES, [err for err, _ in outcomes]
    schema = inspect_schema(empty_database)
    assert schema["diff"] == []
    assert schema["versions"] == [head_revision()]


def test_accounts_whose_names_differ_only_by_case_keep_working_after_0008(
    empty_database: str,
) -> None:
    """Before 0008 ``Admin`` and ``admin`` could both exist: both keep their accounts
    (and so their keys); afterwards no account can take either name again."""
    upgrade_database(empty_database, "0007")

    async def seed_then_upgrade() -> list[str]:
        engine = create_engine_for_url(empty_database, poolclass=NullPool)
        try:
            async with engine.begin() as connection:
                for username in ("admin", "Admin", "bob"):
                    await connection.execute(
                        text(
                            "INSERT INTO users (username, created_at, provider) "
                            "VALUES (:name, CURRENT_TIMESTAMP, 'local')"
                        ),
                        {"name": username},
                    )
        finally:
            await engine.dispose()
        await asyncio.to_thread(upgrade_database, empty_database)
        store = SqlStore(create_engine_for_url(empty_database, poolclass=NullPool))
        try:
            async with store.transaction() as tx:
                found = [
                    user.username
                    for name in ("admin", "Admin", "ADMIN", "bob", "BOB")
                    if (user := await tx.users.get_by_username(name)) is not None
                ]
            for taken in ("ADMIN", "Bob"):
                with pytest.raises(ValueError, match="already exists"):
                    async with store.transaction() as tx:
                        await tx.users.add(taken, None, datetime.now(UTC))
        finally:
            await store.dispose()
        return found

    assert asyncio.run(seed_then_upgrade()) == ["admin", "Admin", "admin", "bob", "bob"]
    assert inspect_schema(empty_database)["diff"] == []


def test_each_code_hash_is_unique_through_a_hash_index_on_postgresql(
    empty_database: str, backend: str
) -> None:
    """Migration 0012: on PostgreSQL the device and user code hashes are kept unique by
    exclusion constraints on hash indexes (the comparison above cannot see those: Alembic
    does not reflect exclusion constraints), on SQLite by unique constraints as before."""
    upgrade_database(empty_database)

    def constraints(connection: Connection) -> tuple[list[Any], list[Any]]:
        found = inspect(connection)
        return (
            found.get_unique_constraints("device_authorizations"),
            found.get_indexes("device_authorizations"),
        )

    async def run() -> tuple[list[Any], list[Any]]:
        engine = create_engine_for_url(empty_database, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(constraints)
        finally:
            await engine.dispose()

    uniques, indexes = asyncio.run(run())
    columns = [["device_code_hash"], ["user_code_hash"]]
    if backend == "sqlite":
        assert sorted(u["column_names"] for u in uniques) == columns
        return
    assert uniques == []
    by_hash = [
        index["column_names"]
        for index in indexes
        if index.get("dialect_options", {}).get("postgresql_using") == "hash"
        and index.get("duplicates_constraint") == index["name"]
    ]
    assert sorted(by_hash) == columns
