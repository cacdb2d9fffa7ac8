"""A key found under a previous secret's hash takes the current one's (issue 18, item 2):
a compare-and-set, so two requests racing with the same key move it once, and only
while the database's secret is the rewriting process's, so processes of two steps of a
rolling rotation never move it back and forth. The repositories on both databases, the
PostgreSQL fast path and its key cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from devicelink.core.codes import SECRET_FINGERPRINT
from devicelink.core.models import Client
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath
from tests.support.databases import Database

from .conftest import digest, new_key

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
OLD, NEW = digest("under the previous secret"), digest("under the current secret")
OURS, OTHERS = "fingerprint-of-this-process", "fingerprint-of-another-secret"


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlStore]:
    """A key of alice's stored under :data:`OLD`, last used at T0 (the database's only
    key); the database's secret is :data:`OURS`."""
    sql = SqlStore(create_engine_for_url(database.url))
    async with sql.transaction() as tx:
        await tx.instance.replace(SECRET_FINGERPRINT, OURS)
        await tx.clients.add(
            Client(
                client_id="c",
                name="c",
                scopes=("api",),
                key_lifetime=None,
                confidential=False,
                created_at=T0,
            )
        )
        alice = await tx.users.add("alice", None, T0)
        key = await tx.api_keys.add(new_key(OLD, user_id=alice.id, client_id="c", created_at=T0))
        await tx.api_keys.record_use(key.id, now=T0, ip="203.0.113.1", not_since=T0)
    try:
        yield sql
    finally:
        await sql.dispose()


async def the_key_id(store: SqlStore) -> int:
    async with store.transaction() as tx:
        found = await tx.api_keys.get_with_owner(OLD) or await tx.api_keys.get_with_owner(NEW)
    assert found is not None
    return found[0].id


async def rehash(store: SqlStore, fingerprint: str, used_at: datetime | None) -> bool:
    key_id = await the_key_id(store)
    async with store.transaction() as tx:
        return await tx.api_keys.rehash(
            key_id,
            old_hash=OLD,
            new_hash=NEW,
            fingerprint=fingerprint,
            used_at=used_at,
            ip="198.51.100.2",
        )


async def test_racing_requests_move_a_key_once_and_record_its_use(store: SqlStore) -> None:
    later = T0 + timedelta(minutes=5)
    moved = await asyncio.gather(*(rehash(store, OURS, later) for _ in range(4)))
    assert sorted(moved) == [False, False, False, True]
    async with store.transaction() as tx:
        assert await tx.api_keys.get_with_owner(OLD) is None
        found = await tx.api_keys.get_with_owner(NEW)
    assert found is not None
    assert found[0].last_used_at == later
    assert found[0].last_used_ip == "198.51.100.2"


async def test_only_the_database_secret_rewrites(store: SqlStore) -> None:
    assert await rehash(store, OTHERS, None) is False
    async with store.transaction() as tx:
        found = await tx.api_keys.get_with_owner(OLD)
    assert found is not None
    assert found[0].last_used_at == T0


async def test_the_keys_that_still_need_a_previous_secret(store: SqlStore) -> None:
    since = T0 + timedelta(minutes=1)
    async with store.transaction() as tx:
        alice = await tx.users.get_by_username("alice")
        assert alice is not None
        fresh = new_key(digest("new"), user_id=alice.id, client_id="c", created_at=since)
        await tx.api_keys.add(fresh)
        waiting = await tx.api_keys.live_unused_since(since, now=since)
    assert [key.id for key, _ in waiting] == [await the_key_id(store)]
    await rehash(store, OURS, since)
    async with store.transaction() as tx:
        assert await tx.api_keys.live_unused_since(since, now=since) == []


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
async def test_the_fast_path_moves_a_key_once_and_no_cache_keeps_the_old_hash(
    store: SqlStore, database: Database
) -> None:
    key_id = await the_key_id(store)
    hot = await AsyncpgFastPath.connect(database.url, key_cache_size=100)
    try:
        for _ in range(50):  # the listener is up: the cache is trusted
            if hot.cache.live:
                break
            await asyncio.sleep(0.05)
        assert hot.cache.live
        assert await hot.key_with_owner(OLD) is not None
        assert len(hot.cache) == 1  # remembered under the old hash
        later = T0 + timedelta(minutes=5)
        moved = await asyncio.gather(
            *(
                hot.rehash_key(
                    key_id,
                    old_hash=OLD,
                    new_hash=NEW,
                    fingerprint=OURS,
                    now=later,
                    ip="198.51.100.2",
                )
                for _ in range(4)
            )
        )
        assert sorted(moved) == [False, False, False, True]
        assert len(hot.cache) == 0
        assert await hot.key_with_owner(OLD) is None
        found = await hot.key_with_owner(NEW)
        assert found is not None
        assert found[0].last_used_at == later
        assert not await hot.rehash_key(
            key_id, old_hash=NEW, new_hash=OLD, fingerprint=OTHERS, now=later, ip=None
        )
    finally:
        await hot.close()
