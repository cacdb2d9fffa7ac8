"""Schema migrations through Alembic: the only way the schema changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
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


def _upgrade(connection: Connection, revision: str, schema: str | None) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        if schema:
            _ensure_schema(connection, schema)
    config = alembic_config()
    config.attributes["connection"] = connection
    config.attributes["version_table_schema"] = schema
    command.upgrade(config, revision)


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
) -> None:
    """Apply migrations up to ``revision`` over an existing engine. With a ``schema``
    (PostgreSQL; the engine made with the same one), the schema is created if missing
    and Alembic's version table lives there too."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision, schema)


def upgrade_database(url: str, revision: str = "head", *, schema: str | None = None) -> None:
    """Apply migrations to the database at ``url`` (blocking; for commands and start-up)."""

    async def run() -> None:
        engine = create_engine_for_url(url, schema=schema, poolclass=NullPool)
        try:
            await upgrade_engine(engine, revision, schema=schema)
        finally:
            await engine.dispose()

    asyncio.run(run())
