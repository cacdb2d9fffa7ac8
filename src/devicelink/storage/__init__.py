"""Persistence on SQLAlchemy 2 (async): tables, repositories, Alembic migrations.

Runs on SQLite (aiosqlite) and PostgreSQL (asyncpg). This package does not own any
protocol decision: it stores what the service decided, with compare-and-set updates.
"""

from devicelink.storage.database import SqlStore, create_engine_for_url, normalise_database_url
from devicelink.storage.migrate import upgrade_database

__all__ = ["SqlStore", "create_engine_for_url", "normalise_database_url", "upgrade_database"]
