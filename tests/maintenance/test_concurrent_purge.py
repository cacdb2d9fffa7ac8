"""Purges running at once on PostgreSQL, and polls answering while a purge runs.

Two purgers (two engines: two processes, as far as the database can tell) over the same
expired rows: every expired row goes, no live row goes, the reports add up to exactly the
expired rows (nothing deleted twice), and neither waits for the other's row locks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from devicelink.service.maintenance import Maintenance
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.purge import SqlPurger
from tests.support.databases import delete_all_rows

from .conftest import DAY, NOW, TABLES, Rows

pytestmark = [pytest.mark.anyio, pytest.mark.defect(7)]

HOUR = timedelta(hours=1)


@pytest.fixture
async def pg_store(postgres_database: str) -> AsyncIterator[SqlStore]:
    """The session's PostgreSQL database, emptied."""
    store = SqlStore(create_engine_for_url(postgres_database))
    async with store.engine.begin() as conn:
        await delete_all_rows(conn)
    try:
        yield store
    finally:
        await store.dispose()


async def live_code_ids(store: SqlStore) -> set[int]:
    table = TABLES["device_authorizations"]
    async with store.engine.connect() as conn:
        found = await conn.scalars(select(table.c.id).where(table.c.expires_at >= NOW - DAY))
        return set(found.all())


async def two_engines(store: SqlStore) -> list[Any]:
    url = store.engine.url.render_as_string(hide_password=False)
    engines = [create_engine_for_url(url) for _ in range(2)]
    for engine in engines:  # connected before the race starts
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    return engines


@pytest.mark.postgres
@pytest.mark.parametrize("batch_size", [100, 500])
async def test_two_purgers_at_once_delete_every_expired_row_once_and_no_live_row(
    pg_store: SqlStore, batch_size: int
) -> None:
    rows = Rows(pg_store)
    await rows.many_authorizations("old-", 5000, expires_at=NOW - 3 * DAY)
    await rows.many_authorizations("grace-", 250, expires_at=NOW - HOUR)
    await rows.many_authorizations("live-", 250, expires_at=NOW + HOUR)
    live = await live_code_ids(pg_store)
    assert len(live) == 500

    engines = await two_engines(pg_store)
    try:
        purgers = [
            Maintenance(SqlPurger(engine), lambda: NOW, batch_size=batch_size, pause=0)
            for engine in engines
        ]
        started = time.perf_counter()
        first, second = await asyncio.wait_for(
            asyncio.gather(purgers[0].purge_all(), purgers[1].purge_all()), timeout=30
        )
        elapsed = time.perf_counter() - started
    finally:
        for engine in engines:
            await engine.dispose()

    deleted = (first.deleted["device_authorizations"], second.deleted["device_authorizations"])
    assert sum(deleted) == 5000, deleted  # each row counted once: nothing deleted twice
    assert all(n > 0 for n in deleted), f"the purgers did not run side by side: {deleted}"
    assert await rows.ids("device_authorizations") == live  # every live row, nothing else
    assert elapsed < 10, f"the purgers waited on each other: {elapsed:.1f} s"


@pytest.mark.postgres
async def test_two_purgers_at_once_on_keys(pg_store: SqlStore) -> None:
    """Keys have no index to order by; SKIP LOCKED keeps the purgers apart all the same."""
    rows = Rows(pg_store)
    await rows.many_keys("revoked-", 1000, expires_at=None, revoked_at=NOW - 40 * DAY)
    await rows.many_keys("expired-", 1000, expires_at=NOW - 40 * DAY, revoked_at=None)
    await rows.many_keys("active-", 100, expires_at=NOW + DAY, revoked_at=None)
    await rows.many_keys("recent-", 100, expires_at=None, revoked_at=NOW - DAY)
    async with pg_store.engine.connect() as conn:
        table = TABLES["api_keys"]
        keep = set(
            (
                await conn.scalars(
                    select(table.c.id).where(
                        table.c.name.like("key active-%") | table.c.name.like("key recent-%")
                    )
                )
            ).all()
        )

    engines = await two_engines(pg_store)
    try:
        reports = await asyncio.wait_for(
            asyncio.gather(
                *(
                    Maintenance(SqlPurger(engine), lambda: NOW, batch_size=50, pause=0).purge_all()
                    for engine in engines
                )
            ),
            timeout=30,
        )
    finally:
        for engine in engines:
            await engine.dispose()

    assert sum(report.deleted["api_keys"] for report in reports) == 2000
    assert await rows.ids("api_keys") == keep


@pytest.mark.postgres
async def test_a_purge_skips_rows_locked_elsewhere_instead_of_waiting(
    pg_store: SqlStore,
) -> None:
    """A row another transaction holds (another purger's batch, a request) is skipped at
    once, and purged by a later run."""
    rows = Rows(pg_store)
    await rows.many_authorizations("old-", 300, expires_at=NOW - 3 * DAY)
    table = TABLES["device_authorizations"]
    maintenance = Maintenance(SqlPurger(pg_store.engine), lambda: NOW, batch_size=100, pause=0)

    url = pg_store.engine.url.render_as_string(hide_password=False)
    holder_engine = create_engine_for_url(url)
    try:
        async with holder_engine.connect() as holder:
            held = set(
                (
                    await holder.scalars(
                        select(table.c.id).order_by(table.c.expires_at).limit(50).with_for_update()
                    )
                ).all()
            )
            started = time.perf_counter()
            report = await asyncio.wait_for(maintenance.purge_all(), timeout=5)
            assert time.perf_counter() - started < 1.5  # well under the 2 s lock timeout
            assert report.deleted["device_authorizations"] == 250
            assert await rows.ids("device_authorizations") == held
            await holder.rollback()
    finally:
        await holder_engine.dispose()

    assert (await maintenance.purge_all()).deleted["device_authorizations"] == 50
    assert await rows.count("device_authorizations") == 0


async def test_polls_keep_answering_while_a_purge_runs(server: Any, rows: Rows) -> None:
    """A purge of thousands of rows, batch after batch, beside a device polling its
    pending code: every poll is answered, promptly, and the pending code survives."""
    await rows.many_authorizations("old-", 3000, expires_at=NOW - 3 * DAY)
    flow = await server.start_flow()
    maintenance = Maintenance(
        SqlPurger(server.runtime.store.engine), server.clock, batch_size=100, pause=0.002
    )

    purge = asyncio.create_task(maintenance.purge_all())
    latencies: list[float] = []
    answers: set[str] = set()
    while not purge.done() or not latencies:
        started = time.perf_counter()
        response = await server.poll(flow["device_code"])
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 400, response.text
        answers.add(response.json()["error"])
    report = await purge

    assert report.deleted["device_authorizations"] == 3000
    assert answers <= {"authorization_pending", "slow_down"}
    assert len(latencies) >= 3, "the purge finished before the polls had a chance"
    assert max(latencies) < 0.5, f"a poll waited {max(latencies) * 1000:.0f} ms"
    server.clock.advance(60)
    response = await server.poll(flow["device_code"])
    assert response.json()["error"] == "authorization_pending"  # the live code is intact
