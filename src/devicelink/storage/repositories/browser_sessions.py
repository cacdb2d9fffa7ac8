"""Sessions of the sign-in pages: :class:`devicelink.core.ports.BrowserSessionRepository`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from devicelink.core.models import BrowserSession
from devicelink.storage.repositories.base import Repository
from devicelink.storage.rows import session_from_row
from devicelink.storage.tables import browser_sessions


class SqlBrowserSessionRepository(Repository):
    __slots__ = ()

    async def add(
        self,
        token_hash: bytes,
        *,
        user_id: int | None,
        data: Mapping[str, str],
        now: datetime,
        expires_at: datetime,
    ) -> BrowserSession:
        return await self._inserted(
            insert(browser_sessions)
            .values(
                token_hash=token_hash,
                user_id=user_id,
                data=json.dumps(dict(data)),
                created_at=now,
                expires_at=expires_at,
            )
            .returning(browser_sessions),
            session_from_row,
        )

    async def get(self, token_hash: bytes, *, now: datetime) -> BrowserSession | None:
        return await self._first(
            select(browser_sessions).where(
                browser_sessions.c.token_hash == token_hash, browser_sessions.c.expires_at > now
            ),
            session_from_row,
        )

    async def set_data(self, session_id: int, data: Mapping[str, str]) -> None:
        await self._conn.execute(
            update(browser_sessions)
            .where(browser_sessions.c.id == session_id)
            .values(data=json.dumps(dict(data)))
        )

    async def delete(self, session_id: int) -> None:
        await self._conn.execute(
            delete(browser_sessions).where(browser_sessions.c.id == session_id)
        )

    async def delete_for_user(self, user_id: int) -> int:
        result = await self._conn.execute(
            delete(browser_sessions).where(browser_sessions.c.user_id == user_id)
        )
        return result.rowcount
