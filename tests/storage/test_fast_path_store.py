"""The PostgreSQL fast path answers exactly as the pure decision does (RFC 8628 §3.5).

``AsyncpgFastPath.record_pending_poll`` folds reading, deciding and recording a poll into
one statement; ``lifecycle.decide_poll`` is the specification. Every state a record can
be in is put through both, and the stored bookkeeping must match too.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from devicelink.core import lifecycle
from devicelink.core.models import Client, NewApiKey, NewDeviceAuthorization, Status
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath

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
async def pg(postgres_database: str) -> AsyncIterator[tuple[SqlStore, AsyncpgFastPath]]:
    store = SqlStore(create_engine_for_url(postgres_database))
    async with store.engine.begin() as conn:
        for table in TABLES:
            await conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608
    hot = await AsyncpgFastPath.connect(postgres_database)
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
async def test_fast_path_agrees_with_the_decision(pg, case: str) -> None:
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
        expected = lifecycle.Refuse(lifecycle.InvalidGrant())  # never on the fast path

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


# --- device authorization in one statement -------------------------------------------

START_CASES = {
    "the client's scopes": dict(client="public", requested=None, granted=("api",)),
    "a scope it may have": dict(client="public", requested=("api",), granted=("api",)),
    "no scope at all": dict(client="public", requested=(), granted=()),
    "a scope it may not have": dict(client="public", requested=("admin",), granted=None),
    "one scope too many": dict(client="public", requested=("api", "admin"), granted=None),
    "a confidential client": dict(client="secret", requested=None, granted=None),
    "an unknown client": dict(client="nobody", requested=None, granted=None),
}  # fmt: skip


def new_flow(client_id: str, device: str = "d", user: str = "u") -> NewDeviceAuthorization:
    return NewDeviceAuthorization(
        device_code_hash=digest(device),
        user_code_hash=digest(user),
        client_id=client_id,
        scope=(),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=600),
        interval=5,
        request_ip="203.0.113.9",
        user_agent="cli/1.0",
    )


async def _stored(store: SqlStore) -> tuple[list[object], list[object]]:
    async with store.engine.connect() as conn:
        flows = list(
            await conn.exec_driver_sql(
                "SELECT device_code_hash, user_code_hash, client_id, scope, status, created_at,"
                " expires_at, interval, request_ip, user_agent, last_polled_at, user_id"
                " FROM device_authorizations ORDER BY id"
            )
        )
        events = list(
            await conn.exec_driver_sql(
                "SELECT event, occurred_at, client_id, device_authorization_id, ip, user_agent,"
                " user_id FROM audit_events ORDER BY id"
            )
        )
    return flows, events


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("case", list(START_CASES), ids=list(START_CASES))
async def test_start_in_one_statement_agrees_with_the_full_path(pg, case: str) -> None:
    """The same clients and scopes the full path accepts, the same rows it writes (the
    flow and its flow_started event); anything else stores nothing."""
    store, hot = pg
    spec = START_CASES[case]
    granted = await hot.start_flow(new_flow(spec["client"]), requested_scope=spec["requested"])
    assert granted == spec["granted"]
    flows, events = await _stored(store)
    if granted is None:
        assert (flows, events) == ([], [])
        return
    # The full path (the repositories) writing the same flow, for comparison.
    async with store.transaction() as tx:
        client = await tx.clients.get(spec["client"])
        assert client is not None
        assert lifecycle.granted_scope(spec["requested"], client.scopes) == granted
        full = await tx.device_authorizations.add(
            NewDeviceAuthorization(
                **{**vars_of(new_flow(spec["client"], "d2", "u2")), "scope": granted}
            )
        )
    flows, events = await _stored(store)
    assert len(flows) == 2
    assert flows[0][2:] == flows[1][2:]  # all but the code hashes
    assert (flows[0][0], flows[0][1]) == (digest("d"), digest("u"))
    assert flows[0][4] == "pending"
    assert len(events) == 1
    async with store.engine.connect() as conn:
        first_id = await conn.scalar(
            text("SELECT id FROM device_authorizations WHERE device_code_hash = :h"),
            {"h": digest("d")},
        )
    assert events[0] == (
        "flow_started",
        T0,
        spec["client"],
        first_id,
        "203.0.113.9",
        "cli/1.0",
        None,
    )
    assert full.scope == granted


@pytest.mark.parametrize("colliding", ["device code", "user code"])
async def test_start_with_a_colliding_code_stores_nothing(pg, colliding: str) -> None:
    store, hot = pg
    assert await hot.start_flow(new_flow("public"), requested_scope=None) == ("api",)
    before = await _stored(store)
    again = (
        new_flow("public", "d", "u2")
        if colliding == "device code"
        else new_flow("public", "d2", "u")
    )
    assert await hot.start_flow(again, requested_scope=None) is None
    assert await _stored(store) == before


def vars_of(new: NewDeviceAuthorization) -> dict[str, object]:
    return {name: getattr(new, name) for name in new.__dataclass_fields__}


async def test_polls_that_arrive_together_share_statements_and_are_judged_alone(pg) -> None:
    """Sixty polls at once, two of each of thirty codes: they leave in a few batches
    (one statement each), and every code is judged as if polled twice in a row."""
    store, hot = pg
    async with store.transaction() as tx:
        for n in range(30):
            await tx.device_authorizations.add(new_flow("public", f"d{n}", f"u{n}"))
    now = T0 + timedelta(seconds=1)
    outcomes = await asyncio.gather(
        *(
            hot.record_pending_poll(
                digest(f"d{n % 30}"),
                client_id="public",
                now=now,
                slow_down_step=5,
                max_interval=60,
            )
            for n in range(60)
        )
    )
    for n in range(30):
        mine = [outcomes[n], outcomes[n + 30]]
        assert all(o is not None for o in mine)
        assert sorted((o.too_fast, o.interval) for o in mine) == [(False, 5), (True, 10)]
    (batcher,) = hot._poll_batchers.values()
    assert batcher.requests == 60
    assert batcher.batches < 60


async def test_starts_that_arrive_together_share_statements_and_are_judged_alone(pg) -> None:
    """Starts at once, among them a confidential client's, a scope not allowed and two
    flows whose user codes collide: each gets the answer it would alone, and exactly
    the flows that were granted are stored, each with its audit event."""
    store, hot = pg
    requests = [(new_flow("public", f"d{n}", f"u{n}"), None) for n in range(12)]
    requests += [
        (new_flow("secret", "ds", "us"), None),
        (new_flow("public", "dx", "ux"), ("admin",)),
        (new_flow("public", "dc", "u3"), None),  # the user code of d3
    ]
    granted = await asyncio.gather(
        *(hot.start_flow(new, requested_scope=scope) for new, scope in requests)
    )
    assert granted[:12] == [("api",)] * 12
    assert granted[12:] == [None, None, None]
    flows, events = await _stored(store)
    stored = {row[0] for row in flows}
    assert stored == {digest(f"d{n}") for n in range(12)}
    assert len(events) == 12
    assert hot._start_batcher.requests == 15
    assert hot._start_batcher.batches < 15


async def test_a_keys_last_use_is_written_once_with_one_first_use_event(pg) -> None:
    """The fast path writes a key's last use as the general path does: a compare-and-set
    on the stored last use, and the key_first_used audit event only the first time,
    however many requests race to write it."""
    store, hot = pg
    async with store.transaction() as tx:
        user = await tx.users.get_by_username("alice")
        assert user is not None
        key = await tx.api_keys.add(
            NewApiKey(
                key_hash=digest("k"),
                name="cli",
                user_id=user.id,
                client_id="public",
                device_authorization_id=None,
                scope=("api",),
                created_at=T0,
                expires_at=None,
            )
        )
    now = T0 + timedelta(seconds=10)
    written = await asyncio.gather(
        *(
            hot.record_use(key.id, now=now, ip="203.0.113.5", not_since=now - timedelta(minutes=1))
            for _ in range(5)
        )
    )
    assert written.count(True) == 1
    later = now + timedelta(seconds=30)
    assert not await hot.record_use(
        key.id, now=later, ip="203.0.113.6", not_since=later - timedelta(minutes=1)
    )
    much_later = now + timedelta(seconds=61)
    assert await hot.record_use(
        key.id, now=much_later, ip="203.0.113.7", not_since=much_later - timedelta(minutes=1)
    )
    async with store.engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT last_used_at, last_used_ip FROM api_keys WHERE id = :id"),
                {"id": key.id},
            )
        ).one()
        events = list(
            await conn.execute(
                text(
                    "SELECT event, occurred_at, api_key_id, user_id, username, ip FROM audit_events"
                )
            )
        )
    assert tuple(stored) == (much_later, "203.0.113.7")
    assert [tuple(e) for e in events] == [
        ("key_first_used", now, key.id, user.id, "alice", "203.0.113.5")
    ]
