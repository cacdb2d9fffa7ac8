"""SqlPurger on both backends: exactly the rows past their retention go, a batch at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from devicelink.core.models import Status
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.purge import SqlPurger

from .conftest import DAY, NOW, Rows, digest

pytestmark = [pytest.mark.anyio, pytest.mark.defect(7)]

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


async def device_codes_left(store: SqlStore, *labels: str) -> set[str]:
    left = set()
    async with store.transaction() as tx:
        for label in labels:
            if await tx.device_authorizations.get_by_device_code(digest(f"device:{label}")):
                left.add(label)
    return left


async def test_device_authorizations_go_only_when_expired_past_the_retention(
    store: SqlStore, rows: Rows
) -> None:
    await rows.authorization("pending-live", expires_at=NOW + 300 * timedelta(seconds=1))
    await rows.authorization("approved-live", expires_at=NOW + HOUR, status=Status.APPROVED)
    await rows.authorization("expired-in-grace", expires_at=NOW - HOUR)
    await rows.authorization("denied-in-grace", expires_at=NOW - 20 * HOUR, status=Status.DENIED)
    await rows.authorization("expired-old", expires_at=NOW - 2 * DAY)
    await rows.authorization("denied-old", expires_at=NOW - 3 * DAY, status=Status.DENIED)
    consumed = await rows.authorization(
        "consumed-old", expires_at=NOW - 40 * DAY, status=Status.CONSUMED
    )
    key = await rows.key("of-consumed", expires_at=NOW + DAY, device_authorization_id=consumed.id)

    purger = SqlPurger(store.engine)
    deleted = await purger.purge_batch("device_authorizations", before=NOW - DAY, limit=100)

    assert deleted == 3
    labels = (
        "pending-live",
        "approved-live",
        "expired-in-grace",
        "denied-in-grace",
        "expired-old",
        "denied-old",
        "consumed-old",
    )
    assert await device_codes_left(store, *labels) == {
        "pending-live",
        "approved-live",
        "expired-in-grace",
        "denied-in-grace",
    }
    # The key born of a purged flow lives on; it just no longer points at the flow.
    async with store.transaction() as tx:
        kept = await tx.api_keys.get(key.id)
    assert kept is not None
    assert kept.device_authorization_id is None
    assert kept.is_active(NOW)
    assert await purger.purge_batch("device_authorizations", before=NOW - DAY, limit=100) == 0


async def test_authorization_codes_go_when_expired_past_the_retention_redeemed_or_not(
    store: SqlStore, rows: Rows
) -> None:
    codes = {
        "live": await rows.authorization_code("live", expires_at=NOW + 30 * SECOND),
        "redeemed-live": await rows.authorization_code(
            "redeemed-live", expires_at=NOW + 30 * SECOND, redeemed=True
        ),
        "redeemed-in-grace": await rows.authorization_code(
            "redeemed-in-grace", expires_at=NOW - 20 * HOUR, redeemed=True
        ),
        "expired-old": await rows.authorization_code("expired-old", expires_at=NOW - 2 * DAY),
        "redeemed-old": await rows.authorization_code(
            "redeemed-old", expires_at=NOW - 2 * DAY, redeemed=True
        ),
    }
    purger = SqlPurger(store.engine)

    assert await purger.count("authorization_codes", before=NOW - DAY) == 2
    assert await purger.purge_batch("authorization_codes", before=NOW - DAY, limit=100) == 2

    left = await rows.ids("authorization_codes")
    assert {name for name, code in codes.items() if code.id in left} == {
        "live",
        "redeemed-live",
        "redeemed-in-grace",
    }
    # A redeemed code kept through the retention still reads as redeemed: its replay is
    # still recognised (and revokes the key it issued).
    async with store.transaction() as tx:
        kept = await tx.authorization_codes.get(digest("code:redeemed-in-grace"))
    assert kept is not None
    assert kept.redeemed_at is not None
    assert await purger.purge_batch("authorization_codes", before=NOW - DAY, limit=100) == 0


async def test_a_purge_keeps_a_redeemed_code_through_its_lifetime_even_with_no_retention(
    store: SqlStore, rows: Rows
) -> None:
    await rows.authorization_code("redeemed-live", expires_at=NOW + SECOND, redeemed=True)
    gone = await rows.authorization_code("redeemed-expired", expires_at=NOW - SECOND, redeemed=True)

    assert (
        await SqlPurger(store.engine).purge_batch("authorization_codes", before=NOW, limit=10) == 1
    )
    assert gone.id not in await rows.ids("authorization_codes")
    assert await rows.count("authorization_codes") == 1


async def test_keys_go_only_when_revoked_or_expired_past_the_retention(
    store: SqlStore, rows: Rows
) -> None:
    keys = {
        "active": await rows.key("active", expires_at=NOW + DAY),
        "never-expires": await rows.key("never-expires", expires_at=None),
        "revoked-recently": await rows.key(
            "revoked-recently", expires_at=None, revoked_at=NOW - DAY
        ),
        "expired-recently": await rows.key("expired-recently", expires_at=NOW - DAY),
        "revoked-long-ago": await rows.key(
            "revoked-long-ago", expires_at=NOW + DAY, revoked_at=NOW - 31 * DAY
        ),
        "revoked-unexpiring": await rows.key(
            "revoked-unexpiring", expires_at=None, revoked_at=NOW - 60 * DAY
        ),
        "expired-long-ago": await rows.key("expired-long-ago", expires_at=NOW - 31 * DAY),
        "expired-then-revoked": await rows.key(
            "expired-then-revoked", expires_at=NOW - 45 * DAY, revoked_at=NOW - 2 * DAY
        ),
    }
    purger = SqlPurger(store.engine)

    assert await purger.count("api_keys", before=NOW - 30 * DAY) == 4
    assert await purger.purge_batch("api_keys", before=NOW - 30 * DAY, limit=100) == 4

    left = await rows.ids("api_keys")
    assert {name for name, key in keys.items() if key.id in left} == {
        "active",
        "never-expires",
        "revoked-recently",
        "expired-recently",
    }


async def test_expired_browser_sessions_go(store: SqlStore, rows: Rows) -> None:
    live = await rows.session("live", expires_at=NOW + HOUR)
    await rows.session("expired", expires_at=NOW - timedelta(seconds=1))
    await rows.session("long-expired", expires_at=NOW - 10 * DAY)

    assert await SqlPurger(store.engine).purge_batch("browser_sessions", before=NOW, limit=10) == 2
    assert await rows.ids("browser_sessions") == {live.id}


async def test_audit_events_go_when_older_than_the_retention(store: SqlStore, rows: Rows) -> None:
    await rows.audit("recent", occurred_at=NOW - HOUR)
    await rows.audit("89 days", occurred_at=NOW - 89 * DAY)
    await rows.audit("91 days", occurred_at=NOW - 91 * DAY)
    await rows.audit("a year", occurred_at=NOW - 365 * DAY)

    assert (
        await SqlPurger(store.engine).purge_batch("audit_events", before=NOW - 90 * DAY, limit=10)
        == 2
    )
    async with store.transaction() as tx:
        assert [event.detail for event in await tx.audit.recent()] == ["recent", "89 days"]


async def test_a_batch_deletes_at_most_limit_rows_oldest_first(store: SqlStore, rows: Rows) -> None:
    # 25 expired codes, a millisecond apart; the oldest have the lowest suffix.
    await rows.many_authorizations("old-", 25, expires_at=NOW - 5 * DAY)
    await rows.authorization("live", expires_at=NOW + HOUR)
    purger = SqlPurger(store.engine)

    assert await purger.purge_batch("device_authorizations", before=NOW - DAY, limit=10) == 10
    oldest = {f"old-{i}" for i in range(10)}
    assert await device_codes_left(store, *oldest) == set()
    assert await device_codes_left(store, "old-10", "old-24") == {"old-10", "old-24"}

    assert await purger.purge_batch("device_authorizations", before=NOW - DAY, limit=10) == 10
    assert await purger.purge_batch("device_authorizations", before=NOW - DAY, limit=10) == 5
    assert await purger.purge_batch("device_authorizations", before=NOW - DAY, limit=10) == 0
    assert await rows.count("device_authorizations") == 1


async def test_count_deletes_nothing(store: SqlStore, rows: Rows) -> None:
    await rows.many_authorizations("old-", 7, expires_at=NOW - 5 * DAY)
    await rows.authorization("live", expires_at=NOW + HOUR)
    purger = SqlPurger(store.engine)

    assert await purger.count("device_authorizations", before=NOW - DAY) == 7
    assert await purger.count("audit_events", before=NOW) == 0
    assert await rows.count("device_authorizations") == 8


async def test_bad_arguments_are_refused(store: SqlStore) -> None:
    purger = SqlPurger(store.engine)
    with pytest.raises(ValueError, match="limit"):
        await purger.purge_batch("device_authorizations", before=NOW, limit=0)
    with pytest.raises(ValueError, match="unknown purge kind"):
        await purger.purge_batch("users", before=NOW, limit=10)  # type: ignore[arg-type]


async def test_exclusive_admits_one_process_at_a_time_on_postgres(
    store: SqlStore, backend: str
) -> None:
    other_engine = create_engine_for_url(store.engine.url.render_as_string(hide_password=False))
    first, second = SqlPurger(store.engine), SqlPurger(other_engine)
    try:
        async with first.exclusive() as got_first:
            assert got_first
            async with second.exclusive() as got_second:
                # SQLite has one writer anyway: everyone may purge.
                assert got_second is (backend == "sqlite")
        # Released: the other process may purge now.
        async with second.exclusive() as got_second:
            assert got_second
        # A cancelled run does not leave the lock behind.
        started = asyncio.Event()

        async def hold() -> None:
            async with first.exclusive() as got:
                assert got
                started.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(hold())
        await started.wait()
        task.cancel()
        await asyncio.wait([task])
        async with second.exclusive() as got_second:
            assert got_second
    finally:
        await other_engine.dispose()
