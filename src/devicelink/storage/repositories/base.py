"""What every repository shares: the transaction's connection, rows read into models,
compare-and-set updates, and inserts that may meet a unique constraint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Executable, Table, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from devicelink.storage.rows import Columns

M = TypeVar("M")


class Repository:
    __slots__ = ("_conn",)

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def _first(self, statement: Executable, to_model: Callable[[Columns], M]) -> M | None:
        row = (await self._conn.execute(statement)).first()
        return None if row is None else to_model(row._mapping)

    async def _inserted(self, statement: Executable, to_model: Callable[[Columns], M]) -> M:
        """Run an ``INSERT ... RETURNING``: the row it inserted, as a model."""
        row = (await self._conn.execute(statement)).one()
        return to_model(row._mapping)

    async def _all(self, statement: Executable, to_model: Callable[[Columns], M]) -> list[M]:
        return [to_model(row._mapping) for row in await self._conn.execute(statement)]

    async def _changed_one_row(self, statement: Executable) -> bool:
        """Run a compare-and-set ``UPDATE``: True when it found its row as expected."""
        return (await self._conn.execute(statement)).rowcount == 1

    @asynccontextmanager
    async def _refused_if_taken(self, refusal: str) -> AsyncIterator[None]:
        """Insert in a savepoint: a unique constraint the insert breaks raises
        ``ValueError(refusal)`` and leaves the transaction usable."""
        try:
            async with self._conn.begin_nested():
                yield
        except IntegrityError as exc:
            raise ValueError(refusal) from exc


class AnnouncingRepository(Repository):
    """A repository whose changes cached key lookups must hear of, announced when the
    transaction commits (see :mod:`devicelink.storage.keycache`)."""

    __slots__ = ("_announcements",)

    def __init__(self, connection: AsyncConnection, announcements: list[str]) -> None:
        super().__init__(connection)
        self._announcements = announcements

    async def _stamp_once(
        self, table: Table, row_id: int, column: str, now: datetime, announcement: str
    ) -> bool:
        """Stamp ``column`` of the row with ``now`` unless it already is, and if so
        announce it; False when nothing changed."""
        stamped = await self._changed_one_row(
            update(table)
            .where(table.c.id == row_id, table.c[column].is_(None))
            .values({column: now})
        )
        if stamped:
            self._announcements.append(announcement)
        return stamped
