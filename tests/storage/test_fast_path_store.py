"""The PostgreSQL fast path answers exactly as the rules it restates (RFC 8628 §3.5, §3.1).

``AsyncpgFastPath.poll`` folds reading and recording a poll into one statement, and
``lifecycle.decide_poll`` decides on the row it returns; the statement restates when a
poll is recorded and its pace. Each kind of state a record can be in is put through both,
and the stored bookkeeping must match too (``test_poll_implementations.py`` generates
every state and holds the statement to the repositories' poll). A flow started in
one statement must be the flow the repositories would store, and a key's last use the
compare-and-set the repositories make.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from devicelink.core import lifecycle
from devicelink.core.errors import InvalidGrant
from devicelink.core.models import (
    Client,
    DeviceAuthorization,
    NewDeviceAuthorization,
    Status,
)
from devicelink.core.ports import Transaction
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath

from .conftest import as_answered, digest, new_key

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

T0 = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=UTC)
POLICY = lifecycle.FlowPolicy()


@pytest.fixture
async def pg(empty_postgres: str) -> AsyncIterator[tuple[SqlStore, AsyncpgFastPath]]:
    store = SqlStore(create_engine_for_url(empty_postgres))
    hot = await AsyncpgFastPath.connect(empty_postgres)
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


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


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


async def poll(
    hot: AsyncpgFastPath, device: str, now: datetime, client_id: str = "public"
) -> lifecycle.PollDecision | None:
    return await hot.poll(digest(device), client_id=client_id, now=now, policy=POLICY)


# --- a poll in one statement ---------------------------------------------------


@dataclass(frozen=True)
class PollCase:
    status: Status | None
    """The stored status of the code; None: no such code."""
    last: float | None
    """Seconds after T0 of the last poll; None: never polled."""
    interval: int
    now: float
    """Seconds after T0 of this poll."""
    owner: str = "public"
    asker: str | None = None
    """The client that polls; None: the owner."""
    reason: str | None = None
    """Why the key issuer denied it (a denied code)."""

    @property
    def poller(self) -> str:
        return self.asker or self.owner


CASES = {
    "first poll": PollCase(Status.PENDING, last=None, interval=5, now=10),
    "on time": PollCase(Status.PENDING, last=0, interval=5, now=5),
    "a microsecond early": PollCase(Status.PENDING, last=0, interval=5, now=4.999999),
    "early": PollCase(Status.PENDING, last=0, interval=10, now=3),
    "early at the cap": PollCase(Status.PENDING, last=0, interval=60, now=30),
    "early near the cap": PollCase(Status.PENDING, last=0, interval=58, now=30),
    "expired": PollCase(Status.PENDING, last=0, interval=5, now=601),
    "expired exactly": PollCase(Status.PENDING, last=None, interval=5, now=600),
    "approved": PollCase(Status.APPROVED, last=0, interval=5, now=1),
    "denied": PollCase(Status.DENIED, last=0, interval=5, now=1),
    "consumed": PollCase(Status.CONSUMED, last=0, interval=5, now=30),
    "another client's code": PollCase(Status.PENDING, last=None, interval=5, now=10, asker="other"),
    "denied by the issuer": PollCase(Status.DENIED, last=0, interval=5, now=1, reason="quota"),
    "expired and denied": PollCase(Status.DENIED, last=0, interval=5, now=700),
    "confidential client": PollCase(Status.PENDING, last=None, interval=5, now=10, owner="secret"),
    "a confidential client's code":
        PollCase(Status.PENDING, last=None, interval=5, now=10, owner="secret", asker="public"),
    "unknown code": PollCase(None, last=None, interval=5, now=10),
}  # fmt: skip


async def stored_as(store: SqlStore, case: PollCase) -> DeviceAuthorization | None:
    """The code "d" stored in the state the case describes, through the repositories."""
    if case.status is None:
        return None
    async with store.transaction() as tx:
        repo = tx.device_authorizations
        record = await repo.add(
            replace(
                new_flow(case.owner),
                scope=("api",),
                interval=case.interval,
                request_ip=None,
                user_agent=None,
            )
        )
        if case.last is not None:
            await repo.record_poll(
                record.id, previous_poll=None, now=at(case.last), interval=case.interval
            )
        if case.status is not Status.PENDING:
            await settle(tx, record, case.status, case.reason)
        return await repo.get_by_device_code(digest("d"))


async def settle(
    tx: Transaction, record: DeviceAuthorization, status: Status, reason: str | None = None
) -> None:
    """Take a pending record to ``status``: decided by alice and, once consumed, its key
    issued."""
    user = await tx.users.get_by_username("alice")
    assert user is not None
    await tx.device_authorizations.transition(
        record.id,
        from_status=Status.PENDING,
        to_status=Status.DENIED if status is Status.DENIED else Status.APPROVED,
        now=T0,
        user_id=user.id,
        reason=reason,
    )
    if status is not Status.CONSUMED:
        return
    await tx.device_authorizations.transition(
        record.id, from_status=Status.APPROVED, to_status=Status.CONSUMED, now=T0
    )
    await tx.api_keys.add(
        new_key(
            digest("k"),
            user_id=user.id,
            client_id=record.client_id,
            created_at=T0,
            name="k",
            device_authorization_id=record.id,
        )
    )


def expected_outcome(
    record: DeviceAuthorization | None, case: PollCase, now: datetime
) -> lifecycle.PollDecision | None:
    """What the fast path must answer: the decision, but None for a confidential client
    (the full path authenticates it)."""
    if case.poller == "secret":
        return None  # a confidential client is never on the fast path
    return lifecycle.decide_poll(record, client_id=case.poller, now=now, policy=POLICY)


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_fast_path_agrees_with_the_decision(
    pg: tuple[SqlStore, AsyncpgFastPath], case: PollCase
) -> None:
    store, hot = pg
    record = await stored_as(store, case)
    now = at(case.now)

    outcome = await poll(hot, "d", now, client_id=case.poller)

    assert as_answered(outcome) == as_answered(expected_outcome(record, case, now))
    async with store.transaction() as tx:
        after = await tx.device_authorizations.get_by_device_code(digest("d"))
    if isinstance(outcome, lifecycle.KeepWaiting | lifecycle.SlowDownTo):
        assert after is not None
        assert after.last_polled_at == now
        assert after.interval == outcome.interval
    else:
        assert after == record  # nothing changed


async def test_concurrent_polls_of_one_code_are_judged_one_after_the_other(
    pg: tuple[SqlStore, AsyncpgFastPath],
) -> None:
    """Ten polls at the same instant: the first is on time, the nine others early."""
    store, hot = pg
    async with store.transaction() as tx:
        await tx.device_authorizations.add(
            replace(new_flow("public"), request_ip=None, user_agent=None)
        )
    outcomes = await asyncio.gather(*(poll(hot, "d", at(1)) for _ in range(10)))
    assert sum(1 for o in outcomes if isinstance(o, lifecycle.KeepWaiting)) == 1
    assert sorted(paced(o).interval for o in outcomes) == [
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


async def test_polls_that_arrive_together_share_statements_and_are_judged_alone(
    pg: tuple[SqlStore, AsyncpgFastPath],
) -> None:
    """Sixty polls at once, two of each of thirty codes: they leave in a few batches
    (one statement each), and every code is judged as if polled twice in a row."""
    store, hot = pg
    async with store.transaction() as tx:
        for n in range(30):
            await tx.device_authorizations.add(new_flow("public", f"d{n}", f"u{n}"))
    outcomes = await asyncio.gather(*(poll(hot, f"d{n % 30}", at(1)) for n in range(60)))
    for n in range(30):
        mine = [outcomes[n], outcomes[n + 30]]
        assert sorted(mine, key=lambda o: paced(o).interval) == [
            lifecycle.KeepWaiting(5),
            lifecycle.SlowDownTo(10),
        ]
    (batcher,) = hot._poll_batchers.values()
    assert batcher.requests == 60
    assert batcher.batches < 60


async def test_polls_of_one_code_that_change_nothing_share_statements(
    pg: tuple[SqlStore, AsyncpgFastPath],
) -> None:
    """A flood of one forged code and of one denied code, with a pending code's polls
    among them: the refusals leave together (no poll waits for another poll of its
    code), the pending code's polls are still judged one after the other."""
    store, hot = pg
    async with store.transaction() as tx:
        await tx.device_authorizations.add(new_flow("public", "pending", "u1"))
        denied = await tx.device_authorizations.add(new_flow("public", "denied", "u2"))
    async with store.transaction() as tx:
        await settle(tx, denied, Status.DENIED, "quota")
    codes = ["forged"] * 30 + ["denied"] * 30 + ["pending"] * 3
    outcomes = await asyncio.gather(*(poll(hot, code, at(1)) for code in codes))
    assert [as_answered(o) for o in outcomes[:30]] == [
        (400, {"error": "invalid_grant", "error_description": InvalidGrant().description})
    ] * 30
    assert [as_answered(o) for o in outcomes[30:60]] == [
        (400, {"error": "access_denied", "error_description": "quota"})
    ] * 30
    assert sorted(outcomes[60:], key=lambda o: paced(o).interval) == [
        lifecycle.KeepWaiting(5),
        lifecycle.SlowDownTo(10),
        lifecycle.SlowDownTo(15),
    ]
    (batcher,) = hot._poll_batchers.values()
    assert batcher.requests == 63
    assert batcher.batches < 10


def paced(outcome: lifecycle.PollDecision | None) -> lifecycle.KeepWaiting | lifecycle.SlowDownTo:
    assert isinstance(outcome, lifecycle.KeepWaiting | lifecycle.SlowDownTo), outcome
    return outcome


# --- device authorization in one statement -------------------------------------------


@dataclass(frozen=True)
class StartCase:
    client: str
    requested: tuple[str, ...] | None
    granted: tuple[str, ...] | None
    """The scope granted; None: nothing stored (the full path answers)."""


START_CASES = {
    "the client's scopes": StartCase("public", requested=None, granted=("api",)),
    "a scope it may have": StartCase("public", requested=("api",), granted=("api",)),
    "no scope at all": StartCase("public", requested=(), granted=()),
    "a scope it may not have": StartCase("public", requested=("admin",), granted=None),
    "one scope too many": StartCase("public", requested=("api", "admin"), granted=None),
    "a confidential client": StartCase("secret", requested=None, granted=None),
    "an unknown client": StartCase("nobody", requested=None, granted=None),
}  # fmt: skip


async def _stored(store: SqlStore) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with store.engine.connect() as conn:
        flows = [
            tuple(row)
            for row in await conn.exec_driver_sql(
                "SELECT device_code_hash, user_code_hash, client_id, scope, status, created_at,"
                " expires_at, interval, request_ip, user_agent, last_polled_at, user_id"
                " FROM device_authorizations ORDER BY id"
            )
        ]
        events = [
            tuple(row)
            for row in await conn.exec_driver_sql(
                "SELECT event, occurred_at, client_id, device_authorization_id, ip, user_agent,"
                " user_id FROM audit_events ORDER BY id"
            )
        ]
    return flows, events


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("case", list(START_CASES.values()), ids=list(START_CASES))
async def test_start_in_one_statement_agrees_with_the_full_path(
    pg: tuple[SqlStore, AsyncpgFastPath], case: StartCase
) -> None:
    """The same clients and scopes the full path accepts, the same rows it writes (the
    flow and its flow_started event); anything else stores nothing."""
    store, hot = pg
    granted = await hot.start_flow(new_flow(case.client), requested_scope=case.requested)
    assert granted == case.granted
    flows, events = await _stored(store)
    if granted is None:
        assert (flows, events) == ([], [])
        return
    # The full path (the repositories) writing the same flow, for comparison.
    async with store.transaction() as tx:
        client = await tx.clients.get(case.client)
        assert client is not None
        assert lifecycle.granted_scope(case.requested, client.scopes) == granted
        full = await tx.device_authorizations.add(
            replace(new_flow(case.client, "d2", "u2"), scope=granted)
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
        case.client,
        first_id,
        "203.0.113.9",
        "cli/1.0",
        None,
    )
    assert full.scope == granted


@pytest.mark.parametrize(
    "again",
    [new_flow("public", "d", "u2"), new_flow("public", "d2", "u")],
    ids=["device code", "user code"],
)
async def test_start_with_a_colliding_code_stores_nothing(
    pg: tuple[SqlStore, AsyncpgFastPath], again: NewDeviceAuthorization
) -> None:
    store, hot = pg
    assert await hot.start_flow(new_flow("public"), requested_scope=None) == ("api",)
    before = await _stored(store)
    assert await hot.start_flow(again, requested_scope=None) is None
    assert await _stored(store) == before


async def test_starts_that_arrive_together_share_statements_and_are_judged_alone(
    pg: tuple[SqlStore, AsyncpgFastPath],
) -> None:
    """Starts at once, among them a confidential client's, a scope not allowed and two
    flows whose user codes collide: each gets the answer it would alone, and exactly
    the flows that were granted are stored, each with its audit event."""
    store, hot = pg
    requests: list[tuple[NewDeviceAuthorization, tuple[str, ...] | None]] = [
        (new_flow("public", f"d{n}", f"u{n}"), None) for n in range(12)
    ]
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


# --- a key's last use ----------------------------------------------------------------


async def test_a_keys_last_use_is_written_once_with_one_first_use_event(
    pg: tuple[SqlStore, AsyncpgFastPath],
) -> None:
    """The fast path writes a key's last use as the general path does: a compare-and-set
    on the stored last use, and the key_first_used audit event only the first time,
    however many requests race to write it."""
    store, hot = pg
    async with store.transaction() as tx:
        user = await tx.users.get_by_username("alice")
        assert user is not None
        key = await tx.api_keys.add(
            new_key(digest("k"), user_id=user.id, client_id="public", created_at=T0, name="cli")
        )

    async def use(now: datetime, ip: str) -> bool:
        return await hot.record_use(key.id, now=now, ip=ip, not_since=now - timedelta(minutes=1))

    now = at(10)
    written = await asyncio.gather(*(use(now, "203.0.113.5") for _ in range(5)))
    assert written.count(True) == 1
    assert not await use(now + timedelta(seconds=30), "203.0.113.6")
    much_later = now + timedelta(seconds=61)
    assert await use(much_later, "203.0.113.7")
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
