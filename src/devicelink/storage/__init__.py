"""Persistence: tables, repositories and Alembic migrations on SQLAlchemy 2 (async), and
the fast path on asyncpg.

Runs on SQLite (aiosqlite) and PostgreSQL (asyncpg). The repositories own no protocol
decision: they store what ``core`` decided, with compare-and-set updates (a poll hands the
row it read to ``decide_poll``). The fast path's statements are the exception: for speed
they restate when a poll is recorded and its pace, and a new flow's scope check, whose
rules live in :mod:`devicelink.core.lifecycle` (``poll_refusal``, ``pace_poll``,
``granted_scope``); see :mod:`devicelink.storage.fast_path.statements`.
"""

from devicelink.storage.database import SqlStore, create_engine_for_url, normalise_database_url
from devicelink.storage.migrate import upgrade_database

__all__ = ["SqlStore", "create_engine_for_url", "normalise_database_url", "upgrade_database"]
