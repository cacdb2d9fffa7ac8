"""API keys and their owners: :class:`devicelink.core.ports.ApiKeyRepository`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, insert, select, update

from devicelink.core.models import ApiKey, NewApiKey, User
from devicelink.storage.keycache import key_changed
from devicelink.storage.repositories.base import AnnouncingRepository
from devicelink.storage.repositories.instance_facts import is_database_secret
from devicelink.storage.rows import (
    api_key_from_row,
    columns_of,
    key_and_owner_from_row,
    scope_text,
)
from devicelink.storage.tables import api_keys, users

# Every column but the key hash, which is only ever looked up, never read back.
_COLUMNS = (
    api_keys.c.id,
    api_keys.c.name,
    api_keys.c.user_id,
    api_keys.c.client_id,
    api_keys.c.device_authorization_id,
    api_keys.c.scope,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.last_used_at,
    api_keys.c.last_used_ip,
    api_keys.c.revoked_at,
    api_keys.c.external_id,
)

# A key with its owner, as :func:`key_and_owner_from_row` reads it (the fast path's
# key lookup selects the same columns).
_WITH_OWNER = select(
    *_COLUMNS,
    users.c.username,
    users.c.disabled_at,
    users.c.created_at.label("user_created_at"),
    users.c.provider,
    users.c.subject,
).join(users, users.c.id == api_keys.c.user_id)
WITH_OWNER = _WITH_OWNER
"""The same, for the SQLite fast path's prepared lookups
(:mod:`devicelink.storage.sqlite_fast_path`)."""


class SqlApiKeyRepository(AnnouncingRepository):
    __slots__ = ()

    async def add(self, new: NewApiKey) -> ApiKey:
        # The unique device authorization (one key per flow) is the constraint a correct
        # caller can meet; the others (key hash, owner) mean a bug.
        async with self._refused_if_taken(
            "the key conflicts with a stored one (one key per device authorization)"
        ):
            key = await self._inserted(
                insert(api_keys)
                .values(columns_of(new, scope=scope_text(new.scope)))
                .returning(*_COLUMNS),
                api_key_from_row,
            )
        return key

    async def get(self, key_id: int) -> ApiKey | None:
        return await self._first(select(*_COLUMNS).where(api_keys.c.id == key_id), api_key_from_row)

    async def get_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        return await self._first(
            _WITH_OWNER.where(api_keys.c.key_hash == key_hash), key_and_owner_from_row
        )

    async def list_for_user(self, user_id: int) -> list[ApiKey]:
        return await self._all(
            select(*_COLUMNS).where(api_keys.c.user_id == user_id).order_by(api_keys.c.id),
            api_key_from_row,
        )

    async def list_all(self) -> list[tuple[ApiKey, User]]:
        return await self._all(_WITH_OWNER.order_by(api_keys.c.id), key_and_owner_from_row)

    async def list_for_client(self, client_id: str) -> list[tuple[ApiKey, User]]:
        return await self._all(
            _WITH_OWNER.where(api_keys.c.client_id == client_id).order_by(api_keys.c.id),
            key_and_owner_from_row,
        )

    async def live_counts_by_client(self, *, now: datetime) -> dict[str, int]:
        # ApiKey.is_active, as one statement.
        live = api_keys.c.revoked_at.is_(None) & (
            api_keys.c.expires_at.is_(None) | (api_keys.c.expires_at > now)
        )
        rows = await self._conn.execute(
            select(api_keys.c.client_id, func.count()).where(live).group_by(api_keys.c.client_id)
        )
        return {client_id: int(count) for client_id, count in rows}

    async def record_use(
        self, key_id: int, *, now: datetime, ip: str | None, not_since: datetime
    ) -> bool:
        last = api_keys.c.last_used_at
        return await self._changed_one_row(
            update(api_keys)
            .where(api_keys.c.id == key_id, (last.is_(None)) | (last < not_since))
            .values(last_used_at=now, last_used_ip=ip)
        )

    async def rehash(
        self,
        key_id: int,
        *,
        old_hash: bytes,
        new_hash: bytes,
        fingerprint: str,
        used_at: datetime | None,
        ip: str | None,
    ) -> bool:
        values: dict[str, object] = {"key_hash": new_hash}
        if used_at is not None:
            # A use, as record_use would write it; a key never used keeps none, so that
            # record_use still writes its first use and the audit event.
            last = api_keys.c.last_used_at
            values["last_used_at"] = case((last.is_(None), None), else_=used_at)
            values["last_used_ip"] = case((last.is_(None), None), else_=ip)
        moved = await self._changed_one_row(
            update(api_keys)
            .where(
                api_keys.c.id == key_id,
                api_keys.c.key_hash == old_hash,
                is_database_secret(fingerprint),
            )
            .values(values)
        )
        if moved:  # a process that cached the key under its old hash forgets it
            self._announcements.append(key_changed(key_id))
        return moved

    async def live_unused_since(
        self, since: datetime, *, now: datetime
    ) -> list[tuple[ApiKey, User]]:
        k = api_keys.c
        return await self._all(
            _WITH_OWNER.where(
                k.revoked_at.is_(None),
                k.expires_at.is_(None) | (k.expires_at > now),
                users.c.disabled_at.is_(None),
                k.created_at < since,
                k.last_used_at.is_(None) | (k.last_used_at < since),
            ).order_by(k.id),
            key_and_owner_from_row,
        )

    async def revoke(self, key_id: int, *, now: datetime) -> bool:
        return await self._stamp_once(api_keys, key_id, "revoked_at", now, key_changed(key_id))

    async def list_by_external_id(self, external_id: str) -> list[ApiKey]:
        return await self._all(
            select(*_COLUMNS).where(api_keys.c.external_id == external_id).order_by(api_keys.c.id),
            api_key_from_row,
        )

    async def count_for_authorization(self, device_authorization_id: int) -> int:
        return int(
            (
                await self._conn.execute(
                    select(func.count())
                    .select_from(api_keys)
                    .where(api_keys.c.device_authorization_id == device_authorization_id)
                )
            ).scalar_one()
        )
