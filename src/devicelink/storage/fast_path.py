"""The hot paths on PostgreSQL: one statement each, on asyncpg's own pool.

SQLAlchemy keeps the schema, the migrations and every other path; here the statements
are written out once, prepared by asyncpg, and run without a unit of work around them.
A pending poll is a single ``UPDATE ... FROM (SELECT ... FOR UPDATE) ... RETURNING``: it
reads the record, applies the slow_down rule of RFC 8628 section 3.5 and writes the
bookkeeping in one round trip, with the row locked so concurrent polls queue up; polls
that arrive together share that statement (:mod:`devicelink.storage.batching`). A device
authorization is a single ``INSERT ... SELECT`` from the client's row, which checks the
client and its scopes, with the audit event inserted by the same statement; starts that
arrive together share it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from devicelink.core.models import ApiKey, AuditKind, NewDeviceAuthorization, PendingPoll, User
from devicelink.core.ports import StorageUnavailable
from devicelink.storage.batching import Batcher
from devicelink.storage.database import SERVER_SETTINGS
from devicelink.storage.keycache import CHANNEL, PING_PREFIX, KeyCache, key_changed

log = logging.getLogger(__name__)

# What asyncpg raises when PostgreSQL is down, restarting or unreachable (SQLSTATE
# classes 08 and 57), and what the driver raises for a connection it lost.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)

_POLL = """
WITH req AS (
    SELECT *
    FROM unnest($1::bytea[], $2::text[], $3::timestamptz[]) WITH ORDINALITY
         AS r(device_code_hash, client_id, now, n)
), cur AS (
    SELECT d.id, r.n, r.now, d.interval,
           (d.last_polled_at IS NOT NULL
            AND d.last_polled_at > r.now - make_interval(secs => d.interval)) AS too_fast
    FROM req AS r
    JOIN device_authorizations AS d ON d.device_code_hash = r.device_code_hash
    JOIN clients AS c ON c.client_id = d.client_id
    WHERE d.client_id = r.client_id
      AND d.status = 'pending'
      AND d.expires_at > r.now
      AND NOT c.confidential
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE device_authorizations AS d
SET last_polled_at = cur.now,
    interval = CASE WHEN cur.too_fast
                    THEN LEAST(cur.interval + $4::int, $5::int)
                    ELSE cur.interval END
FROM cur
WHERE d.id = cur.id
RETURNING cur.n, d.interval, cur.too_fast
"""

_START = """
WITH req AS (
    SELECT *
    FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::text[], $5::timestamptz[],
                $6::timestamptz[], $7::int[], $8::text[], $9::text[]) WITH ORDINALITY
         AS r(device_code_hash, user_code_hash, client_id, requested, created_at,
              expires_at, interval, request_ip, user_agent, n)
), ok AS (
    SELECT r.*, COALESCE(r.requested, c.scopes) AS scope
    FROM req AS r
    JOIN clients AS c ON c.client_id = r.client_id
    WHERE NOT c.confidential
      AND (r.requested IS NULL
           OR string_to_array(c.scopes, ' ') @> string_to_array(r.requested, ' '))
), d AS (
    INSERT INTO device_authorizations
        (device_code_hash, user_code_hash, client_id, scope, status, created_at,
         expires_at, interval, request_ip, user_agent)
    SELECT device_code_hash, user_code_hash, client_id, scope, 'pending', created_at,
           expires_at, interval, request_ip, user_agent
    FROM ok
    ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING id, device_code_hash, client_id, scope, created_at, request_ip, user_agent
), a AS (
    INSERT INTO audit_events (occurred_at, event, client_id, device_authorization_id, ip,
                              user_agent)
    SELECT created_at, $10::text, client_id, id, request_ip, user_agent
    FROM d
    ORDER BY id
)
SELECT ok.n, d.scope
FROM d
JOIN ok ON ok.device_code_hash = d.device_code_hash
"""

_USE = """
WITH req AS (
    SELECT *
    FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::timestamptz[])
         AS r(id, now, ip, not_since)
), due AS (
    SELECT k.id, k.last_used_at, k.user_id, k.client_id, k.device_authorization_id,
           u.username, r.now, r.ip
    FROM req AS r
    JOIN api_keys AS k ON k.id = r.id
    JOIN users AS u ON u.id = k.user_id
    WHERE k.last_used_at IS NULL OR k.last_used_at < r.not_since
    ORDER BY k.id
    FOR UPDATE OF k
), written AS (
    UPDATE api_keys AS k
    SET last_used_at = due.now, last_used_ip = due.ip
    FROM due
    WHERE k.id = due.id
    RETURNING k.id
), first_use AS (
    INSERT INTO audit_events (occurred_at, event, user_id, username, client_id,
                              device_authorization_id, api_key_id, ip)
    SELECT now, $5::text, user_id, username, client_id, device_authorization_id, id, ip
    FROM due
    WHERE last_used_at IS NULL
)
SELECT id FROM written
"""

_KEY = """
SELECT k.id, k.name, k.user_id, k.client_id, k.device_authorization_id, k.scope,
       k.created_at, k.expires_at, k.last_used_at, k.last_used_ip, k.revoked_at,
       k.external_id, u.username, u.disabled_at, u.created_at AS user_created_at,
       u.provider, u.subject
FROM api_keys AS k
JOIN users AS u ON u.id = k.user_id
WHERE k.key_hash = $1
"""


HOT_PATH_SETTINGS = {"synchronous_commit": "off"}
"""The fast path's writes (a poll's bookkeeping, a new flow and its audit event, a key's
last use) do not
wait for their commit to reach the disk. PostgreSQL's asynchronous commit never loses
consistency, only, in a crash of the database host itself, the last moments of such
writes (at most three times ``wal_writer_delay``, 0.6 s by default): polls then judged
against an older last poll, or a flow started just before the crash that its device is
told it does not know (the CLI asks its user to log in again). Approvals, keys,
revocations and everything else go through the other pool and wait for the disk as
always. What it buys: a poll no longer waits for the disk behind whatever else is being
written (measured: the purge of 10^6 rows made polls wait for its WAL flushes)."""


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as the DSN asyncpg takes."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Nothing to reset between uses: these connections only ever run the two
    single-statement, autocommit queries above, which leave no session state. asyncpg's
    default reset (``RESET ALL; UNLISTEN *; ...``) would cost a round trip per request;
    measured under load it was 15 % of the server's time on the poll."""


class AsyncpgFastPath:
    """The :class:`devicelink.core.ports.FastPathStore` on PostgreSQL.

    Key lookups are answered from a :class:`~devicelink.storage.keycache.KeyCache` while
    this process listens for the announcements of key and account changes on a
    connection of its own; the store's transactions announce them
    (``store.on_commit_announce(fast_path.changed)`` for this process's own changes).
    """

    RECONNECT_SECONDS = 1.0
    HEARTBEAT_SECONDS = 10.0
    """How often the listening connection proves it still hears: a ``NOTIFY`` sent
    through the pool must come back on it within :attr:`HEARTBEAT_TIMEOUT`, or the
    cache is emptied and unused until one does. This also catches a path on which
    notifications never arrive at all (a transaction-pooling proxy in front of
    PostgreSQL): the cache then never turns on."""
    HEARTBEAT_TIMEOUT = 5.0

    def __init__(
        self, pool: asyncpg.Pool, dsn: str, cache: KeyCache, *, max_size: int = 10
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self.cache = cache
        self._listener: asyncpg.Connection | None = None
        self._listening: asyncio.Task[None] | None = None
        self._closed = False
        self._ping = ""
        self._pong: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._max_in_flight = max(1, max_size // 2)
        self._poll_batchers: dict[tuple[int, int], Batcher[PendingPoll | None]] = {}
        self._start_batcher: Batcher[tuple[str, ...] | None] = Batcher(
            self._start_flows, max_in_flight=self._max_in_flight
        )
        self._use_batcher: Batcher[bool] = Batcher(
            self._record_uses, max_in_flight=self._max_in_flight
        )

    @classmethod
    async def connect(
        cls, url: str, *, max_size: int = 10, key_cache_size: int = 0
    ) -> AsyncpgFastPath:
        dsn = asyncpg_dsn(url)
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            command_timeout=15,
            timeout=10,
            reset=_keep_session,
            server_settings={**SERVER_SETTINGS, **HOT_PATH_SETTINGS},
        )
        hot = cls(pool, dsn, KeyCache(key_cache_size), max_size=max_size)
        if key_cache_size > 0:
            hot._listening = asyncio.create_task(hot._listen(), name="devicelink key changes")
        return hot

    # --- the announcements of key and account changes ---------------------------------

    def changed(self, announcements: list[str]) -> None:
        self.cache.changed(announcements)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PING_PREFIX):
            if payload == self._ping and self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        self.cache.changed([payload])

    def _lost(self, _conn: object) -> None:
        self.cache.live = False
        self.cache.clear()
        self._wake.set()  # listen again now, not at the next heartbeat
        if not self._closed:
            log.warning("lost the connection that hears of key changes: key lookups uncached")

    async def _listen(self) -> None:
        """Keep one connection listening; the cache is live only while it is, and while
        its heartbeats come back."""
        while not self._closed:
            if self._listener is None or self._listener.is_closed():
                self.cache.live = False
                self.cache.clear()
                try:
                    listener = await asyncpg.connect(
                        self._dsn, timeout=10, server_settings=dict(SERVER_SETTINGS)
                    )
                    listener.add_termination_listener(self._lost)
                    await listener.add_listener(CHANNEL, self._notified)
                except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                    log.debug("cannot listen for key changes yet: %s", type(exc).__name__)
                    await self._pause(self.RECONNECT_SECONDS)
                    continue
                self._listener = listener
            if await self._heartbeat():
                if not self.cache.live:
                    self.cache.clear()  # nothing kept from before it heard
                    self.cache.live = True
                await self._pause(self.HEARTBEAT_SECONDS)
            else:
                if self.cache.live:
                    log.warning("key changes went unheard: key lookups uncached until they are")
                self.cache.live = False
                self.cache.clear()
                listener, self._listener = self._listener, None
                if listener is not None:
                    with contextlib.suppress(*_UNAVAILABLE, asyncpg.PostgresError):
                        await listener.close(timeout=2)
                await self._pause(self.RECONNECT_SECONDS)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _heartbeat(self) -> bool:
        """Send a NOTIFY through the pool and wait for it on the listening connection."""
        self._ping = PING_PREFIX + secrets.token_hex(8)
        self._pong = asyncio.get_running_loop().create_future()
        try:
            await self._pool.execute("SELECT pg_notify($1, $2)", CHANNEL, self._ping)
            await asyncio.wait_for(self._pong, timeout=self.HEARTBEAT_TIMEOUT)
        except (*_UNAVAILABLE, asyncpg.PostgresError):
            return False
        finally:
            self._pong = None
        return True

    async def record_pending_poll(
        self,
        device_code_hash: bytes,
        *,
        client_id: str,
        now: datetime,
        slow_down_step: int,
        max_interval: int,
    ) -> PendingPoll | None:
        batcher = self._poll_batchers.get((slow_down_step, max_interval))
        if batcher is None:
            batcher = self._poll_batchers[(slow_down_step, max_interval)] = Batcher(
                partial(self._record_polls, slow_down_step, max_interval),
                max_in_flight=self._max_in_flight,
            )
        return await batcher.submit(device_code_hash, device_code_hash, client_id, now)

    async def _record_polls(
        self, slow_down_step: int, max_interval: int, polls: Sequence[tuple[Any, ...]]
    ) -> list[PendingPoll | None]:
        """Polls of distinct codes in one statement (see :class:`Batcher`): each row
        locked in id order, judged and written exactly as alone."""
        hashes, client_ids, nows = zip(*polls, strict=True)
        try:
            rows = await self._pool.fetch(
                _POLL, list(hashes), list(client_ids), list(nows), slow_down_step, max_interval
            )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        answers: list[PendingPoll | None] = [None] * len(polls)
        for n, interval, too_fast in rows:
            answers[n - 1] = PendingPoll(interval=interval, too_fast=too_fast)
        return answers

    async def start_flow(
        self,
        new: NewDeviceAuthorization,
        *,
        requested_scope: tuple[str, ...] | None,
    ) -> tuple[str, ...] | None:
        return await self._start_batcher.submit(
            new.device_code_hash,
            new.device_code_hash,
            new.user_code_hash,
            new.client_id,
            None if requested_scope is None else " ".join(requested_scope),
            new.created_at,
            new.expires_at,
            new.interval,
            new.request_ip,
            new.user_agent,
        )

    async def _start_flows(self, flows: Sequence[tuple[Any, ...]]) -> list[tuple[str, ...] | None]:
        """Device authorizations in one statement (see :class:`Batcher`), each with its
        audit event; a flow whose client or scope does not qualify, or whose code
        collides, is not stored and gets None."""
        columns = [list(column) for column in zip(*flows, strict=True)]
        try:
            rows = await self._pool.fetch(_START, *columns, AuditKind.FLOW_STARTED.value)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        granted: list[tuple[str, ...] | None] = [None] * len(flows)
        for n, scope in rows:
            granted[n - 1] = tuple(scope.split()) if scope else ()
        return granted

    async def record_use(
        self, key_id: int, *, now: datetime, ip: str | None, not_since: datetime
    ) -> bool:
        try:
            return await self._use_batcher.submit(key_id, key_id, now, ip, not_since)
        finally:
            # Written here or by another request: what the cache holds of it is stale.
            self.cache.changed([key_changed(key_id)])

    async def _record_uses(self, uses: Sequence[tuple[Any, ...]]) -> list[bool]:
        """Last uses of distinct keys in one statement (see :class:`Batcher`), each
        written only if the stored one is older than ``not_since`` (a compare-and-set),
        with the ``key_first_used`` audit event when there was none."""
        ids, nows, ips, not_sinces = (list(column) for column in zip(*uses, strict=True))
        try:
            rows = await self._pool.fetch(
                _USE, ids, nows, ips, not_sinces, AuditKind.KEY_FIRST_USED.value
            )
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        written = {row[0] for row in rows}
        return [key_id in written for key_id in ids]

    async def key_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        cached = self.cache.get(key_hash)
        if cached is not None:
            return cached
        generation = self.cache.generation
        try:
            row = await self._pool.fetchrow(_KEY, key_hash)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        if row is None:
            return None
        key = ApiKey(
            id=row["id"],
            name=row["name"],
            user_id=row["user_id"],
            client_id=row["client_id"],
            device_authorization_id=row["device_authorization_id"],
            scope=tuple(row["scope"].split()) if row["scope"] else (),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            last_used_at=row["last_used_at"],
            last_used_ip=row["last_used_ip"],
            revoked_at=row["revoked_at"],
            external_id=row["external_id"],
        )
        owner = User(
            id=row["user_id"],
            username=row["username"],
            disabled=row["disabled_at"] is not None,
            created_at=row["user_created_at"],
            provider=row["provider"],
            subject=row["subject"],
        )
        self.cache.put(key_hash, key, owner, generation=generation)
        return key, owner

    async def close(self) -> None:
        self._closed = True
        self.cache.live = False
        self.cache.clear()
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
        if self._listener is not None and not self._listener.is_closed():
            with contextlib.suppress(*_UNAVAILABLE):
                await self._listener.close(timeout=5)
        for poll_batcher in self._poll_batchers.values():
            await poll_batcher.close()
        await self._start_batcher.close()
        await self._use_batcher.close()
        await self._pool.close()
