"""What the storage tests share: stand-in hashes and an emptied PostgreSQL database."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import delete

from devicelink.storage import create_engine_for_url
from devicelink.storage.tables import metadata


def digest(label: str) -> bytes:
    """A stand-in for a keyed hash: 32 bytes, distinct per label."""
    return hashlib.sha256(label.encode()).digest()


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
