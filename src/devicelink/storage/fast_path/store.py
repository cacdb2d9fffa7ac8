"""The :class:`devicelink.core.ports.FastPathStore` on PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from devicelink.core import lifecycle
from devicelink.core.lifecycle import FlowPolicy, PollDecision
from devicelink.core.models import (
    ApiKey,
    AuditKind,
    DeviceAuthorization,
    NewDeviceAuthorization,
    Status,
    User,
)
from devicelink.storage.batching import Batcher
from devicelink.storage.fast_path import statements
from devicelink.storage.fast_path.listener import KeyChangeListener
from devicelink.storage.fast_path.pool import asyncpg_dsn, create_pool, fetch, fetchrow
from devicelink.storage.keycache import CHANNEL, KeyCache, key_changed
from devicelink.storage.rows import key_and_owner_from_row, scope_text, scope_tuple

log = logging.getLogger(__name__)


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
        self._poll_batchers: dict[FlowPolicy, Batcher[PollDecision | None]] = {}
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

    async def poll(
        self, device_code_hash: bytes, *, client_id: str, now: datetime, policy: FlowPolicy
    ) -> PollDecision | None:
        batcher = self._poll_batchers.get(policy)
        if batcher is None:
            batcher = self._poll_batchers[policy] = Batcher(
                partial(self._polls, policy),
                max_in_flight=self._max_in_flight,
                one_per_key=False,
            )
        return await batcher.submit(device_code_hash, device_code_hash, client_id, now)

    async def _polls(
        self, policy: FlowPolicy, polls: Sequence[tuple[Any, ...]]
    ) -> list[PollDecision | None]:
        """Polls in one statement (``statements.POLL``) each, every answer decided by
        :func:`devicelink.core.lifecycle.decide_poll` on the row the statement returns.
        Of several polls of one code, the first is judged (and recorded) in the first
        statement; the others are answered from the row it read when that records
        nothing, else sent in the next statement, after it: as if each came alone."""
        answers: list[PollDecision | None] = [None] * len(polls)
        waiting = list(range(len(polls)))
        while waiting:
            waiting = await self._poll_round(policy, polls, waiting, answers)
        return answers

    async def _poll_round(
        self,
        policy: FlowPolicy,
        polls: Sequence[tuple[Any, ...]],
        waiting: list[int],
        answers: list[PollDecision | None],
    ) -> list[int]:
        """One statement for the polls ``waiting`` (indexes of ``polls``): their answers
        written into ``answers``; the polls that must wait for the next statement."""
        hashes, client_ids, nows = zip(*(polls[i] for i in waiting), strict=True)
        rows = await fetch(
            self._pool,
            statements.POLL,
            list(hashes),
            list(client_ids),
            list(nows),
            policy.slow_down_step,
            policy.max_interval,
        )
        firsts: dict[bytes, int] = {}
        for n, code_hash in enumerate(hashes):
            firsts.setdefault(code_hash, n)
        later: list[int] = []
        for row in rows:
            n = row["n"] - 1
            if row["confidential"] is not False:
                continue  # an unknown or confidential client: the general path's
            found = None if row["id"] is None else _polled(row)
            decision = lifecycle.decide_poll(
                found, client_id=client_ids[n], now=nows[n], policy=policy
            )
            paced = isinstance(decision, lifecycle.KeepWaiting | lifecycle.SlowDownTo)
            if paced and not row["recorded"]:
                if firsts[hashes[n]] != n:
                    later.append(waiting[n])  # after the code's first poll: next statement
                # else approved or denied since the snapshot: decided afresh (None)
                continue
            if row["recorded"] and not paced:
                log.error(
                    "the poll statement recorded a poll that core.lifecycle refuses (%s): "
                    "statements.POLL no longer restates lifecycle.poll_refusal",
                    type(decision).__name__,
                )
            answers[waiting[n]] = decision
        return sorted(later)

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

    async def rehash_key(
        self,
        key_id: int,
        *,
        old_hash: bytes,
        new_hash: bytes,
        fingerprint: str,
        now: datetime,
        ip: str | None,
    ) -> bool:
        try:
            rows = await fetch(
                self._pool,
                statements.REHASH_KEY,
                key_id,
                new_hash,
                old_hash,
                fingerprint,
                now,
                ip,
                CHANNEL,
            )
        except BaseException:
            self.cache.changed([key_changed(key_id)])  # moved or not: forget it
            raise
        if rows:  # other processes hear of it by the statement's NOTIFY
            self.cache.changed([key_changed(key_id)])
        return bool(rows)

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


def _polled(row: asyncpg.Record) -> DeviceAuthorization:
    """The code's row as the poll statement returns it: the columns a poll's decision
    reads (and those a record cannot be without); the approval's and the request's
    details are not read, they decide nothing here."""
    return DeviceAuthorization(
        id=row["id"],
        client_id=row["client_id"],
        scope=scope_tuple(row["scope"]),
        status=Status(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        interval=row["interval"],
        last_polled_at=row["last_polled_at"],
        denial_reason=row["denial_reason"],
    )
