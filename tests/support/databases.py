"""PostgreSQL databases of the tests: created on the shared server, read, dumped, emptied.

The server is ``DEVICELINK_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; where that variable is unset and
nothing answers there, a private server started for the run: tests/support/private_servers.py).
A configured server is required: when it cannot be reached a test fails, it does not skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from devicelink.storage import create_engine_for_url, upgrade_database
from devicelink.storage.tables import metadata
from tests.support.private_servers import postgres_for_run

ADMIN_POSTGRES_URL = postgres_for_run()
TABLES = tuple(table.name for table in reversed(metadata.sorted_tables))
"""devicelink's tables, children first (all of them: a table left out keeps its rows
from one test to the next, as the secret's fingerprint in ``instance_facts`` would)."""


async def delete_all_rows(conn: AsyncConnection) -> None:
    """Empty devicelink's tables on ``conn``: DELETE, children first. On tables this
    small it is much faster than TRUNCATE, which PostgreSQL makes rewrite every table."""
    for table in TABLES:
        await conn.exec_driver_sql(f"DELETE FROM {table}")


def dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq/asyncpg DSN."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def pg_admin(statement: str) -> None:
    """Run ``statement`` on the admin connection (CREATE or DROP DATABASE)."""
    try:
        conn = await asyncpg.connect(dsn(ADMIN_POSTGRES_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is required for this suite and {ADMIN_POSTGRES_URL} is unreachable: "
            f"{exc}. Start it, set DEVICELINK_TEST_POSTGRES, or deselect with -m 'not postgres'."
        ) from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres_database(prefix: str, *, migrate: bool = True) -> Iterator[str]:
    """A new database named ``<prefix>_<pid>_<random>``, migrated unless ``migrate`` is
    false (for tests of the operator's ``devicelink db upgrade``); its URL. Dropped
    afterwards, whoever is still connected."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    url = f"{dsn(ADMIN_POSTGRES_URL).rsplit('/', 1)[0]}/{name}"
    try:
        if migrate:
            upgrade_database(url)
        yield url
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def pg_script(url: str, script: str) -> None:
    """Run ``script`` (one statement or several) on the database at ``url``."""
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


async def pg_fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *args)
    finally:
        await conn.close()
    return rows


def pg_fetch_now(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """:func:`pg_fetch` for a test that runs no event loop."""
    return asyncio.run(pg_fetch(url, query, *args))


def pg_dump(url: str) -> str:
    """``pg_dump`` of the database at ``url``, as text; RuntimeError when it fails."""
    from sqlalchemy.engine import make_url

    binary = shutil.which("pg_dump")
    if binary is None:
        raise RuntimeError("pg_dump is not on PATH")
    parsed = make_url(dsn(url))
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    where = ["-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432)]
    who = ["-U", parsed.username or "postgres", "--no-password"]
    command = [binary, *where, *who, str(parsed.database)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"pg_dump failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@dataclass
class Database:
    """The database of one test (the ``database`` fixture of tests/conftest.py)."""

    backend: str
    url: str

    async def truncate(self) -> None:
        engine = create_engine_for_url(self.url)
        try:
            async with engine.begin() as conn:
                await delete_all_rows(conn)
        finally:
            await engine.dispose()
