"""Repositories: the contracts of :mod:`devicelink.core.ports` in SQL.

Every state change is one ``UPDATE ... WHERE <expected state>`` whose row count says
whether it happened; nothing reads a row, decides, and writes it back unguarded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from devicelink.core.models import (
    ApiKey,
    AuditEvent,
    AuditKind,
    BrowserSession,
    Client,
    DeviceAuthorization,
    NewApiKey,
    NewDeviceAuthorization,
    Status,
    User,
)
from devicelink.core.ports import DuplicateCode
from devicelink.storage.keycache import key_changed, user_changed
from devicelink.storage.tables import (
    ApiKeyRow,
    AuditEventRow,
    BrowserSessionRow,
    ClientRow,
    DeviceAuthorizationRow,
    UserRow,
)

clients_t = cast(Table, ClientRow.__table__)
users_t = cast(Table, UserRow.__table__)
devauth_t = cast(Table, DeviceAuthorizationRow.__table__)
keys_t = cast(Table, ApiKeyRow.__table__)
sessions_t = cast(Table, BrowserSessionRow.__table__)
audit_t = cast(Table, AuditEventRow.__table__)


def _scope_tuple(stored: str) -> tuple[str, ...]:
    return tuple(stored.split()) if stored else ()


def _scope_text(scope: tuple[str, ...]) -> str:
    return " ".join(scope)


def _client(row: Any) -> Client:
    return Client(
        client_id=row.client_id,
        name=row.name,
        scopes=_scope_tuple(row.scopes),
        key_lifetime=row.key_lifetime,
        confidential=row.confidential,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
    )


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        disabled=row.disabled_at is not None,
        password_hash=row.password_hash,
        created_at=row.created_at,
        provider=row.provider,
        subject=row.subject,
    )


_DEVAUTH_COLUMNS = (
    devauth_t.c.id,
    devauth_t.c.client_id,
    devauth_t.c.scope,
    devauth_t.c.status,
    devauth_t.c.created_at,
    devauth_t.c.expires_at,
    devauth_t.c.interval,
    devauth_t.c.user_id,
    devauth_t.c.approved_at,
    devauth_t.c.denied_at,
    devauth_t.c.consumed_at,
    devauth_t.c.last_polled_at,
    devauth_t.c.request_ip,
    devauth_t.c.user_agent,
)


def _authorization(row: Any) -> DeviceAuthorization:
    return DeviceAuthorization(
        id=row.id,
        client_id=row.client_id,
        scope=_scope_tuple(row.scope),
        status=Status(row.status),
        created_at=row.created_at,
        expires_at=row.expires_at,
        interval=row.interval,
        user_id=row.user_id,
        approved_at=row.approved_at,
        denied_at=row.denied_at,
        consumed_at=row.consumed_at,
        last_polled_at=row.last_polled_at,
        request_ip=row.request_ip,
        user_agent=row.user_agent,
    )


_KEY_COLUMNS = (
    keys_t.c.id,
    keys_t.c.name,
    keys_t.c.user_id,
    keys_t.c.client_id,
    keys_t.c.device_authorization_id,
    keys_t.c.scope,
    keys_t.c.created_at,
    keys_t.c.expires_at,
    keys_t.c.last_used_at,
    keys_t.c.last_used_ip,
    keys_t.c.revoked_at,
    keys_t.c.external_id,
)


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        user_id=row.user_id,
        client_id=row.client_id,
        device_authorization_id=row.device_authorization_id,
        scope=_scope_tuple(row.scope),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        last_used_ip=row.last_used_ip,
        revoked_at=row.revoked_at,
        external_id=row.external_id,
    )


class SqlClientRepository:
    __slots__ = ("_conn",)

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def get(self, client_id: str) -> Client | None:
        row = (
            await self._conn.execute(select(clients_t).where(clients_t.c.client_id == client_id))
        ).first()
        return _client(row) if row else None

    async def add(self, client: Client) -> None:
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(
                    insert(clients_t).values(
                        client_id=client.client_id,
                        name=client.name,
                        scopes=_scope_text(client.scopes),
                        key_lifetime=client.key_lifetime,
                        confidential=client.confidential,
                        secret_hash=client.secret_hash,
                        created_at=client.created_at,
                    )
                )
        except IntegrityError as exc:
            raise ValueError(f"client {client.client_id!r} already exists") from exc

    async def list(self) -> list[Client]:
        rows = await self._conn.execute(select(clients_t).order_by(clients_t.c.client_id))
        return [_client(row) for row in rows]


class SqlUserRepository:
    __slots__ = ("_announcements", "_conn")

    def __init__(self, connection: AsyncConnection, announcements: list[str]) -> None:
        self._conn = connection
        self._announcements = announcements

    async def get(self, user_id: int) -> User | None:
        row = (await self._conn.execute(select(users_t).where(users_t.c.id == user_id))).first()
        return _user(row) if row else None

    async def get_by_username(self, username: str) -> User | None:
        row = (
            await self._conn.execute(select(users_t).where(users_t.c.username == username))
        ).first()
        return _user(row) if row else None

    async def get_by_subject(self, provider: str, subject: str) -> User | None:
        row = (
            await self._conn.execute(
                select(users_t).where(users_t.c.provider == provider, users_t.c.subject == subject)
            )
        ).first()
        return _user(row) if row else None

    async def add(
        self,
        username: str,
        password_hash: str | None,
        now: datetime,
        *,
        provider: str = "local",
        subject: str | None = None,
    ) -> User:
        try:
            async with self._conn.begin_nested():
                row = (
                    await self._conn.execute(
                        insert(users_t)
                        .values(
                            username=username,
                            password_hash=password_hash,
                            created_at=now,
                            provider=provider,
                            subject=subject,
                        )
                        .returning(users_t)
                    )
                ).one()
        except IntegrityError as exc:
            raise ValueError(f"user {username!r} already exists") from exc
        return _user(row)

    async def disable(self, user_id: int, *, now: datetime) -> bool:
        result = await self._conn.execute(
            update(users_t)
            .where(users_t.c.id == user_id, users_t.c.disabled_at.is_(None))
            .values(disabled_at=now)
        )
        if result.rowcount != 1:
            return False
        self._announcements.append(user_changed(user_id))
        return True

    async def set_password(self, user_id: int, password_hash: str) -> bool:
        result = await self._conn.execute(
            update(users_t).where(users_t.c.id == user_id).values(password_hash=password_hash)
        )
        return result.rowcount == 1

    async def count(self) -> int:
        return int(
            (await self._conn.execute(select(func.count()).select_from(users_t))).scalar_one()
        )


class SqlDeviceAuthorizationRepository:
    __slots__ = ("_conn",)

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(self, new: NewDeviceAuthorization) -> DeviceAuthorization:
        # INSERT ... ON CONFLICT DO NOTHING RETURNING: a collision of either code hash
        # returns no row and leaves the transaction usable, without a savepoint.
        dialect_insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        stmt = (
            dialect_insert(devauth_t)
            .values(
                device_code_hash=new.device_code_hash,
                user_code_hash=new.user_code_hash,
                client_id=new.client_id,
                scope=_scope_text(new.scope),
                status=Status.PENDING.value,
                created_at=new.created_at,
                expires_at=new.expires_at,
                interval=new.interval,
                request_ip=new.request_ip,
                user_agent=new.user_agent,
            )
            .on_conflict_do_nothing()
            .returning(*_DEVAUTH_COLUMNS)
        )
        row = (await self._conn.execute(stmt)).first()
        if row is None:
            raise DuplicateCode
        return _authorization(row)

    async def get_by_device_code(self, device_code_hash: bytes) -> DeviceAuthorization | None:
        row = (
            await self._conn.execute(
                select(*_DEVAUTH_COLUMNS).where(devauth_t.c.device_code_hash == device_code_hash)
            )
        ).first()
        return _authorization(row) if row else None

    async def get_with_client(
        self, device_code_hash: bytes
    ) -> tuple[DeviceAuthorization, Client] | None:
        row = (
            await self._conn.execute(
                select(
                    *_DEVAUTH_COLUMNS,
                    clients_t.c.name.label("client_name"),
                    clients_t.c.scopes.label("client_scopes"),
                    clients_t.c.key_lifetime,
                    clients_t.c.confidential,
                    clients_t.c.secret_hash,
                    clients_t.c.created_at.label("client_created_at"),
                )
                .join(clients_t, clients_t.c.client_id == devauth_t.c.client_id)
                .where(devauth_t.c.device_code_hash == device_code_hash)
            )
        ).first()
        if row is None:
            return None
        client = Client(
            client_id=row.client_id,
            name=row.client_name,
            scopes=_scope_tuple(row.client_scopes),
            key_lifetime=row.key_lifetime,
            confidential=row.confidential,
            secret_hash=row.secret_hash,
            created_at=row.client_created_at,
        )
        return _authorization(row), client

    async def get_by_user_code(self, user_code_hash: bytes) -> DeviceAuthorization | None:
        row = (
            await self._conn.execute(
                select(*_DEVAUTH_COLUMNS).where(devauth_t.c.user_code_hash == user_code_hash)
            )
        ).first()
        return _authorization(row) if row else None

    async def record_poll(
        self,
        authorization_id: int,
        *,
        previous_poll: datetime | None,
        now: datetime,
        interval: int,
    ) -> bool:
        last = devauth_t.c.last_polled_at
        stmt = (
            update(devauth_t)
            .where(devauth_t.c.id == authorization_id)
            .where(devauth_t.c.status == Status.PENDING.value)
            .where(last.is_(None) if previous_poll is None else last == previous_poll)
            .values(last_polled_at=now, interval=interval)
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def transition(
        self,
        authorization_id: int,
        *,
        from_status: Status,
        to_status: Status,
        now: datetime,
        user_id: int | None = None,
    ) -> bool:
        values: dict[str, Any] = {"status": to_status.value}
        stamp = {
            Status.APPROVED: "approved_at",
            Status.DENIED: "denied_at",
            Status.CONSUMED: "consumed_at",
        }.get(to_status)
        if stamp is not None:
            values[stamp] = now
        if to_status in (Status.APPROVED, Status.DENIED):
            values["user_id"] = user_id
        stmt = (
            update(devauth_t)
            .where(devauth_t.c.id == authorization_id)
            .where(devauth_t.c.status == from_status.value)
            .where(devauth_t.c.expires_at > now)
            .values(**values)
        )
        return (await self._conn.execute(stmt)).rowcount == 1


class SqlApiKeyRepository:
    __slots__ = ("_announcements", "_conn")

    def __init__(self, connection: AsyncConnection, announcements: list[str]) -> None:
        self._conn = connection
        self._announcements = announcements

    async def add(self, new: NewApiKey) -> ApiKey:
        try:
            async with self._conn.begin_nested():
                row = (
                    await self._conn.execute(
                        insert(keys_t)
                        .values(
                            key_hash=new.key_hash,
                            name=new.name,
                            user_id=new.user_id,
                            client_id=new.client_id,
                            device_authorization_id=new.device_authorization_id,
                            scope=_scope_text(new.scope),
                            created_at=new.created_at,
                            expires_at=new.expires_at,
                            external_id=new.external_id,
                        )
                        .returning(*_KEY_COLUMNS)
                    )
                ).one()
        except IntegrityError as exc:
            # The unique device authorization (one key per flow) is the constraint a
            # correct caller can meet; the others (key hash, owner) mean a bug.
            raise ValueError(
                "the key conflicts with a stored one (one key per device authorization)"
            ) from exc
        return _api_key(row)

    async def get_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        row = (
            await self._conn.execute(
                select(
                    *_KEY_COLUMNS,
                    users_t.c.username,
                    users_t.c.disabled_at,
                    users_t.c.created_at.label("user_created_at"),
                    users_t.c.provider,
                    users_t.c.subject,
                )
                .join(users_t, users_t.c.id == keys_t.c.user_id)
                .where(keys_t.c.key_hash == key_hash)
            )
        ).first()
        if row is None:
            return None
        owner = User(
            id=row.user_id,
            username=row.username,
            disabled=row.disabled_at is not None,
            created_at=row.user_created_at,
            provider=row.provider,
            subject=row.subject,
        )
        return _api_key(row), owner

    async def list_for_user(self, user_id: int) -> list[ApiKey]:
        rows = await self._conn.execute(
            select(*_KEY_COLUMNS).where(keys_t.c.user_id == user_id).order_by(keys_t.c.id)
        )
        return [_api_key(row) for row in rows]

    async def get(self, key_id: int) -> ApiKey | None:
        row = (await self._conn.execute(select(*_KEY_COLUMNS).where(keys_t.c.id == key_id))).first()
        return _api_key(row) if row else None

    async def list_all(self) -> list[tuple[ApiKey, User]]:
        rows = await self._conn.execute(
            select(*_KEY_COLUMNS, *(c.label(f"owner_{c.name}") for c in users_t.c))
            .join(users_t, users_t.c.id == keys_t.c.user_id)
            .order_by(keys_t.c.id)
        )
        return [(_api_key(row), _prefixed_user(row)) for row in rows]

    async def record_use(
        self, key_id: int, *, now: datetime, ip: str | None, not_since: datetime
    ) -> bool:
        last = keys_t.c.last_used_at
        result = await self._conn.execute(
            update(keys_t)
            .where(keys_t.c.id == key_id, (last.is_(None)) | (last < not_since))
            .values(last_used_at=now, last_used_ip=ip)
        )
        return result.rowcount == 1

    async def revoke(self, key_id: int, *, now: datetime) -> bool:
        result = await self._conn.execute(
            update(keys_t)
            .where(keys_t.c.id == key_id, keys_t.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        if result.rowcount != 1:
            return False
        self._announcements.append(key_changed(key_id))
        return True

    async def count_for_authorization(self, device_authorization_id: int) -> int:
        return int(
            (
                await self._conn.execute(
                    select(func.count())
                    .select_from(keys_t)
                    .where(keys_t.c.device_authorization_id == device_authorization_id)
                )
            ).scalar_one()
        )


def _prefixed_user(row: Any) -> User:
    """The owner read alongside a key, its columns labelled ``owner_*``."""
    return User(
        id=row.owner_id,
        username=row.owner_username,
        disabled=row.owner_disabled_at is not None,
        created_at=row.owner_created_at,
        provider=row.owner_provider,
        subject=row.owner_subject,
    )


def _session(row: Any) -> BrowserSession:
    return BrowserSession(
        id=row.id,
        user_id=row.user_id,
        data=json.loads(row.data),
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class SqlBrowserSessionRepository:
    __slots__ = ("_conn",)

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def add(
        self,
        token_hash: bytes,
        *,
        user_id: int | None,
        data: Mapping[str, str],
        now: datetime,
        expires_at: datetime,
    ) -> BrowserSession:
        row = (
            await self._conn.execute(
                insert(sessions_t)
                .values(
                    token_hash=token_hash,
                    user_id=user_id,
                    data=json.dumps(dict(data)),
                    created_at=now,
                    expires_at=expires_at,
                )
                .returning(sessions_t)
            )
        ).one()
        return _session(row)

    async def get(self, token_hash: bytes, *, now: datetime) -> BrowserSession | None:
        row = (
            await self._conn.execute(
                select(sessions_t).where(
                    sessions_t.c.token_hash == token_hash, sessions_t.c.expires_at > now
                )
            )
        ).first()
        return _session(row) if row else None

    async def set_data(self, session_id: int, data: Mapping[str, str]) -> None:
        await self._conn.execute(
            update(sessions_t)
            .where(sessions_t.c.id == session_id)
            .values(data=json.dumps(dict(data)))
        )

    async def delete(self, session_id: int) -> None:
        await self._conn.execute(delete(sessions_t).where(sessions_t.c.id == session_id))


class SqlAuditLog:
    __slots__ = ("_conn",)

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection

    async def record(self, event: AuditEvent) -> None:
        await self._conn.execute(
            insert(audit_t).values(
                occurred_at=event.occurred_at,
                event=event.kind.value,
                user_id=event.user_id,
                username=event.username,
                client_id=event.client_id,
                device_authorization_id=event.device_authorization_id,
                api_key_id=event.api_key_id,
                ip=event.ip,
                user_agent=event.user_agent and event.user_agent[:512],
                detail=event.detail and event.detail[:300],
            )
        )

    async def recent(
        self, *, user_id: int | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        stmt = select(audit_t).order_by(audit_t.c.id.desc()).limit(limit)
        if user_id is not None:
            stmt = stmt.where(audit_t.c.user_id == user_id)
        if since is not None:
            stmt = stmt.where(audit_t.c.occurred_at >= since)
        rows = list(await self._conn.execute(stmt))
        return [
            AuditEvent(
                kind=AuditKind(row.event),
                occurred_at=row.occurred_at,
                user_id=row.user_id,
                username=row.username,
                client_id=row.client_id,
                device_authorization_id=row.device_authorization_id,
                api_key_id=row.api_key_id,
                ip=row.ip,
                user_agent=row.user_agent,
                detail=row.detail,
                id=row.id,
            )
            for row in reversed(rows)
        ]
