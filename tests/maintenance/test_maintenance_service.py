"""Maintenance: the batch loop, retentions, the periodic task and its failures; and what a
purge means for a poll (an expired code still says expired_token until its retention)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from devicelink.core.codes import CodeHasher
from devicelink.core.errors import ExpiredToken, InvalidGrant
from devicelink.core.ports import PurgeKind, StorageUnavailable
from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from devicelink.service import DeviceFlowService, StoredKeyIssuer
from devicelink.service.device_flow import ClientCredentials
from devicelink.service.maintenance import Maintenance, PurgeReport
from devicelink.storage import SqlStore
from devicelink.storage.purge import SqlPurger

from .conftest import CLIENT, DAY, NOW, Rows

pytestmark = [pytest.mark.anyio, pytest.mark.defect(7)]


@dataclass
class FakePurger:
    """Has ``stock`` rows of each kind to delete; records every call."""

    stock: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, datetime, int]] = field(default_factory=list)
    failures: int = 0
    locked_elsewhere: bool = False

    async def purge_batch(self, kind: PurgeKind, *, before: datetime, limit: int) -> int:
        self.calls.append((kind, before, limit))
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("OperationalError: password=hunter2 leaked?")
        deleted = min(limit, self.stock.get(kind, 0))
        self.stock[kind] = self.stock.get(kind, 0) - deleted
        return deleted

    async def count(self, kind: PurgeKind, *, before: datetime) -> int:
        return self.stock.get(kind, 0)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[bool]:
        yield not self.locked_elsewhere


def fixed_clock() -> datetime:
    return NOW


async def test_purge_all_loops_until_a_short_batch_with_each_retention() -> None:
    purger = FakePurger(
        stock={"device_authorizations": 25, "authorization_codes": 3, "audit_events": 10}
    )
    maintenance = Maintenance(
        purger,
        fixed_clock,
        code_retention=timedelta(hours=2),
        key_retention=7 * DAY,
        session_retention=timedelta(0),
        audit_retention=30 * DAY,
        batch_size=10,
        pause=0,
    )

    report = await maintenance.purge_all()

    assert report.deleted == {
        "device_authorizations": 25,
        "authorization_codes": 3,
        "api_keys": 0,
        "browser_sessions": 0,
        "audit_events": 10,
    }
    assert report.total == 38
    assert report.complete
    assert purger.calls == [
        ("device_authorizations", NOW - timedelta(hours=2), 10),
        ("device_authorizations", NOW - timedelta(hours=2), 10),
        ("device_authorizations", NOW - timedelta(hours=2), 10),  # 5: short, done
        ("authorization_codes", NOW - timedelta(hours=2), 10),
        ("api_keys", NOW - 7 * DAY, 10),
        ("browser_sessions", NOW, 10),
        ("audit_events", NOW - 30 * DAY, 10),  # exactly full: one more to be sure
        ("audit_events", NOW - 30 * DAY, 10),
    ]
    assert report.batches == 8


async def test_defaults_keep_codes_a_day_keys_30_days_audit_90_days() -> None:
    purger = FakePurger()
    report = await Maintenance(purger, fixed_clock, pause=0).purge_all()
    assert report.total == 0
    assert [(kind, NOW - before) for kind, before, _ in purger.calls] == [
        ("device_authorizations", DAY),
        ("authorization_codes", DAY),
        ("api_keys", 30 * DAY),
        ("browser_sessions", timedelta(0)),
        ("audit_events", 90 * DAY),
    ]
    assert {limit for *_, limit in purger.calls} == {500}


async def test_max_batches_bounds_a_run_and_says_it_is_incomplete() -> None:
    purger = FakePurger(stock={"device_authorizations": 100})
    maintenance = Maintenance(purger, fixed_clock, batch_size=10, pause=0)

    first = await maintenance.purge_all(max_batches=3)
    assert first.deleted["device_authorizations"] == 30
    assert not first.complete

    rest = await maintenance.purge_all()
    assert rest.deleted["device_authorizations"] == 70
    assert rest.complete
    assert (first + rest).total == 100


async def test_batches_are_separated_by_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr("devicelink.service.maintenance.asyncio.sleep", recording_sleep)
    purger = FakePurger(stock={"device_authorizations": 30})
    await Maintenance(purger, fixed_clock, batch_size=10, pause=0.02).purge_all()
    # Four batches of codes (10, 10, 10, 0): three pauses; one batch of each other kind.
    assert sleeps == [0.02, 0.02, 0.02]


async def test_pending_counts_without_deleting() -> None:
    purger = FakePurger(stock={"api_keys": 4, "browser_sessions": 2})
    report = await Maintenance(purger, fixed_clock).pending()
    assert report.deleted["api_keys"] == 4
    assert report.total == 6
    assert purger.calls == []


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Maintenance(FakePurger(), fixed_clock, batch_size=0)
    with pytest.raises(ValueError, match="audit_retention"):
        Maintenance(FakePurger(), fixed_clock, audit_retention=timedelta(seconds=-1))


async def test_run_once_skips_when_another_process_purges() -> None:
    purger = FakePurger(stock={"device_authorizations": 5}, locked_elsewhere=True)
    assert await Maintenance(purger, fixed_clock).run_once() is None
    assert purger.calls == []
    purger.locked_elsewhere = False
    report = await Maintenance(purger, fixed_clock).run_once()
    assert isinstance(report, PurgeReport)
    assert report.total == 5


async def test_a_failed_run_is_logged_without_details_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    purger = FakePurger(stock={"device_authorizations": 3}, failures=1)
    maintenance = Maintenance(purger, fixed_clock, pause=0)
    caplog.set_level(logging.INFO, logger="devicelink.maintenance")

    task = asyncio.create_task(maintenance.run_periodically(0.01, jitter=0.5))
    for _ in range(500):
        if purger.stock["device_authorizations"] == 0:
            break
        await asyncio.sleep(0.01)
    assert not task.done(), "a failed run must not end the periodic task"
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()

    assert purger.stock["device_authorizations"] == 0  # the next run did the work
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert failures
    assert "StorageUnavailable" in failures[0].getMessage()
    assert all("hunter2" not in r.getMessage() and r.exc_info is None for r in caplog.records)
    assert any("purged 3 rows" in r.getMessage() for r in caplog.records)


async def test_run_periodically_refuses_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        await Maintenance(FakePurger(), fixed_clock).run_periodically(0)


# --- on the real backends -------------------------------------------------------------


async def test_an_expired_code_answers_expired_token_until_its_retention_ends(
    store: SqlStore, rows: Rows
) -> None:
    """The grace period: purging must not turn ``expired_token`` into ``invalid_grant``
    for a device that is still polling a code that has just expired."""
    clock_now = [NOW]
    hasher = CodeHasher(b"s" * 32)
    flows = DeviceFlowService(
        store,
        hasher,
        StoredKeyIssuer(),
        default_client_id=CLIENT.client_id,
        clock=lambda: clock_now[0],
    )
    await rows.user()
    started = await flows.start(
        ClientCredentials(CLIENT.client_id), scope=None, request_ip=None, user_agent=None
    )
    maintenance = Maintenance(SqlPurger(store.engine), lambda: clock_now[0], pause=0)

    clock_now[0] = NOW + timedelta(seconds=700)  # expired 100 s ago
    assert (await maintenance.purge_all()).deleted["device_authorizations"] == 0
    with pytest.raises(ExpiredToken):
        await flows.poll(ClientCredentials(CLIENT.client_id), started.device_code)

    clock_now[0] = NOW + DAY + timedelta(seconds=601)  # expired a day and a second ago
    assert (await maintenance.purge_all()).deleted["device_authorizations"] == 1
    with pytest.raises(InvalidGrant):
        await flows.poll(ClientCredentials(CLIENT.client_id), started.device_code)


async def test_the_server_purges_periodically_and_stops_cleanly(
    settings: Settings, rows: Rows
) -> None:
    await rows.authorization("old", expires_at=NOW - 2 * DAY)
    await rows.authorization("live", expires_at=NOW + DAY)
    app = create_app(settings.model_copy(update={"purge_interval": 1}), clock=lambda: NOW)
    async with app.router.lifespan_context(app):
        for _ in range(300):
            if await rows.count("device_authorizations") == 1:
                break
            await asyncio.sleep(0.01)
        assert await rows.count("device_authorizations") == 1
        tasks = [t for t in asyncio.all_tasks() if t.get_name() == "devicelink-purge"]
        assert len(tasks) == 1
    assert tasks[0].done()
    assert tasks[0].cancelled()


async def test_purge_interval_zero_starts_no_task(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"purge_interval": 0}))
    async with app.router.lifespan_context(app):
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "devicelink-purge"]
