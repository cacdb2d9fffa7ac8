"""Rows with times in the past, created through the repositories (and, for thousands of
rows, one multi-row INSERT), for the purge tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, func, insert, select

from devicelink.core.authcode import AuthorizationCode, NewAuthorizationCode
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
from devicelink.storage import SqlStore, tables

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)  # the FakeClock's start
DAY = timedelta(days=1)
CLIENT = Client(
    client_id="devicelink-cli",
    name="devicelink CLI",
    scopes=("api",),
    key_lifetime=30 * 86_400,
    created_at=NOW - 400 * DAY,
)
TABLES: dict[str, Table] = {
    "device_authorizations": tables.device_authorizations,
    "authorization_codes": tables.authorization_codes,
    "api_keys": tables.api_keys,
    "browser_sessions": tables.browser_sessions,
    "audit_events": tables.audit_events,
}


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Rows:
    """Creates rows in ``store``; ``now`` is the moment the purge will see."""

    store: SqlStore
    now: datetime = NOW
    _user: User | None = None

    async def user(self) -> User:
        if self._user is None:
            async with self.store.transaction() as tx:
                if await tx.clients.get(CLIENT.client_id) is None:
                    await tx.clients.add(CLIENT)
                self._user = await tx.users.add("alice", None, self.now - 400 * DAY)
        return self._user

    async def authorization(
        self, label: str, *, expires_at: datetime, status: Status = Status.PENDING
    ) -> DeviceAuthorization:
        user = await self.user()
        created = expires_at - timedelta(seconds=600)
        async with self.store.transaction() as tx:
            added = await tx.device_authorizations.add(
                NewDeviceAuthorization(
                    device_code_hash=digest(f"device:{label}"),
                    user_code_hash=digest(f"user:{label}"),
                    client_id=CLIENT.client_id,
                    scope=("api",),
                    created_at=created,
                    expires_at=expires_at,
                    interval=5,
                    request_ip="203.0.113.7",
                    user_agent="purge-test",
                )
            )
            moment = created + timedelta(seconds=30)
            if status is not Status.PENDING:
                first = Status.DENIED if status is Status.DENIED else Status.APPROVED
                assert await tx.device_authorizations.transition(
                    added.id,
                    from_status=Status.PENDING,
                    to_status=first,
                    now=moment,
                    user_id=user.id,
                )
            if status is Status.CONSUMED:
                assert await tx.device_authorizations.transition(
                    added.id,
                    from_status=Status.APPROVED,
                    to_status=Status.CONSUMED,
                    now=moment,
                )
        return added

    async def authorization_code(
        self, label: str, *, expires_at: datetime, redeemed: bool = False
    ) -> AuthorizationCode:
        """A same-device sign-in code (lifetime a minute), redeemed within it if asked."""
        user = await self.user()
        created = expires_at - timedelta(seconds=60)
        async with self.store.transaction() as tx:
            added = await tx.authorization_codes.add(
                NewAuthorizationCode(
                    code_hash=digest(f"code:{label}"),
                    client_id=CLIENT.client_id,
                    user_id=user.id,
                    redirect_uri="http://127.0.0.1:53682/callback",
                    code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    scope=("api",),
                    created_at=created,
                    expires_at=expires_at,
                )
            )
            if redeemed:
                assert await tx.authorization_codes.redeem(
                    added.id, now=created + timedelta(seconds=5)
                )
        return added

    async def key(
        self,
        label: str,
        *,
        expires_at: datetime | None,
        revoked_at: datetime | None = None,
        device_authorization_id: int | None = None,
    ) -> ApiKey:
        user = await self.user()
        async with self.store.transaction() as tx:
            key = await tx.api_keys.add(
                NewApiKey(
                    key_hash=digest(f"key:{label}"),
                    name=f"key {label}",
                    user_id=user.id,
                    client_id=CLIENT.client_id,
                    device_authorization_id=device_authorization_id,
                    scope=("api",),
                    created_at=self.now - 100 * DAY,
                    expires_at=expires_at,
                )
            )
            if revoked_at is not None:
                assert await tx.api_keys.revoke(key.id, now=revoked_at)
        return key

    async def session(self, label: str, *, expires_at: datetime) -> BrowserSession:
        async with self.store.transaction() as tx:
            return await tx.browser_sessions.add(
                digest(f"session:{label}"),
                user_id=None,
                data={},
                now=expires_at - timedelta(hours=12),
                expires_at=expires_at,
            )

    async def audit(self, detail: str, *, occurred_at: datetime) -> None:
        async with self.store.transaction() as tx:
            await tx.audit.record(
                AuditEvent(kind=AuditKind.FLOW_STARTED, occurred_at=occurred_at, detail=detail)
            )

    async def many_authorizations(self, prefix: str, count: int, *, expires_at: datetime) -> None:
        """``count`` pending device authorizations in one INSERT, expiring a millisecond
        apart from ``expires_at`` on."""
        await self.user()
        table = TABLES["device_authorizations"]
        rows = [
            {
                "device_code_hash": digest(f"device:{prefix}{i}"),
                "user_code_hash": digest(f"user:{prefix}{i}"),
                "client_id": CLIENT.client_id,
                "scope": "api",
                "status": "pending",
                "created_at": expires_at - timedelta(seconds=600),
                "expires_at": expires_at + timedelta(milliseconds=i),
                "interval": 5,
            }
            for i in range(count)
        ]
        async with self.store.engine.begin() as conn:
            for start in range(0, count, 1000):
                await conn.execute(insert(table), rows[start : start + 1000])

    async def many_keys(
        self, prefix: str, count: int, *, expires_at: datetime | None, revoked_at: datetime | None
    ) -> None:
        """``count`` API keys in one INSERT."""
        user = await self.user()
        rows = [
            {
                "key_hash": digest(f"key:{prefix}{i}"),
                "name": f"key {prefix}{i}",
                "user_id": user.id,
                "client_id": CLIENT.client_id,
                "scope": "api",
                "created_at": self.now - 100 * DAY,
                "expires_at": expires_at,
                "revoked_at": revoked_at,
            }
            for i in range(count)
        ]
        async with self.store.engine.begin() as conn:
            await conn.execute(insert(TABLES["api_keys"]), rows)

    async def count(self, kind: str) -> int:
        async with self.store.engine.connect() as conn:
            counted = await conn.scalar(select(func.count()).select_from(TABLES[kind]))
        return int(counted or 0)

    async def ids(self, kind: str) -> set[int]:
        table = TABLES[kind]
        async with self.store.engine.connect() as conn:
            return set((await conn.scalars(select(table.c.id))).all())


@pytest.fixture
def rows(store: SqlStore) -> Rows:
    return Rows(store)
