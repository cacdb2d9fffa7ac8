"""Purging rows that have ended, in small batches: the :class:`devicelink.core.ports.Purger`.

Each batch is one short transaction of its own, one statement::

    DELETE FROM device_authorizations WHERE id IN (
        SELECT id FROM device_authorizations
        WHERE expires_at < :before ORDER BY expires_at LIMIT :n
        FOR UPDATE SKIP LOCKED)

On PostgreSQL ``FOR UPDATE SKIP LOCKED`` makes concurrent purgers (several server
processes, or ``devicelink purge`` beside them) take disjoint batches: a row locked by
another purger, or by a request, is skipped instead of waited for, and a row another
purger has already deleted is not counted again. The inner select walks the
``expires_at`` (``occurred_at``) index, so a batch is bounded work however large the
table. SQLite has a single writer (``BEGIN IMMEDIATE``) and no row locks: the same
statement without the locking clause.

An API key ends in either of two ways (revoked, expired), each column with its own
index, so their batch has no single order: no ``ORDER BY``, and the scan stops at the
first ``limit`` rows that qualify.

:meth:`SqlPurger.exclusive` is a PostgreSQL session advisory lock
(``pg_try_advisory_lock``), tried without waiting, on a connection of its own held for
the length of one periodic run; so of several processes only one purges at a time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import ColumnElement, Table, delete, exists, func, select, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from devicelink.core.ports import PurgeKind, StorageUnavailable
from devicelink.storage.tables import (
    api_keys,
    audit_events,
    authorization_codes,
    browser_sessions,
    device_authorizations,
    issuer_revocations,
)

log = logging.getLogger("devicelink.purge")

PURGE_LOCK_KEY = 8_628_000_007
"""The advisory lock key of the periodic purge (RFC 8628, defect 7), one per database."""

LOCK_TIMEOUT = "2s"
"""How long a batch waits for a row lock it cannot skip (the ``SET NULL`` of an API key
that points at a purged device authorization) before giving up until the next run."""

_FAILURES = (OperationalError, InterfaceError, OSError, TimeoutError)


def _target(
    kind: PurgeKind, before: datetime
) -> tuple[Table, ColumnElement[bool], ColumnElement[datetime] | None]:
    """The table, the condition "ended before ``before``", and the indexed order."""
    if kind == "device_authorizations":
        expires_at = device_authorizations.c.expires_at
        return device_authorizations, expires_at < before, expires_at
    if kind == "authorization_codes":
        # Redeemed or not, by expiry alone: a redeemed code's row is what recognises its
        # replay (and revokes the key it issued), so it stays as long as an unredeemed one.
        expires_at = authorization_codes.c.expires_at
        return authorization_codes, expires_at < before, expires_at
    if kind == "browser_sessions":
        expires_at = browser_sessions.c.expires_at
        return browser_sessions, expires_at < before, expires_at
    if kind == "audit_events":
        occurred_at = audit_events.c.occurred_at
        return audit_events, occurred_at < before, occurred_at
    if kind == "api_keys":
        # NULL compares as unknown: a key never revoked and never expiring never goes.
        ended = (api_keys.c.revoked_at < before) | (api_keys.c.expires_at < before)
        # A key whose issuer has yet to hear of its revocation stays until it has.
        undelivered = exists().where(issuer_revocations.c.api_key_id == api_keys.c.id)
        return api_keys, ended & ~undelivered, None
    raise ValueError(f"unknown purge kind {kind!r}")


class SqlPurger:
    """The :class:`devicelink.core.ports.Purger` on a SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    async def purge_batch(self, kind: PurgeKind, *, before: datetime, limit: int) -> int:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        table, ended, order = _target(kind, before)
        batch = select(table.c.id).where(ended)
        if order is not None:
            batch = batch.order_by(order)
        batch = batch.limit(limit)
        if self._postgres:
            batch = batch.with_for_update(skip_locked=True)
        statement = delete(table).where(table.c.id.in_(batch.scalar_subquery()))
        try:
            async with self.engine.begin() as conn:
                if self._postgres:
                    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                result = await conn.execute(statement)
        except _FAILURES as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        return int(result.rowcount)

    async def count(self, kind: PurgeKind, *, before: datetime) -> int:
        table, ended, _order = _target(kind, before)
        try:
            async with self.engine.connect() as conn:
                counted = await conn.scalar(select(func.count()).select_from(table).where(ended))
        except _FAILURES as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        return int(counted or 0)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        """PostgreSQL: a session advisory lock on a connection held for the block (its
        transaction committed at once, so the connection does not sit "idle in
        transaction"). Unlocked at the end; should that fail, the connection is thrown
        away, which releases the lock too. SQLite: always True (one writer at a time)."""
        if not self._postgres:
            yield True
            return
        try:
            conn = await self.engine.connect()
        except _FAILURES as exc:
            raise StorageUnavailable(type(exc).__name__) from exc
        try:
            acquired = bool(
                await conn.scalar(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": PURGE_LOCK_KEY}
                )
            )
            await conn.commit()
        except BaseException as exc:
            await _discard(conn)
            if isinstance(exc, _FAILURES):
                raise StorageUnavailable(type(exc).__name__) from exc
            raise
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    await conn.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": PURGE_LOCK_KEY}
                    )
                    await conn.commit()
                except BaseException:
                    await _discard(conn)
                    raise
            await conn.close()


async def _discard(connection: AsyncConnection) -> None:
    """Close the connection for good (not back to the pool): its session, and any
    advisory lock it holds, end with it."""
    try:
        await connection.invalidate()
        await connection.close()
    except Exception:  # the connection is being thrown away regardless
        log.debug("discarding the purge lock connection failed", exc_info=True)
