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

from devicelink.storage.database import create_engine_for_url

MIGRATIONS = Path(__file__).parent / "migrations"
# Several processes may start at once against one PostgreSQL; only one migrates.
_PG_MIGRATION_LOCK = 0x6465766C  # "devl"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` over an existing engine."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply migrations to the database at ``url`` (blocking; for commands and start-up)."""

    async def run() -> None:
        engine = create_engine_for_url(url, poolclass=NullPool)
        try:
            await upgrade_engine(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
