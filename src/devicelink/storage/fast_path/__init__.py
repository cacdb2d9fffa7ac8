"""The hot paths on PostgreSQL: one statement each, on asyncpg's own pool.

SQLAlchemy keeps the schema, the migrations and every other path. Here:
:mod:`.statements` the SQL, :mod:`.store` the requests that run it
(:class:`AsyncpgFastPath`), :mod:`.pool` the pool, and :mod:`.listener` the connection
that hears of key changes, so that key lookups may be answered from memory.
"""

from devicelink.storage.fast_path.pool import HOT_PATH_SETTINGS, asyncpg_dsn
from devicelink.storage.fast_path.store import AsyncpgFastPath

__all__ = ["HOT_PATH_SETTINGS", "AsyncpgFastPath", "asyncpg_dsn"]
