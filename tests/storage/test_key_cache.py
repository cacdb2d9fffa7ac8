"""Key checks answered from memory on PostgreSQL, and revocation still at once.

One process (a store, its fast path with a key cache, the key service) checks keys;
"another process" (a second engine on the same database, as the admin command or a
second server would have) revokes keys and disables accounts. A revoked key or a
disabled account must be refused by the first process as soon as the change commits:
through PostgreSQL NOTIFY for changes made elsewhere, directly for its own.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import text

from devicelink.core.apikeys import new_api_key
from devicelink.core.codes import CodeHasher
from devicelink.core.errors import InvalidToken
from devicelink.core.models import ApiKey, Client, User
from devicelink.service import KeyService
from devicelink.service.admin import AdminService
from devicelink.service.clients import ClientCredentials
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath
from devicelink.storage.keycache import KeyCache, key_changed
from tests.support.databases import pg_fetch

from .conftest import new_key

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

T = TypeVar("T")
NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
CLI = ClientCredentials("devicelink-cli")
HASHER = CodeHasher(b"key-cache-test-secret-".ljust(40, b"x"))


@dataclass
class Processes:
    here: KeyService
    hot: AsyncpgFastPath
    store: SqlStore
    elsewhere: KeyService
    elsewhere_admin: AdminService
    elsewhere_store: SqlStore
    keys: dict[str, list[str]]


def clock() -> datetime:
    return NOW


async def until(condition: Callable[[], bool], limit: float = 10.0) -> float:
    """Seconds until ``condition()`` held (fails after ``limit`` seconds)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def until_async(
    read: Callable[[], Awaitable[T]], holds: Callable[[T], bool], limit: float = 10.0
) -> None:
    """Read until what is read ``holds`` (fails after ``limit`` seconds)."""
    started = time.monotonic()
    while not holds(await read()):
        assert time.monotonic() - started < limit, "timed out"
        await asyncio.sleep(0.05)


async def refused_within(service: KeyService, token: str, limit: float = 5.0) -> float:
    started = time.monotonic()
    while True:
        try:
            await service.authenticate(token)
        except InvalidToken:
            return time.monotonic() - started
        assert time.monotonic() - started < limit, "the key is still accepted"
        await asyncio.sleep(0.005)


@pytest.fixture
async def processes(empty_postgres: str) -> AsyncIterator[Processes]:
    store = SqlStore(create_engine_for_url(empty_postgres, pool_size=2, max_overflow=0))
    other = SqlStore(create_engine_for_url(empty_postgres, pool_size=2, max_overflow=0))
    keys: dict[str, list[str]] = {"alice": [], "bob": []}
    async with store.transaction() as tx:
        await tx.clients.add(
            Client("devicelink-cli", "CLI", scopes=("api",), key_lifetime=None, created_at=NOW)
        )
        for name in keys:
            user = await tx.users.add(name, None, NOW)
            for n in range(2):
                token = new_api_key()
                key = new_key(
                    HASHER.api_key(token),
                    user_id=user.id,
                    client_id="devicelink-cli",
                    created_at=NOW,
                    name=f"{name} {n}",
                    expires_at=NOW + timedelta(days=1),
                )
                await tx.api_keys.add(key)
                keys[name].append(token)
    hot = await AsyncpgFastPath.connect(empty_postgres, max_size=2, key_cache_size=100)
    hot.listener.RECONNECT_SECONDS = 0.05
    hot.listener.HEARTBEAT_SECONDS = 0.1
    hot.listener.HEARTBEAT_TIMEOUT = 0.5
    store.on_commit_announce(hot.changed)
    try:
        await until(lambda: hot.cache.live)
        yield Processes(
            here=KeyService(store, HASHER, clock, fast_path=hot),
            hot=hot,
            store=store,
            elsewhere=KeyService(other, HASHER, clock),
            elsewhere_admin=AdminService(other, clock),
            elsewhere_store=other,
            keys=keys,
        )
    finally:
        await hot.close()
        await store.dispose()
        await other.dispose()


async def warm(p: Processes, token: str) -> None:
    """Check a key until it is answered from memory (the first check records its use,
    the second reads it again, the third is remembered)."""
    for _ in range(3):
        owner = await p.here.authenticate(token)
    hits = p.hot.cache.hits
    again = await p.here.authenticate(token)
    assert p.hot.cache.hits == hits + 1, "not answered from memory"
    assert again == owner


async def test_a_key_checked_again_is_answered_from_memory_as_from_the_database(
    processes: Processes,
) -> None:
    token = processes.keys["alice"][0]
    await warm(processes, token)
    remembered = await processes.here.authenticate(token)
    read = await KeyService(processes.store, HASHER, clock).authenticate(token)
    assert remembered == read
    assert remembered.user.username == "alice"


@pytest.mark.rfc("7009", "2.1")
async def test_a_revocation_by_another_process_is_refused_at_once(processes: Processes) -> None:
    token, other_token = processes.keys["alice"]
    await warm(processes, token)
    await warm(processes, other_token)
    assert await processes.elsewhere.revoke(CLI, token) is True
    # NOTIFY is delivered when the revoking transaction commits.
    assert await refused_within(processes.here, token) < 2.0
    # The other key of the same account is still answered, from memory.
    hits = processes.hot.cache.hits
    assert (await processes.here.authenticate(other_token)).user.username == "alice"
    assert processes.hot.cache.hits == hits + 1


async def test_a_revocation_in_this_process_is_refused_by_the_very_next_check(
    processes: Processes,
) -> None:
    token = processes.keys["bob"][0]
    await warm(processes, token)
    assert await processes.here.revoke(CLI, token) is True
    with pytest.raises(InvalidToken):
        await processes.here.authenticate(token)


async def test_disabling_an_account_elsewhere_refuses_all_its_keys_and_only_them(
    processes: Processes,
) -> None:
    for token in processes.keys["alice"] + processes.keys["bob"]:
        await warm(processes, token)
    assert await processes.elsewhere_admin.disable_user("alice") is True
    for token in processes.keys["alice"]:
        assert await refused_within(processes.here, token) < 2.0
    hits = processes.hot.cache.hits
    for token in processes.keys["bob"]:
        assert (await processes.here.authenticate(token)).user.username == "bob"
    assert processes.hot.cache.hits == hits + 2


async def test_a_revocation_while_the_listening_connection_is_down_is_not_missed(
    processes: Processes,
) -> None:
    """The connection that hears of changes is cut (an administrator's
    pg_terminate_backend, a failover): the cache empties and stays unused until it
    listens again, so a revocation made in between is refused all the same."""
    token, other_token = processes.keys["alice"]
    await warm(processes, token)
    async with processes.elsewhere_store.engine.begin() as conn:
        terminated = await conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
            )
        )
        assert terminated == 1
        # Revoked in the same transaction as the cut: no notification can reach us.
        await conn.execute(
            text("UPDATE api_keys SET revoked_at = :now WHERE key_hash = :h"),
            {"now": NOW, "h": HASHER.api_key(token)},
        )
    await until(lambda: not processes.hot.cache.live or len(processes.hot.cache) == 0)
    with pytest.raises(InvalidToken):
        await processes.here.authenticate(token)
    # It listens again, and remembers again.
    await until(lambda: processes.hot.cache.live)
    await warm(processes, other_token)


async def test_when_notifications_silently_stop_arriving_the_cache_stops_answering(
    processes: Processes,
) -> None:
    """The listening connection stays up but hears nothing any more (here: UNLISTEN;
    in production, a transaction-pooling proxy or a half-dead link): the heartbeat
    that does not come back empties the cache, so a revocation it did not hear of is
    refused all the same; once it hears again, it remembers again."""
    token, other_token = processes.keys["bob"]
    await warm(processes, token)
    listener = processes.hot.listener.connection
    assert listener is not None
    await listener.execute("UNLISTEN *")
    assert await processes.elsewhere.revoke(CLI, token) is True  # announced, but unheard
    assert await refused_within(processes.here, token, limit=3.0) < 3.0
    await until(lambda: processes.hot.cache.live)  # a new listening connection
    await warm(processes, other_token)


async def test_stopping_while_the_listener_is_being_set_up_leaves_no_connection_open(
    empty_postgres: str,
) -> None:
    """An application stopped right after it started (as tests and rolling restarts do)
    closes the listener while it may still be connecting: the connection it was setting
    up must be closed, not left for garbage collection to find open."""
    others = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
    )
    before = (await pg_fetch(empty_postgres, others))[0][0]
    for steps in range(0, 60, 2):
        hot = await AsyncpgFastPath.connect(empty_postgres, max_size=1, key_cache_size=10)
        for _ in range(steps):  # let the set-up reach a different step each time
            await asyncio.sleep(0)
        await hot.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    # The server sees every connection gone (a backend takes a moment to exit).
    await until_async(lambda: pg_fetch(empty_postgres, others), lambda rows: rows[0][0] <= before)


async def test_a_key_cached_under_both_secrets_hashes_is_forgotten_whole_when_revoked(
    processes: Processes,
) -> None:
    """A rotation of the server secret: this process has the key cached under the
    previous secret's hash, the key is rewritten under the current one elsewhere, and
    before this process hears of the rewrite it caches the key under the new hash too.
    A revocation then must drop both entries, not only the last one cached."""
    hot = processes.hot
    token = processes.keys["alice"][0]
    old_hash = HASHER.api_key(token)
    new_hash = CodeHasher(b"key-cache-next-secret-".ljust(40, b"y"), (HASHER,)).api_key(token)
    cached = await hot.key_with_owner(old_hash)
    assert cached is not None
    key_id = cached[0].id
    # The rewrite, its announcement not heard yet (a statement without one).
    async with processes.elsewhere_store.engine.begin() as conn:
        await conn.execute(
            text("UPDATE api_keys SET key_hash = :new WHERE id = :id"),
            {"new": new_hash, "id": key_id},
        )
    assert await hot.key_with_owner(new_hash) is not None
    assert hot.cache.get(old_hash) is not None
    assert hot.cache.get(new_hash) is not None  # the same key, under both hashes

    async with processes.elsewhere_store.transaction() as tx:
        assert await tx.api_keys.revoke(key_id, now=NOW)
    await until(lambda: hot.cache.get(new_hash) is None, limit=5.0)  # heard of it
    assert hot.cache.get(old_hash) is None  # not answered from memory until its TTL
    assert await hot.key_with_owner(old_hash) is None
    revoked = await hot.key_with_owner(new_hash)
    assert revoked is not None
    assert revoked[0].revoked_at is not None


def test_the_cache_forgets_every_hash_of_a_changed_key() -> None:
    """The cache alone: a key under two hashes, an unrelated key; evicting one of the
    two leaves the other still found by the key's announcement."""
    cache = KeyCache(3, monotonic=lambda: 0.0)  # nothing ages out
    cache.live = True
    owner = User(id=1, username="alice")
    key = ApiKey(7, "alice's laptop", 1, "devicelink-cli", None, ("api",), NOW, None)
    other = ApiKey(8, "alice's phone", 1, "devicelink-cli", None, ("api",), NOW, None)
    for key_hash in (b"old", b"new"):
        cache.put(key_hash, key, owner, generation=cache.generation)
    cache.put(b"other", other, owner, generation=cache.generation)
    assert len(cache) == 3

    cache.changed([key_changed(7)])
    assert cache.get(b"old") is None
    assert cache.get(b"new") is None
    assert cache.get(b"other") is not None

    cache.changed([key_changed(8)])
    assert len(cache) == 0
    for key_hash in (b"old", b"new"):
        cache.put(key_hash, key, owner, generation=cache.generation)
    cache.put(b"other", other, owner, generation=cache.generation)
    cache.put(b"fourth", replace(other, id=9), owner, generation=cache.generation)
    assert cache.get(b"old") is None  # the oldest entry made room
    assert cache.get(b"new") is not None
    cache.changed([key_changed(7)])
    assert cache.get(b"new") is None
    assert cache.get(b"other") is not None
    assert cache.get(b"fourth") is not None
    assert len(cache) == 2
