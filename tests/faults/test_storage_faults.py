"""The storage layer's answer to a PostgreSQL that is down or going down, one failure at
a time and deterministically: every such failure must reach the web layer as
:class:`StorageUnavailable` (503 ``temporarily_unavailable``), never as the driver's own
exception (500). The whole-server scenario is test_database_outage.py; these pin each
cause it found to one function.

Each test stops the private PostgreSQL of the session; the next test's database
(``cluster.new_database()``) starts it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from devicelink.core.lifecycle import FlowPolicy
from devicelink.core.ports import StorageUnavailable
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath, asyncpg_dsn
from tests.faults.cluster import Cluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def database_url(cluster: Cluster) -> str:
    """A migrated database of its own on the private PostgreSQL (running)."""
    return cluster.new_database()


@pytest.fixture
async def fresh_store(database_url: str) -> AsyncIterator[SqlStore]:
    """A store that has not connected yet: its first transaction opens a connection."""
    store = SqlStore(create_engine_for_url(database_url))
    try:
        yield store
    finally:
        await store.dispose()


async def stop_postgres(cluster: Cluster, mode: str = "fast") -> None:
    await asyncio.to_thread(cluster.postgres.stop, mode)


async def _empty_transaction(store: SqlStore) -> None:
    async with store.transaction() as tx:
        await tx.clients.get("devicelink-cli")


async def test_a_transaction_when_postgresql_is_stopped_is_storage_unavailable(
    cluster: Cluster, fresh_store: SqlStore
) -> None:
    await stop_postgres(cluster)
    with pytest.raises(StorageUnavailable):
        await _empty_transaction(fresh_store)


async def test_a_pooled_connection_cut_by_a_stop_is_storage_unavailable(
    cluster: Cluster, fresh_store: SqlStore
) -> None:
    """The pool holds a connection that PostgreSQL closed while it sat idle; then
    PostgreSQL comes back: the first transaction may fail (503), the next one works."""
    await _empty_transaction(fresh_store)
    await stop_postgres(cluster)
    with pytest.raises(StorageUnavailable):
        await _empty_transaction(fresh_store)
    await asyncio.to_thread(cluster.postgres.start)
    outcomes = []
    for _ in range(3):
        try:
            await _empty_transaction(fresh_store)
        except StorageUnavailable:
            outcomes.append("unavailable")
        else:
            outcomes.append("ok")
            break
    assert outcomes[-1] == "ok", outcomes


async def test_a_transaction_while_postgresql_shuts_down_is_storage_unavailable(
    cluster: Cluster, fresh_store: SqlStore, database_url: str
) -> None:
    """A smart shutdown waits for the sessions open (here: one held by the test, at
    least) and refuses every new connection meanwhile, as PostgreSQL does during any stop
    or start."""
    held = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        await asyncio.to_thread(cluster.postgres.stop, "smart", wait=False)
        with pytest.raises(StorageUnavailable):
            await _empty_transaction(fresh_store)
    finally:
        await held.close()
        # Other sessions (the servers' pools) may still be open: finish it fast.
        await stop_postgres(cluster, "fast")


async def test_ping_when_postgresql_is_stopped_is_storage_unavailable(
    cluster: Cluster, fresh_store: SqlStore
) -> None:
    await stop_postgres(cluster)
    with pytest.raises(StorageUnavailable):
        await fresh_store.ping()


def _pending_poll(fast_path: AsyncpgFastPath) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return await fast_path.poll(
            b"\x00" * 32, client_id="devicelink-cli", now=datetime.now(UTC), policy=FlowPolicy()
        )

    return call


def _key_check(fast_path: AsyncpgFastPath) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return await fast_path.key_with_owner(b"\x00" * 32)

    return call


@pytest.mark.parametrize("call", [_pending_poll, _key_check], ids=["poll", "key_check"])
async def test_the_fast_path_when_postgresql_is_stopped_is_storage_unavailable(
    cluster: Cluster,
    database_url: str,
    call: Callable[[AsyncpgFastPath], Callable[[], Awaitable[object]]],
) -> None:
    fast_path = await AsyncpgFastPath.connect(database_url, max_size=2)
    try:
        assert await call(fast_path)() is None  # works while PostgreSQL runs
        await stop_postgres(cluster)
        with pytest.raises(StorageUnavailable):
            await call(fast_path)()
    finally:
        await fast_path.close()
