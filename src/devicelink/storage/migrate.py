"""Schema migrations through Alembic: the only way the schema changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from devicelink.storage.database import create_engine_for_url, quote_schema

MIGRATIONS = Path(__file__).parent / "migrations"
# Several processes may start at once against one PostgreSQL; only one migrates.
_PG_MIGRATION_LOCK = 0x6465766C  # "devl"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class SchemaOutOfDate(Exception):
    """The database's schema is older than this release needs; the message says what to
    run."""

    def __init__(self, current: str | None, head: str) -> None:
        where = (
            "the database has no devicelink tables yet"
            if current is None
            else f"the database's schema is at revision {current}, this release needs {head}"
        )
        super().__init__(f"{where}: run `devicelink db upgrade`")
        self.current = current
        self.head = head


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _current_revision(connection: Connection, schema: str | None) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
    return context.get_current_revision()


async def check_schema(engine: AsyncEngine, *, schema: str | None = None) -> None:
    """Raise :class:`SchemaOutOfDate` when migrations this release knows are not applied.
    A revision this release does not know (a newer release migrated the database during
    a rolling upgrade) passes: the guide announces the migrations an older release
    cannot run against."""
    async with engine.connect() as connection:
        current = await connection.run_sync(_current_revision, schema)
    script = _script()
    head = script.get_current_head()
    assert head is not None, "no migrations found"
    known = {revision.revision for revision in script.walk_revisions()}
    if current is None or (current != head and current in known):
        raise SchemaOutOfDate(current, head)


def _upgrade(connection: Connection, revision: str, schema: str | None) -> list[str]:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        if schema:
            _ensure_schema(connection, schema)
    config = alembic_config()
    config.attributes["connection"] = connection
    config.attributes["version_table_schema"] = schema
    before = _current_revision(connection, schema)
    command.upgrade(config, revision)
    after = _current_revision(connection, schema)
    if after is None or after == before:
        return []
    applied = _script().iterate_revisions(after, before)
    return [step.revision for step in reversed(list(applied))]


def _ensure_schema(connection: Connection, schema: str) -> None:
    """Create devicelink's schema unless it exists. Looked up first: ``CREATE SCHEMA IF
    NOT EXISTS`` needs the CREATE privilege on the database even when the schema is
    there, which a role given only its own, ready-made schema does not have."""
    exists = connection.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
    ).first()
    if exists is None:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote_schema(schema)}"))


async def upgrade_engine(
    engine: AsyncEngine, revision: str = "head", *, schema: str | None = None
) -> list[str]:
    """Apply migrations up to ``revision`` over an existing engine; the revisions applied,
    oldest first. With a ``schema`` (PostgreSQL; the engine made with the same one), the
    schema is created if missing and Alembic's version table lives there too."""
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade, revision, schema)


def upgrade_database(url: str, revision: str = "head", *, schema: str | None = None) -> list[str]:
    """Apply migrations to the database at ``url`` (blocking; for commands and start-up);
    the revisions applied, oldest first."""

    async def run() -> list[str]:
        engine = create_engine_for_url(url, schema=schema, poolclass=NullPool)
        try:
            return await upgrade_engine(engine, revision, schema=schema)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def check_schema_at(url: str, *, schema: str | None = None) -> None:
    """:func:`check_schema` of the database at ``url`` (blocking; for commands)."""

    async def run() -> None:
        engine = create_engine_for_url(url, schema=schema, poolclass=NullPool)
        try:
            await check_schema(engine, schema=schema)
        finally:
            await engine.dispose()

    asyncio.run(run())
