"""The one writer of an embedded SQLite database, with group commit, and the reads beside it.

SQLite lets one connection write at a time. Left to themselves, a server's connections
would each try, and the losers would sleep in SQLite's busy handler (1, 2, 5 ... 100 ms,
whoever wakes first wins): at 32 requests in flight that made a p99 of seconds. Here a
process writes through ONE writer: :attr:`SqliteWriter.lock` is the write turn, taken in
arrival order by the writer's batches and by :class:`devicelink.storage.SqlStore`'s
transactions alike, so no connection of this process ever waits in the busy handler
(another process, ``devicelink purge`` say, still meets the busy timeout).

Group commit: the writes that arrive while a batch is being written go together in the
next, one transaction and one commit for all of them (:class:`~devicelink.storage.batching.Batcher`
with one batch in flight). A request is answered only once its batch has committed. If a
write of the batch fails, the batch is written again one request at a time, each in its
own savepoint: the failing request alone is refused (:class:`WriteRefused`), the others
commit. Its commits do not wait for the disk (``synchronous=NORMAL``, see
:data:`~devicelink.storage.database.SQLITE_BATCH_SYNCHRONOUS` for what a power loss
may take); the store's transactions do (``FULL``).

Reads run on a connection of their own (:meth:`SqliteWriter.read`), which WAL lets read
the last committed state while the writer writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool

from devicelink.core.errors import ServerError
from devicelink.core.ports import StorageUnavailable
from devicelink.storage.batching import Batcher
from devicelink.storage.database import (
    SQLITE_BATCH_SYNCHRONOUS,
    SQLITE_BUSY_TIMEOUT_MS,
    configure_sqlite,
)

R = TypeVar("R")
T = TypeVar("T")

WriteMany = Callable[[Connection, Sequence[tuple[Any, ...]]], Sequence[R]]
"""Writes a batch on the writer's connection, inside its transaction: the requests'
arguments in order, their results in the same order."""


class WriteRefused(ServerError):
    """The database refused this request's write (a constraint it breaks): nothing of it
    was stored, and the other requests of its batch were. Answered ``server_error``, its
    cause logged under the request id."""


@dataclass(frozen=True, slots=True)
class _Refused:
    error: Exception


# A constraint one request's write breaks (through SQLAlchemy or on the driver's own
# connection, as the fast path's prepared statements run): that request is refused.
_REFUSALS = (IntegrityError, sqlite3.IntegrityError)
# Anything else the database raises (locked past the busy timeout, disk full, I/O):
# the whole batch, or the read, is answered as the database being unavailable.
_FAILURES = (DBAPIError, sqlite3.Error)


class SqliteWriter:
    """The writer thread of one SQLite database, its write turn and its reader."""

    def __init__(
        self,
        url: str,
        *,
        lock: asyncio.Lock | None = None,
    ) -> None:
        """``url``: a ``sqlite:///`` URL (any driver suffix); ``lock``: the write turn,
        shared with the store's transactions (``SqlStore.write_lock``). Its connections
        are set up as the store's (:func:`~devicelink.storage.database.configure_sqlite`)."""
        self.lock = lock or asyncio.Lock()
        # Each connection is used by one thread only, and closed at the very end.
        threads = {"check_same_thread": False}
        self._engine = create_engine(_sync_url(url), poolclass=NullPool, connect_args=threads)
        configure_sqlite(self._engine, synchronous=SQLITE_BATCH_SYNCHRONOUS)
        self._read_engine = create_engine(_sync_url(url), poolclass=NullPool, connect_args=threads)
        configure_sqlite(self._read_engine, immediate=False)
        event.listen(self._read_engine, "connect", _short_busy_timeout)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="devicelink-sqlite-writer")
        self._reader: Connection | None = None
        self._writer_connection: Connection | None = None
        self._batchers: list[Batcher[Any]] = []

    def operation(self, write_many: WriteMany[R], *, max_batch: int = 256) -> WriteOperation[R]:
        """A kind of write, its requests committed together when they arrive together."""
        batcher: Batcher[R | _Refused] = Batcher(
            partial(self._commit, write_many), max_batch=max_batch, max_in_flight=1
        )
        self._batchers.append(batcher)
        return WriteOperation(batcher)

    def read(self, query: Callable[[Connection], T]) -> T:
        """``query`` on the reader's connection, at once, beside the writer and without
        its turn. In WAL a read never waits for a writer, and the few indexed rows of
        a hot path's read cost less on the event loop than a trip to a thread would;
        the reader's short busy timeout (:data:`READER_BUSY_TIMEOUT_MS`, for SQLite's
        rare waits: the log's recovery after a crash) keeps the loop from stalling."""
        try:
            connection = self._reader
            if connection is None or connection.closed:
                connection = self._reader = self._read_engine.connect()
            try:
                return query(connection)
            finally:
                connection.rollback()  # SQLAlchemy's view of it; SQLite read in autocommit
        except _FAILURES as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    async def _commit(
        self, write_many: WriteMany[R], requests: Sequence[tuple[Any, ...]]
    ) -> Sequence[R | _Refused]:
        try:
            async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                await self.lock.acquire()
        except TimeoutError:
            raise StorageUnavailable("the SQLite writer is busy") from None
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._writer, self._writing, partial(_write, write_many, requests)
            )
        except _FAILURES as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        finally:
            self.lock.release()

    def _writing(self, work: Callable[[Connection], T]) -> T:
        """``work`` on the writer's connection (on the writer's thread)."""
        if self._writer_connection is None or self._writer_connection.closed:
            self._writer_connection = self._engine.connect()
        return work(self._writer_connection)

    async def close(self) -> None:
        """Wait for the batches already sent, then close every connection."""
        for batcher in self._batchers:
            await batcher.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown)

    def _shutdown(self) -> None:
        self._writer.shutdown(wait=True)
        for connection in (self._writer_connection, self._reader):
            if connection is not None:
                connection.close()
        self._engine.dispose()
        self._read_engine.dispose()


class WriteOperation(Generic[R]):
    """Requests of one kind of write (see :meth:`SqliteWriter.operation`)."""

    def __init__(self, batcher: Batcher[R | _Refused]) -> None:
        self.batcher = batcher

    async def submit(self, key: Hashable, *args: Any) -> R:
        """Write this request with the others that arrive with it; its result once the
        batch has committed. Requests with the same ``key`` never share a batch."""
        result = await self.batcher.submit(key, *args)
        if isinstance(result, _Refused):
            raise WriteRefused("the database refused to store this request") from result.error
        return result


def _write(
    write_many: WriteMany[R], requests: Sequence[tuple[Any, ...]], connection: Connection
) -> Sequence[R | _Refused]:
    """One transaction for the whole batch; if a write fails, one savepoint a request."""
    try:
        with connection.begin():
            return list(write_many(connection, requests))
    except _REFUSALS:
        pass  # some request breaks a constraint: find which, alone
    results: list[R | _Refused] = []
    with connection.begin():
        for request in requests:
            try:
                with connection.begin_nested():
                    results.extend(write_many(connection, [request]))
            except _REFUSALS as exc:
                results.append(_Refused(exc))
    return results


READER_BUSY_TIMEOUT_MS = 200


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    """After :func:`configure_sqlite`'s own (listeners run in order)."""
    dbapi_connection.execute(f"PRAGMA busy_timeout={READER_BUSY_TIMEOUT_MS}")


def _sync_url(url: str) -> str:
    """The synchronous driver's URL for an async ``sqlite+aiosqlite://`` one."""
    scheme, sep, rest = url.partition("://")
    return "sqlite" + sep + rest if scheme.startswith("sqlite") else url
