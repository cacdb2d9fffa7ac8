"""``ClientRepository.update`` (clients registered from code are brought in line at
start-up): it replaces what the code decides, keeps ``created_at``, and reports a
missing client as False. Runs on SQLite and PostgreSQL through the ``store`` fixture."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from devicelink.core.models import Client
from devicelink.storage import SqlStore

from .conftest import digest

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)
PUBLIC = Client(
    client_id="acme-cli", name="Acme CLI", scopes=("read",), key_lifetime=3600, created_at=T0
)


async def test_update_replaces_what_the_code_decides_and_keeps_created_at(
    store: SqlStore,
) -> None:
    async with store.transaction() as tx:
        await tx.clients.add(PUBLIC)
    confidential = replace(
        PUBLIC,
        name="Acme Terminal",
        scopes=("read", "write"),
        key_lifetime=None,
        confidential=True,
        secret_hash=digest("secret"),
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        resource_server=True,
    )
    async with store.transaction() as tx:
        assert await tx.clients.update(confidential) is True
    async with store.transaction() as tx:
        stored = await tx.clients.get("acme-cli")
    assert stored == replace(confidential, created_at=T0)


async def test_update_of_a_missing_client_is_false_and_creates_nothing(store: SqlStore) -> None:
    async with store.transaction() as tx:
        assert await tx.clients.update(PUBLIC) is False
    async with store.transaction() as tx:
        assert await tx.clients.get("acme-cli") is None
