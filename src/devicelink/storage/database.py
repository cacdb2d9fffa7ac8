"""Engines and the :class:`SqlStore`, which hands out one transaction at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from devicelink.core.ports import StorageUnavailable
from devicelink.storage.keycache import CHANNEL
from devicelink.storage.repositories import (
    SqlApiKeyRepository,
    SqlAuditLog,
    SqlAuthorizationCodeRepository,
    SqlBrowserSessionRepository,
    SqlClientRepository,
    SqlDeviceAuthorizationRepository,
    SqlInstanceFacts,
    SqlIssuerRevocationRepository,
    SqlUserRepository,
)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalise_database_url(url: str) -> str:
    """Accept the URLs operators write and pick the async driver.

    ``postgresql://`` and ``postgres://`` mean asyncpg; ``sqlite:///`` means aiosqlite.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(f"unsupported database {backend!r}: use postgresql:// or sqlite:///")
    return parsed.render_as_string(hide_password=False)


TLS_PARAMETERS = ("ssl", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword")
"""What a PostgreSQL URL may say about TLS, as libpq users (and managed services' connection
strings) write it; ``ssl`` is SQLAlchemy's and asyncpg's spelling of ``sslmode``."""
_SSL_SWITCH = {"true": "require", "1": "require", "yes": "require", "on": "require"}
_SSL_SWITCH |= {"false": "disable", "0": "disable", "no": "disable", "off": "disable"}


def libpq_tls(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its TLS parameters, and those parameters as libpq names them
    (``ssl=true`` becomes ``sslmode=require``), for asyncpg to apply: it implements the
    libpq modes, from ``disable`` to ``verify-full``, and the certificate files."""
    parsed = make_url(url)
    tls = {name: str(parsed.query[name]) for name in TLS_PARAMETERS if name in parsed.query}
    if "ssl" in tls:
        value = tls.pop("ssl")
        tls.setdefault("sslmode", _SSL_SWITCH.get(value.lower(), value))
    rest = parsed.difference_update_query(TLS_PARAMETERS)
    return rest.render_as_string(hide_password=False), tls


SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}
"""Session settings of every PostgreSQL connection devicelink opens.

asyncpg prepares every statement, and PostgreSQL may switch a prepared statement to a
generic plan after five runs and keep it for the life of the connection. On a fresh
database that plan is made for empty tables (a sequential scan), and it would outlive
their growth: a new server's polls would get slower with every flow. Custom plans are
made for each run with the table's current size, and these statements plan quickly."""


def quote_schema(schema: str) -> str:
    """``schema`` as a quoted PostgreSQL identifier (any name is then safe to write)."""
    return '"' + schema.replace('"', '""') + '"'


def connection_settings(schema: str | None = None) -> dict[str, str]:
    """:data:`SERVER_SETTINGS` and, with a ``schema``, a ``search_path`` of that schema
    alone: every connection devicelink opens (the engine's, the fast path's pool, the
    listening connection) then reads and writes devicelink's tables there, apart from
    tables of the same names in the database's other schemas (a host's ``users``)."""
    settings = dict(SERVER_SETTINGS)
    if schema:
        settings["search_path"] = quote_schema(schema)
    return settings


def create_engine_for_url(
    url: str,
    *,
    schema: str | None = None,
    pool_size: int = 10,
    max_overflow: int = 5,
    **kwargs: Any,
) -> AsyncEngine:
    """An engine on ``url``; on PostgreSQL with a ``schema``, its tables are there (see
    :func:`connection_settings`). SQLite has no schemas: a ``schema`` is refused.

    On PostgreSQL (unless a ``poolclass`` is given) the engine holds at most
    ``pool_size + max_overflow`` connections: ``pool_size`` kept open once opened, the
    overflow closed again when returned. SQLite ignores both."""
    url = normalise_database_url(url)
    # Statement parameters hold hashes, user agents and IPs: keep them out of error
    # messages, which end up in logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        if schema:
            raise ValueError("a database schema applies to PostgreSQL only, not to SQLite")
        engine = create_async_engine(url, **kwargs)
        configure_sqlite(engine.sync_engine)
        return engine
    if "poolclass" not in kwargs:
        # Steady connections for the cold paths (the fast path has its own asyncpg pool):
        # the server's are settings, whose sum over every process must stay under
        # PostgreSQL's max_connections (Settings.max_connections_per_worker).
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = max_overflow
        kwargs.setdefault("pool_timeout", 10)
    connect_args = kwargs.pop("connect_args", {})
    url, tls = libpq_tls(url)
    if tls:
        # The SQLAlchemy dialect would hand sslmode to asyncpg as an unknown keyword:
        # given as a DSN of TLS options alone, asyncpg reads them as libpq does.
        connect_args.setdefault("dsn", "postgresql://?" + urlencode(tls))
    connect_args.setdefault("timeout", 10)
    connect_args.setdefault("command_timeout", 15)
    connect_args.setdefault("server_settings", connection_settings(schema))
    return create_async_engine(url, connect_args=connect_args, **kwargs)


SQLITE_SYNCHRONOUS = "FULL"
"""SQLite's ``synchronous`` level on the store's connections (the general path: approvals,
keys, revocations, accounts, sessions): a commit waits until the write-ahead log is on
the disk, so what a user or a device was told is stored survives a power loss, as on
PostgreSQL. With WAL this is one sync per commit (about 0.3 ms on this machine's disk)."""

SQLITE_BATCH_SYNCHRONOUS = "NORMAL"
"""The level of the SQLite writer's batches (:mod:`devicelink.storage.sqlite_writer`: new
flows, a poll's bookkeeping), the writes PostgreSQL's fast path commits asynchronously
(``synchronous_commit = off``, :data:`devicelink.storage.fast_path.pool.HOT_PATH_SETTINGS`).
NORMAL in WAL: a commit writes the log without waiting for the disk. An application
crash loses nothing; a power loss or an OS crash may roll back the last such commits
made since the log was last synced (at the next FULL commit of the general path, or
before a checkpoint), never corrupts the file, and leaves it as it was at some commit: a
device told of a flow just before may be told that its code is unknown, a poll judged
against an older last poll. Measured with group commit, FULL answered device
authorizations at 0.6 to 0.8 x the rate of NORMAL (two alternating runs, shared machine);
bench/README.md, "SQLite, the embedded default"."""


def configure_sqlite(
    engine: Engine, *, immediate: bool = True, synchronous: str = SQLITE_SYNCHRONOUS
) -> None:
    """SQLite as a real embedded database: WAL, a busy timeout, foreign keys, the
    ``synchronous`` level, and (``immediate``) ``BEGIN IMMEDIATE`` so that a
    transaction that reads then writes takes the write lock up front instead of failing
    when it upgrades (pysqlite's own transaction handling is turned off for that, as
    SQLAlchemy's documentation recommends). Without ``immediate``, a connection reads
    in autocommit: each statement sees the last committed state, and takes no lock
    that a writer waits for (WAL)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqlTransaction:
    """The repositories of one transaction, sharing its connection."""

    __slots__ = (
        "announcements",
        "api_keys",
        "audit",
        "authorization_codes",
        "browser_sessions",
        "clients",
        "connection",
        "device_authorizations",
        "instance",
        "issuer_revocations",
        "users",
    )

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.announcements: list[str] = []
        """Changes to keys and accounts that cached key lookups must hear of (see
        :mod:`devicelink.storage.keycache`), announced when the transaction commits."""
        self.clients = SqlClientRepository(connection)
        self.users = SqlUserRepository(connection, self.announcements)
        self.device_authorizations = SqlDeviceAuthorizationRepository(connection)
        self.api_keys = SqlApiKeyRepository(connection, self.announcements)
        self.issuer_revocations = SqlIssuerRevocationRepository(connection)
        self.browser_sessions = SqlBrowserSessionRepository(connection)
        self.audit = SqlAuditLog(connection)
        self.authorization_codes = SqlAuthorizationCodeRepository(connection)
        self.instance = SqlInstanceFacts(connection)


# Raised by SQLAlchemy when the database is gone or does not answer. InternalError
# too: asyncpg's "cannot switch to state ...; another operation is in progress" on a
# connection the outage broke mid-statement arrives as one.
_UNAVAILABLE = (OperationalError, InterfaceError, InternalError)
# Raised by the drivers while connecting (asyncpg lets these through unwrapped).
_CONNECT_FAILURES = (*_UNAVAILABLE, OSError, TimeoutError)


class SqlStore:
    """The :class:`devicelink.core.ports.Store` on a SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._listeners: list[Callable[[list[str]], None]] = []
        self.write_lock: asyncio.Lock | None = (
            asyncio.Lock() if engine.dialect.name == "sqlite" else None
        )
        """SQLite's write turn in this process: each transaction (they all write, ``BEGIN
        IMMEDIATE``) and each batch of the SQLite writer
        (:class:`devicelink.storage.sqlite_writer.SqliteWriter`) takes it in arrival
        order, so that none waits in SQLite's busy handler, whose sleeps grow to 100 ms
        and favour no one (a p99 of seconds at 32 requests in flight)."""

    def on_commit_announce(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener`` with the announcements of every transaction of this store
        once it has committed (other processes hear of them by PostgreSQL ``NOTIFY``)."""
        self._listeners.append(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        """Commit when the block ends, roll back when it raises.

        Only failures of the database itself become :class:`StorageUnavailable`; an
        error raised by the caller's own code (a key issuer's network call timing out,
        say) reaches the caller as itself.
        """
        if self.write_lock is None:
            async with self._transaction() as tx:
                yield tx
            return
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self.write_lock.acquire()
        except TimeoutError:
            raise StorageUnavailable("SQLite's writer is busy") from None
        try:
            async with self._transaction() as tx:
                yield tx
        finally:
            self.write_lock.release()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[SqlTransaction]:
        begin = self.engine.begin()
        try:
            connection = await begin.__aenter__()
        except (*_CONNECT_FAILURES, DBAPIError) as exc:
            # Any failure to connect, "the database system is shutting down" included
            # (SQLSTATE 57P03, which SQLAlchemy wraps as a plain DBAPIError).
            raise StorageUnavailable(type(exc).__name__) from exc
        tx = SqlTransaction(connection)
        try:
            yield tx
            if tx.announcements and connection.dialect.name == "postgresql":
                # Delivered by PostgreSQL at commit, and only if it commits.
                for announcement in tx.announcements:
                    await connection.execute(
                        text("SELECT pg_notify(:channel, :payload)"),
                        {"channel": CHANNEL, "payload": announcement},
                    )
        except BaseException as exc:
            # Should the rollback fail too, the original error says more.
            with contextlib.suppress(*_UNAVAILABLE):
                await begin.__aexit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, _UNAVAILABLE) or (
                isinstance(exc, DBAPIError) and exc.connection_invalidated
            ):
                raise StorageUnavailable(type(exc).__name__) from exc
            raise
        try:
            await begin.__aexit__(None, None, None)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        if tx.announcements:
            for listener in self._listeners:
                listener(tx.announcements)

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (*_CONNECT_FAILURES, DBAPIError) as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    async def dispose(self) -> None:
        await self.engine.dispose()
