"""The :class:`devicelink.core.ports.FastPathStore` on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from devicelink.core.models import ApiKey, AuditKind, NewDeviceAuthorization, PendingPoll, User
from devicelink.storage.batching import Batcher
from devicelink.storage.fast_path import statements
from devicelink.storage.fast_path.listener import KeyChangeListener
from devicelink.storage.fast_path.pool import asyncpg_dsn, create_pool, fetch, fetchrow
from devicelink.storage.keycache import KeyCache, key_changed
from devicelink.storage.rows import key_and_owner_from_row, scope_text, scope_tuple


class AsyncpgFastPath:
    """Each request is one of :mod:`~devicelink.storage.fast_path.statements`, on asyncpg's
    own pool; requests that arrive together share one (:class:`Batcher`).

    Key lookups are answered from a :class:`~devicelink.storage.keycache.KeyCache` while
    this process hears of key and account changes (:attr:`listener`); the store's
    transactions announce them (``store.on_commit_announce(fast_path.changed)`` for this
    process's own changes).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        cache: KeyCache,
        *,
        max_size: int = 10,
        schema: str | None = None,
    ) -> None:
        self._pool = pool
        self.cache = cache
        self.listener = KeyChangeListener(pool, dsn, cache, schema=schema)
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
        cls, url: str, *, max_size: int = 10, key_cache_size: int = 0, schema: str | None = None
    ) -> AsyncpgFastPath:
        """The fast path on the database at ``url``; with a ``schema``, on devicelink's
        tables there (its connections search that schema alone)."""
        dsn = asyncpg_dsn(url)
        pool = await create_pool(dsn, max_size=max_size, schema=schema)
        hot = cls(pool, dsn, KeyCache(key_cache_size), max_size=max_size, schema=schema)
        if key_cache_size > 0:
            hot.listener.start()
        return hot

    def changed(self, announcements: list[str]) -> None:
        self.cache.changed(announcements)

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
        """Polls of distinct codes in one statement: each row locked in id order, judged
        and written exactly as alone."""
        hashes, client_ids, nows = zip(*polls, strict=True)
        rows = await fetch(
            self._pool,
            statements.POLL,
            list(hashes),
            list(client_ids),
            list(nows),
            slow_down_step,
            max_interval,
        )
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
            None if requested_scope is None else scope_text(requested_scope),
            new.created_at,
            new.expires_at,
            new.interval,
            new.request_ip,
            new.user_agent,
        )

    async def _start_flows(self, flows: Sequence[tuple[Any, ...]]) -> list[tuple[str, ...] | None]:
        """Device authorizations in one statement, each with its audit event; a flow whose
        client or scope does not qualify, or whose code collides, is not stored and gets
        None."""
        columns = [list(column) for column in zip(*flows, strict=True)]
        rows = await fetch(self._pool, statements.START, *columns, AuditKind.FLOW_STARTED.value)
        granted: list[tuple[str, ...] | None] = [None] * len(flows)
        for n, scope in rows:
            granted[n - 1] = scope_tuple(scope)
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
        """Last uses of distinct keys in one statement."""
        ids, nows, ips, not_sinces = (list(column) for column in zip(*uses, strict=True))
        rows = await fetch(
            self._pool, statements.USE, ids, nows, ips, not_sinces, AuditKind.KEY_FIRST_USED.value
        )
        written = {row[0] for row in rows}
        return [key_id in written for key_id in ids]

    async def key_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        cached = self.cache.get(key_hash)
        if cached is not None:
            return cached
        generation = self.cache.generation
        row = await fetchrow(self._pool, statements.KEY_WITH_OWNER, key_hash)
        if row is None:
            return None
        key, owner = key_and_owner_from_row(row)
        self.cache.put(key_hash, key, owner, generation=generation)
        return key, owner

    async def close(self) -> None:
        await self.listener.close()
        for poll_batcher in self._poll_batchers.values():
            await poll_batcher.close()
        await self._start_batcher.close()
        await self._use_batcher.close()
        await self._pool.close()
