"""The PostgreSQL hot path answers exactly as the pure decision does (RFC 8628 §3.5).

``AsyncpgHotPath.record_pending_poll`` folds reading, deciding and recording a poll into
one statement; ``lifecycle.decide_poll`` is the specification. Every state a record can
be in is put through both, and the stored bookkeeping must match too.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from devicelink.core import lifecycle
from devicelink.core.models import Client, NewApiKey, NewDeviceAuthorization, Status
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.hotpath import AsyncpgHotPath

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

T0 = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=UTC)
POLICY = lifecycle.FlowPolicy()
TABLES = (
    "audit_events",
    "browser_sessions",
    "api_keys",
    "device_authorizations",
    "users",
    "clients",
)


def digest(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture
async def pg(postgres_database: str) -> AsyncIterator[tuple[SqlStore, AsyncpgHotPath]]:
    store = SqlStore(create_engine_for_url(postgres_database))
    async with store.engine.begin() as conn:
        for table in TABLES:
            await conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608
    hot = await AsyncpgHotPath.connect(postgres_database)
    async with store.transaction() as tx:
        for client_id, confidential in (("public", False), ("other", False), ("secret", True)):
            await tx.clients.add(
                Client(
                    client_id=client_id,
                    name=client_id,
                    scopes=("api",),
                    key_lifetime=None,
                    confidential=confidential,
                    created_at=T0,
                )
            )
        await tx.users.add("alice", None, T0)
    try:
        yield store, hot
    finally:
        await hot.close()
        await store.dispose()


CASES = {
    "first poll": dict(status=Status.PENDING, last=None, interval=5, now=10),
    "on time": dict(status=Status.PENDING, last=0, interval=5, now=5),
    "a microsecond early": dict(status=Status.PENDING, last=0, interval=5, now=4.999999),
    "early": dict(status=Status.PENDING, last=0, interval=10, now=3),
    "early at the cap": dict(status=Status.PENDING, last=0, interval=60, now=30),
    "early near the cap": dict(status=Status.PENDING, last=0, interval=58, now=30),
    "expired": dict(status=Status.PENDING, last=0, interval=5, now=601),
    "expired exactly": dict(status=Status.PENDING, last=None, interval=5, now=600),
    "approved": dict(status=Status.APPROVED, last=0, interval=5, now=1),
    "denied": dict(status=Status.DENIED, last=0, interval=5, now=1),
    "consumed": dict(status=Status.CONSUMED, last=0, interval=5, now=30),
    "another client's code": dict(
        status=Status.PENDING, last=None, interval=5, now=10, asker="other"
    ),
    "confidential client": dict(
        status=Status.PENDING, last=None, interval=5, now=10, owner="secret", asker="secret"
    ),
    "unknown code": dict(status=None, last=None, interval=5, now=10),
}  # fmt: skip


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_hot_path_agrees_with_the_decision(pg, case: str) -> None:
    store, hot = pg
    spec = CASES[case]
    owner = spec.get("owner", "public")
    asker = spec.get("asker", owner)
    created = T0
    record = None
    if spec["status"] is not None:
        async with store.transaction() as tx:
            record = await tx.device_authorizations.add(
                NewDeviceAuthorization(
                    device_code_hash=digest("d"),
                    user_code_hash=digest("u"),
                    client_id=owner,
                    scope=("api",),
                    created_at=created,
                    expires_at=created + timedelta(seconds=600),
                    interval=spec["interval"],
                    request_ip=None,
                    user_agent=None,
                )
            )
            if spec["last"] is not None:
                await tx.device_authorizations.record_poll(
                    record.id,
                    previous_poll=None,
                    now=created + timedelta(seconds=spec["last"]),
                    interval=spec["interval"],
                )
            user = await tx.users.get_by_username("alice")
            assert user is not None
            if spec["status"] in (Status.APPROVED, Status.DENIED, Status.CONSUMED):
                await tx.device_authorizations.transition(
                    record.id,
                    from_status=Status.PENDING,
                    to_status=Status.APPROVED if spec["status"] != Status.DENIED else Status.DENIED,
                    now=created,
                    user_id=user.id,
                )
            if spec["status"] is Status.CONSUMED:
                await tx.device_authorizations.transition(
                    record.id, from_status=Status.APPROVED, to_status=Status.CONSUMED, now=created
                )
                await tx.api_keys.add(
                    NewApiKey(
                        key_hash=digest("k"),
                        name="k",
                        user_id=user.id,
                        client_id=owner,
                        device_authorization_id=record.id,
                        scope=("api",),
                        created_at=created,
                        expires_at=None,
                    )
                )
            record = await tx.device_authorizations.get_by_device_code(digest("d"))
    now = created + timedelta(seconds=spec["now"])
    expected = lifecycle.decide_poll(record, client_id=asker, now=now, policy=POLICY)
    if owner == "secret":
        expected = lifecycle.Refuse(lifecycle.InvalidGrant())  # never on the hot path

    outcome = await hot.record_pending_poll(
        digest("d"), client_id=asker, now=now, slow_down_step=5, max_interval=60
    )

    match expected:
        case lifecycle.KeepWaiting(interval=interval):
            assert outcome is not None and (outcome.interval, outcome.too_fast) == (interval, False)
        case lifecycle.SlowDownTo(interval=interval):
            assert outcome is not None and (outcome.interval, outcome.too_fast) == (interval, True)
        case _:
            assert outcome is None
    async with store.transaction() as tx:
        after = await tx.device_authorizations.get_by_device_code(digest("d"))
    if outcome is None:
        assert after == record  # nothing changed
    else:
        assert after is not None
        assert after.last_polled_at == now and after.interval == outcome.interval


async def test_concurrent_polls_of_one_code_are_judged_one_after_the_other(pg) -> None:
    """Ten polls at the same instant: the first is on time, the nine others early."""
    store, hot = pg
    async with store.transaction() as tx:
        await tx.device_authorizations.add(
            NewDeviceAuthorization(
                device_code_hash=digest("d"),
                user_code_hash=digest("u"),
                client_id="public",
                scope=(),
                created_at=T0,
                expires_at=T0 + timedelta(seconds=600),
                interval=5,
                request_ip=None,
                user_agent=None,
            )
        )
    now = T0 + timedelta(seconds=1)
    outcomes = await asyncio.gather(
        *(
            hot.record_pending_poll(
                digest("d"), client_id="public", now=now, slow_down_step=5, max_interval=60
            )
            for _ in range(10)
        )
    )
    assert sum(1 for o in outcomes if o is not None and not o.too_fast) == 1
    assert sorted(o.interval for o in outcomes if o is not None) == [
        5,
        10,
        15,
        20,
        25,
        30,
        35,
        40,
        45,
        50,
    ]
