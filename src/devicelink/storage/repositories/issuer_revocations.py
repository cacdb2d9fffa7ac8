"""The outbox of revocations a key issuer has yet to hear of:
:class:`devicelink.core.ports.IssuerRevocationRepository`.

A claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` then ``DELETE`` in the caller's
transaction: on PostgreSQL a revocation another process is delivering is skipped, not
waited for, and one already delivered (deleted) is not found again. SQLite has a single
writer (``BEGIN IMMEDIATE``): the same statements without the locking clause.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from devicelink.core.models import PendingRevocation
from devicelink.storage.repositories.api_keys import _COLUMNS as KEY_COLUMNS
from devicelink.storage.repositories.base import Repository
from devicelink.storage.rows import Columns, api_key_from_row
from devicelink.storage.tables import api_keys, issuer_revocations

_r = issuer_revocations

_PENDING = select(
    *KEY_COLUMNS,
    _r.c.id.label("revocation_id"),
    _r.c.requested_at,
    _r.c.next_attempt_at,
    _r.c.attempts,
    _r.c.last_error,
).join(api_keys, api_keys.c.id == _r.c.api_key_id)


def _pending_from_row(row: Columns) -> PendingRevocation:
    return PendingRevocation(
        id=row["revocation_id"],
        key=api_key_from_row(row),
        requested_at=row["requested_at"],
        next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


class SqlIssuerRevocationRepository(Repository):
    __slots__ = ()

    async def add(self, api_key_id: int, *, now: datetime) -> int | None:
        dialect_insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        row = (
            await self._conn.execute(
                dialect_insert(_r)
                .values(api_key_id=api_key_id, requested_at=now, next_attempt_at=now, attempts=0)
                .on_conflict_do_nothing()
                .returning(_r.c.id)
            )
        ).first()
        return None if row is None else int(row[0])

    async def due(self, *, now: datetime, limit: int) -> list[PendingRevocation]:
        return await self._all(
            _PENDING.where(_r.c.next_attempt_at <= now)
            .order_by(_r.c.next_attempt_at, _r.c.id)
            .limit(limit),
            _pending_from_row,
        )

    async def claim(self, revocation_id: int, *, now: datetime) -> PendingRevocation | None:
        pending = await self._first(
            _PENDING.where(_r.c.id == revocation_id, _r.c.next_attempt_at <= now).with_for_update(
                of=_r, skip_locked=True
            ),
            _pending_from_row,
        )
        if pending is None:
            return None
        if not await self._changed_one_row(delete(_r).where(_r.c.id == revocation_id)):
            return None
        return pending

    async def postpone(self, revocation_id: int, *, until: datetime, error: str) -> bool:
        return await self._changed_one_row(
            update(_r)
            .where(_r.c.id == revocation_id)
            .values(next_attempt_at=until, attempts=_r.c.attempts + 1, last_error=error[:300])
        )

    async def discard(self, api_key_id: int) -> bool:
        return await self._changed_one_row(delete(_r).where(_r.c.api_key_id == api_key_id))

    async def count(self) -> int:
        return int((await self._conn.execute(select(func.count()).select_from(_r))).scalar_one())

    async def count_for_client(self, client_id: str) -> int:
        counted = (
            select(func.count())
            .select_from(_r.join(api_keys, api_keys.c.id == _r.c.api_key_id))
            .where(api_keys.c.client_id == client_id)
        )
        return int((await self._conn.execute(counted)).scalar_one())
