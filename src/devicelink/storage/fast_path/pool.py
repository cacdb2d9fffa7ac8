"""asyncpg's own pool for the fast path: how it connects, and what its failures mean."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from devicelink.core.ports import StorageUnavailable
from devicelink.storage.database import connection_settings, libpq_tls

# What asyncpg raises when PostgreSQL is down, restarting or unreachable (SQLSTATE
# classes 08 and 57), and what the driver raises for a connection it lost.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)

HOT_PATH_SETTINGS = {"synchronous_commit": "off"}
"""The fast path's writes (a poll's bookkeeping, a new flow and its audit event, a key's
last use) do not wait for their commit to reach the disk. PostgreSQL's asynchronous
commit never loses consistency, only, in a crash of the database host itself, the last
moments of such writes (at most three times ``wal_writer_delay``): polls then judged
against an older last poll, or a flow started just before the crash that its device is
told it does not know (the CLI asks its user to log in again). Approvals, keys,
revocations and everything else go through the other pool and wait for the disk as
always. What it buys: a poll does not wait for the disk behind whatever else is being
written (a large purge, say)."""


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as the DSN asyncpg takes, its TLS parameters as libpq
    names them (asyncpg would take any other query parameter for a server setting)."""
    rest, tls = libpq_tls(url)
    parsed = make_url(rest).set(drivername="postgresql").update_query_dict(tls)
    return parsed.render_as_string(hide_password=False)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset between uses: these connections only ever run single-statement,
    autocommit queries, which leave no session state, and asyncpg's default reset
    (``RESET ALL; UNLISTEN *; ...``) would cost a round trip per request."""


async def create_pool(dsn: str, *, max_size: int, schema: str | None = None) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        command_timeout=15,
        timeout=10,
        reset=_keep_session,
        server_settings={**connection_settings(schema), **HOT_PATH_SETTINGS},
    )


async def fetch(pool: asyncpg.Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """``pool.fetch``, an unreachable database raised as :class:`StorageUnavailable`."""
    try:
        rows: list[asyncpg.Record] = await pool.fetch(query, *args)
    except UNAVAILABLE as exc:
        raise StorageUnavailable(type(exc).__name__) from exc
    return rows


async def fetchrow(pool: asyncpg.Pool, query: str, *args: Any) -> asyncpg.Record | None:
    """``pool.fetchrow``, an unreachable database raised as :class:`StorageUnavailable`."""
    try:
        row: asyncpg.Record | None = await pool.fetchrow(query, *args)
    except UNAVAILABLE as exc:
        raise StorageUnavailable(type(exc).__name__) from exc
    return row
