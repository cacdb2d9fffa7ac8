"""Rate limits: starting flows, code entry and sign-in, counted in memory or in Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import Storage as AsyncStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.aio.strategies import RateLimiter as RateLimiter_
from limits.errors import StorageError
from limits.storage import storage_from_string

log = logging.getLogger("devicelink")


class RateLimiter:
    """Counters for starting flows, code entry and sign-in: in memory for one process,
    in Redis when several share the load (``DEVICELINK_REDIS_URL``).

    When Redis cannot be reached the limits still hold, counted in this process alone
    (a warning in the log, ``devicelink_rate_limit_fallbacks_total`` in the metrics),
    and Redis is tried again a few seconds later.
    """

    RETRY_SECONDS = 5.0
    TIMEOUT_SECONDS = 0.5

    def __init__(
        self,
        redis_url: str | None,
        *,
        key_prefix: str = "devicelink",
        on_fallback: Callable[[], None] | None = None,
    ) -> None:
        self._shared_storage = None
        self._shared: RateLimiter_ | None = None
        self._shared_counter: RateLimiter_ | None = None
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            self._shared_storage = storage_from_string(
                uri, key_prefix=key_prefix, wrap_exceptions=True
            )
            self._shared = MovingWindowRateLimiter(self._shared_storage)
            self._shared_counter = SlidingWindowCounterRateLimiter(self._shared_storage)
        local_storage = storage_from_string("async+memory://")
        self._local = MovingWindowRateLimiter(local_storage)
        self._local_counter = SlidingWindowCounterRateLimiter(local_storage)
        self._shared_down_until = 0.0
        self._on_fallback = on_fallback
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def serialized(self, *keys: tuple[str, ...]) -> AsyncIterator[None]:
        """Check, act and count as one step for these keys, in this process.

        Limits count failures, and a failure is only known after the lookup: without
        this, guesses sent at the same moment would all pass the check before any of
        them is counted. Across processes the overshoot is at most one attempt per
        other process. Locks are taken in a fixed order and dropped when unused."""
        ordered = sorted(set(keys))
        for key in ordered:
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        acquired: list[tuple[str, ...]] = []
        try:
            for key in ordered:
                await self._locks[key][0].acquire()
                acquired.append(key)
            yield
        finally:
            for key in reversed(acquired):
                self._locks[key][0].release()
            for key in ordered:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    async def aclose(self) -> None:
        """Close the Redis connections (``limits`` offers no close of its own)."""
        bridge = getattr(self._shared_storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    async def _limiter_call(
        self, method: str, limit: RateLimitItem, *identifiers: str, counter: bool = False
    ) -> Any:
        shared = self._shared_counter if counter else self._shared
        if shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return await asyncio.wait_for(
                    getattr(shared, method)(limit, *identifiers),
                    timeout=self.TIMEOUT_SECONDS,
                )
            except (StorageError, TimeoutError, OSError, ConnectionError) as exc:
                self._fall_back(type(exc).__name__)
        local = self._local_counter if counter else self._local
        return await getattr(local, method)(limit, *identifiers)

    def _fall_back(self, reason: str) -> None:
        self._shared_down_until = time.monotonic() + self.RETRY_SECONDS
        log.warning(
            "Redis is unreachable (%s): counting rate limits in this process alone for now",
            reason,
        )
        if self._on_fallback is not None:
            self._on_fallback()

    async def shared_reachable(self) -> bool | None:
        """Whether Redis answers (None: no Redis, the limits are this process's anyway),
        for ``/readyz``. Within :attr:`RETRY_SECONDS` of a failure the answer is the one
        known, with no round trip; otherwise one ``PING`` on the pooled connection,
        given :attr:`TIMEOUT_SECONDS`. A failed ``PING`` falls back as a failed limit
        does: the limits are counted in this process until the next try."""
        storage = self._shared_storage
        if not isinstance(storage, AsyncStorage):  # None: no Redis URL
            return None
        if time.monotonic() < self._shared_down_until:
            return False
        try:
            answered = bool(await asyncio.wait_for(storage.check(), timeout=self.TIMEOUT_SECONDS))
        except (StorageError, TimeoutError, OSError, ConnectionError):
            answered = False
        if not answered:
            self._fall_back("no answer to PING")
        return answered

    async def hit(self, limit: RateLimitItem, *identifiers: str, counter: bool = False) -> bool:
        """Spend one of ``limit``. ``counter``: a sliding window counter (two counters
        weighted by time, constant cost) instead of the exact moving window (a list of
        every hit): for the limits that count requests in volume rather than failures."""
        return bool(await self._limiter_call("hit", limit, *identifiers, counter=counter))

    async def allows(self, limit: RateLimitItem, *identifiers: str) -> bool:
        """True when ``limit`` has room left, without spending any of it."""
        return bool(await self._limiter_call("test", limit, *identifiers))

    async def spent(self, limit: RateLimitItem, *identifiers: str) -> int:
        """How much of ``limit`` the current window has used."""
        stats = await self._limiter_call("get_window_stats", limit, *identifiers)
        return int(limit.amount - stats.remaining)

    async def retry_after(
        self, limit: RateLimitItem, *identifiers: str, counter: bool = False
    ) -> int:
        stats = await self._limiter_call("get_window_stats", limit, *identifiers, counter=counter)
        return max(1, int(stats.reset_time - datetime.now(UTC).timestamp()) + 1)
