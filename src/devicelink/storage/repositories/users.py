"""Accounts: :class:`devicelink.core.ports.UserRepository`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update

from devicelink.core.models import User
from devicelink.core.names import name_key
from devicelink.storage.keycache import user_changed
from devicelink.storage.repositories.base import AnnouncingRepository
from devicelink.storage.rows import user_from_row
from devicelink.storage.tables import users


class SqlUserRepository(AnnouncingRepository):
    __slots__ = ()

    async def get(self, user_id: int) -> User | None:
        return await self._first(select(users).where(users.c.id == user_id), user_from_row)

    async def get_by_username(self, username: str) -> User | None:
        # The exact name first: two accounts from before migration 0008 may share a key.
        exact = users.c.username == username
        return await self._first(
            select(users)
            .where(exact | (users.c.username_key == name_key(username)))
            .order_by(exact.desc(), users.c.id)
            .limit(1),
            user_from_row,
        )

    async def get_by_subject(self, provider: str, subject: str) -> User | None:
        return await self._first(
            select(users).where(users.c.provider == provider, users.c.subject == subject),
            user_from_row,
        )

    async def add(
        self,
        username: str,
        password_hash: str | None,
        now: datetime,
        *,
        provider: str = "local",
        subject: str | None = None,
        display_name: str | None = None,
    ) -> User:
        async with self._refused_if_taken(f"user {username!r} already exists"):
            user = await self._inserted(
                insert(users)
                .values(
                    username=username,
                    username_key=name_key(username),
                    password_hash=password_hash,
                    created_at=now,
                    provider=provider,
                    subject=subject,
                    display_name=display_name,
                )
                .returning(users),
                user_from_row,
            )
        return user

    async def disable(self, user_id: int, *, now: datetime) -> bool:
        return await self._stamp_once(users, user_id, "disabled_at", now, user_changed(user_id))

    async def set_display_name(self, user_id: int, display_name: str) -> bool:
        return await self._changed_one_row(
            update(users).where(users.c.id == user_id).values(display_name=display_name)
        )

    async def set_password(self, user_id: int, password_hash: str) -> bool:
        return await self._changed_one_row(
            update(users).where(users.c.id == user_id).values(password_hash=password_hash)
        )

    async def count(self) -> int:
        return int((await self._conn.execute(select(func.count()).select_from(users))).scalar_one())

    async def list(self) -> list[User]:
        return await self._all(select(users).order_by(users.c.username), user_from_row)
