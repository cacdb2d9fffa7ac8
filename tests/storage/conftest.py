"""What the storage tests share: stand-in hashes, keys to store and an emptied
PostgreSQL database."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest
from sqlalchemy import delete

from devicelink.core import lifecycle
from devicelink.core.models import NewApiKey
from devicelink.storage import create_engine_for_url
from devicelink.storage.tables import metadata


def digest(label: str) -> bytes:
    """A stand-in for a keyed hash: 32 bytes, distinct per label."""
    return hashlib.sha256(label.encode()).digest()


def new_key(
    key_hash: bytes,
    *,
    user_id: int,
    client_id: str,
    created_at: datetime,
    name: str = "key",
    device_authorization_id: int | None = None,
    scope: tuple[str, ...] = ("api",),
    expires_at: datetime | None = None,
) -> NewApiKey:
    """A key to store; by default of scope ``api``, not from a device flow, never expiring."""
    return NewApiKey(
        key_hash, name, user_id, client_id, device_authorization_id, scope, created_at, expires_at
    )


def as_answered(decision: lifecycle.PollDecision | None) -> object:
    """A poll's decision as the device would see it: a refusal as its status and body
    (errors do not compare equal), anything else as itself."""
    if isinstance(decision, lifecycle.Refuse):
        return decision.error.status_code, decision.error.body()
    return decision


@pytest.fixture
async def empty_postgres(postgres_database: str) -> str:
    """The session's PostgreSQL database with every row deleted (children first)."""
    engine = create_engine_for_url(postgres_database)
    try:
        async with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))
    finally:
        await engine.dispose()
    return postgres_database
