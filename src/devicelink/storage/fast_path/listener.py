"""The connection that hears of key and account changes, and proves that it still hears.

The key cache (:mod:`devicelink.storage.keycache`) may answer only while this process
hears every change announced on :data:`~devicelink.storage.keycache.CHANNEL`. One
connection of its own listens there; every :attr:`KeyChangeListener.HEARTBEAT_SECONDS`
a ``NOTIFY`` sent through the pool must come back on it within
:attr:`~KeyChangeListener.HEARTBEAT_TIMEOUT`, or the cache is emptied and unused until
one does. The heartbeat also catches a path on which notifications never arrive at all
(a transaction-pooling proxy in front of PostgreSQL): the cache then never turns on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

import asyncpg

from devicelink.storage.database import connection_settings
from devicelink.storage.fast_path.pool import UNAVAILABLE
from devicelink.storage.keycache import CHANNEL, PING_PREFIX, KeyCache

log = logging.getLogger("devicelink.storage.fast_path")

# Every failure of the listening connection: it is dropped and opened again.
_FAILURES = (*UNAVAILABLE, asyncpg.PostgresError)


class KeyChangeListener:
    """Keeps one connection listening, and the cache live only while it hears."""

    RECONNECT_SECONDS = 1.0
    HEARTBEAT_SECONDS = 10.0
    HEARTBEAT_TIMEOUT = 5.0
    CLOSE_SECONDS = 3.0
    """How long :meth:`close` lets a connection attempt finish before cancelling it
    (asyncpg's connect, cancelled half-way, can leave its socket to the collector)."""

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, cache: KeyCache, *, schema: str | None = None
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._schema = schema
        self._cache = cache
        self.connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._ping = ""
        self._pong: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()

    @property
    def listening(self) -> bool:
        """Whether this process hears key changes now (the key cache is live); if not,
        key checks go to the database, uncached."""
        return self._cache.live

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="devicelink key changes")

    async def close(self) -> None:
        self._closed = True
        self._forget()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self.CLOSE_SECONDS)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self.connection is not None and not self.connection.is_closed():
            with contextlib.suppress(*UNAVAILABLE):
                await self.connection.close(timeout=5)

    async def _keep_listening(self) -> None:
        while not self._closed:
            if self.connection is None or self.connection.is_closed():
                self._forget()
                if not await self._connect():
                    await self._pause(self.RECONNECT_SECONDS)
                    continue
                if self._closed:
                    break  # close() closes the connection just made
            if await self._heartbeat():
                if not self._cache.live:
                    self._cache.clear()  # nothing kept from before it heard
                    self._cache.live = True
                await self._pause(self.HEARTBEAT_SECONDS)
            else:
                await self._drop_unheard()
                await self._pause(self.RECONNECT_SECONDS)

    async def _connect(self) -> bool:
        try:
            connection = await asyncpg.connect(
                self._dsn, timeout=10, server_settings=connection_settings(self._schema)
            )
        except _FAILURES as exc:
            log.debug("cannot listen for key changes yet: %s", type(exc).__name__)
            return False
        try:
            connection.add_termination_listener(self._lost)
            await connection.add_listener(CHANNEL, self._notified)
        except BaseException as exc:
            # Failed, or cancelled by close() while it was being set up: a connection
            # nobody holds must not be left open (garbage collection would find it).
            connection.terminate()
            if not isinstance(exc, _FAILURES):
                raise
            log.debug("cannot listen for key changes yet: %s", type(exc).__name__)
            return False
        self.connection = connection
        return True

    async def _heartbeat(self) -> bool:
        """Send a NOTIFY through the pool and wait for it on the listening connection."""
        self._ping = PING_PREFIX + secrets.token_hex(8)
        self._pong = asyncio.get_running_loop().create_future()
        try:
            await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, self._ping)
            await asyncio.wait_for(self._pong, timeout=self.HEARTBEAT_TIMEOUT)
        except _FAILURES:
            return False
        finally:
            self._pong = None
        return True

    async def _drop_unheard(self) -> None:
        """The heartbeat did not come back: forget, and close the connection."""
        if self._cache.live:
            log.warning("key changes went unheard: key lookups uncached until they are")
        self._forget()
        connection, self.connection = self.connection, None
        if connection is not None:
            with contextlib.suppress(*_FAILURES):
                await connection.close(timeout=2)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    def _forget(self) -> None:
        self._cache.live = False
        self._cache.clear()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PING_PREFIX):
            if payload == self._ping and self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        self._cache.changed([payload])

    def _lost(self, _conn: object) -> None:
        self._forget()
        self._wake.set()  # listen again now, not at the next heartbeat
        if not self._closed:
            log.warning("lost the connection that hears of key changes: key lookups uncached")
