"""Every implementation of a poll answers and records as ``core`` decides (RFC 8628 §3.5).

A poll has four implementations: the repositories' (read the code's row,
``lifecycle.decide_poll`` decides, a compare-and-set records a pending code's poll) on
SQLite and on PostgreSQL, the same loop on SQLite's fast path (the read beside its one
writer, the compare-and-set through it), and PostgreSQL's fast path, one statement,
which restates when a poll is recorded ("no refusal applies and the code is pending")
and the slow_down arithmetic. Hypothesis generates the state a code can be in (status, expiry,
the client it was issued to and the one asking, either of them confidential or unknown,
last poll, interval, the moment of the poll, the issuer's reason for a denial, the
policy's step and cap), stores it through the repositories in each, polls it once with
each implementation, and requires of each the same answer and the same stored row, the
ones ``decide_poll`` implies.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devicelink.core import lifecycle
from devicelink.core.models import Client, DeviceAuthorization, NewDeviceAuthorization, Status
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath
from devicelink.storage.sqlite_fast_path import SqliteFastPath
from devicelink.storage.sqlite_writer import SqliteWriter
from tests.support.databases import delete_all_rows

from .conftest import as_answered, digest

pytestmark = [pytest.mark.postgres]

NOW = datetime(2026, 11, 29, 12, 0, 0, 250000, tzinfo=UTC)
CLIENTS = {"public": False, "other": False, "secret": True}
"""The registered clients, by id: whether each is confidential."""
EXAMPLES = 150


@dataclass(frozen=True)
class State:
    status: Status | None
    """None: no such code."""
    owner: str
    """The client the code was issued to."""
    asker: str
    """The client that polls ("nobody": an unregistered id)."""
    expires_in: timedelta
    """From the poll to the code's expiry (negative: expired)."""
    last: timedelta | None
    """From the last poll to this one; None: never polled."""
    interval: int
    reason: str | None
    """The key issuer's reason, for a denied code."""
    policy: lifecycle.FlowPolicy
    now: datetime


MICROSECOND = timedelta(microseconds=1)


@st.composite
def states(draw: st.DrawFn) -> State:
    step = draw(st.sampled_from([1, 5, 10]))
    cap = draw(st.sampled_from([30, 60]))
    interval = draw(st.integers(min_value=1, max_value=cap))
    span = timedelta(seconds=interval)
    last = draw(
        st.one_of(
            st.none(),
            st.sampled_from([span - MICROSECOND, span, span + MICROSECOND, timedelta(0)]),
            st.integers(min_value=0, max_value=80_000_000).map(
                lambda us: timedelta(microseconds=us)
            ),
        )
    )
    expires_in = draw(
        st.one_of(
            st.integers(min_value=1, max_value=600_000_000),  # live, most often
            st.integers(min_value=1, max_value=600_000_000),
            st.integers(min_value=-5_000_000, max_value=0),  # expired
            st.sampled_from([-1, 0, 1]),  # a microsecond either side of expiry
        ).map(lambda us: timedelta(microseconds=us))
    )
    status = draw(st.sampled_from([*Status, None]))
    owner = draw(st.sampled_from(sorted(CLIENTS, key=lambda c: CLIENTS[c])))
    # Half the polls come from the code's own client: most answers need it.
    same = draw(st.booleans())
    return State(
        status=status,
        owner=owner,
        asker=owner if same else draw(st.sampled_from([*sorted(CLIENTS), "nobody"])),
        expires_in=expires_in,
        last=last,
        interval=interval,
        reason=draw(st.sampled_from([None, "quota reached"])) if status is Status.DENIED else None,
        policy=lifecycle.FlowPolicy(slow_down_step=step, max_interval=cap),
        now=NOW + timedelta(microseconds=draw(st.integers(min_value=0, max_value=10**6))),
    )


class Implementations:
    """The four polls, on one event loop for the whole test: ``sqlite`` and
    ``postgres`` (the repositories'), ``statement`` (PostgreSQL's fast path, one
    statement) and ``embedded`` (SQLite's fast path: a read beside its one writer)."""

    def __init__(self, sqlite_url: str, postgres_url: str) -> None:
        self.runner = asyncio.Runner()
        self.codes = count()
        self.sqlite = SqlStore(create_engine_for_url(sqlite_url))
        self.postgres = SqlStore(create_engine_for_url(postgres_url, pool_size=2))
        self.hot: AsyncpgFastPath = self.run(AsyncpgFastPath.connect(postgres_url, max_size=2))
        self.embedded = SqliteFastPath(
            self.sqlite, SqliteWriter(sqlite_url, lock=self.sqlite.write_lock)
        )
        for store in (self.sqlite, self.postgres):
            self.run(self._prepare(store))

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _prepare(self, store: SqlStore) -> None:
        async with store.transaction() as tx:
            await delete_all_rows(tx.connection)
            for client_id, confidential in CLIENTS.items():
                await tx.clients.add(
                    Client(
                        client_id=client_id,
                        name=client_id,
                        scopes=("api",),
                        key_lifetime=None,
                        confidential=confidential,
                        created_at=NOW - timedelta(days=1),
                    )
                )
            await tx.users.add("alice", None, NOW - timedelta(days=1))

    async def store_state(self, store: SqlStore, state: State) -> tuple[bytes, Any]:
        """A fresh code in ``state`` (none stored when its status is None): its hash and
        its row as stored."""
        code = digest(f"code {next(self.codes)}")
        if state.status is None:
            return code, None
        created = state.now - timedelta(hours=1)
        async with store.transaction() as tx:
            repo = tx.device_authorizations
            record = await repo.add(
                NewDeviceAuthorization(
                    device_code_hash=code,
                    user_code_hash=digest(f"user {code.hex()}"),
                    client_id=state.owner,
                    scope=("api",),
                    created_at=created,
                    expires_at=state.now + state.expires_in,
                    interval=state.interval,
                    request_ip=None,
                    user_agent=None,
                )
            )
            if state.last is not None:
                assert await repo.record_poll(
                    record.id,
                    previous_poll=None,
                    now=state.now - state.last,
                    interval=state.interval,
                )
            user = await tx.users.get_by_username("alice")
            assert user is not None
            if state.status is not Status.PENDING:
                assert await repo.transition(
                    record.id,
                    from_status=Status.PENDING,
                    to_status=Status.DENIED if state.status is Status.DENIED else Status.APPROVED,
                    now=created,
                    user_id=user.id,
                    reason=state.reason,
                )
            if state.status is Status.CONSUMED:
                assert await repo.transition(
                    record.id, from_status=Status.APPROVED, to_status=Status.CONSUMED, now=created
                )
        return code, await self.row(store, code)

    async def row(self, store: SqlStore, code: bytes) -> DeviceAuthorization | None:
        async with store.transaction() as tx:
            return await tx.device_authorizations.get_by_device_code(code)

    async def poll(self, name: str, state: State) -> tuple[lifecycle.PollDecision | None, Any, Any]:
        """Poll a fresh code in ``state`` with one implementation: the answer, the row
        before and the row after (ids aside: each implementation has its own row)."""
        store = self.sqlite if name in ("sqlite", "embedded") else self.postgres
        code, before = await self.store_state(store, state)
        if name in ("statement", "embedded"):
            fast = self.hot if name == "statement" else self.embedded
            decision = await fast.poll(
                code, client_id=state.asker, now=state.now, policy=state.policy
            )
        else:
            async with store.transaction() as tx:
                decision = await tx.device_authorizations.poll(
                    code, client_id=state.asker, now=state.now, policy=state.policy
                )
        after = await self.row(store, code)
        return decision, _without_id(before), _without_id(after)

    def close(self) -> None:
        self.run(self.hot.close())
        self.run(self.embedded.close())
        self.run(self.sqlite.dispose())
        self.run(self.postgres.dispose())
        self.runner.close()


def _without_id(row: DeviceAuthorization | None) -> DeviceAuthorization | None:
    """The row with its own id and its decider's (alice, whose id differs from one
    database to the other) blanked."""
    if row is None:
        return None
    return replace(row, id=0, user_id=None if row.user_id is None else 0)


def expected(
    state: State, before: DeviceAuthorization | None
) -> tuple[lifecycle.PollDecision | None, DeviceAuthorization | None]:
    """The answer and the stored row ``core`` implies for a poll of ``before``."""
    if CLIENTS.get(state.asker, True):
        return None, before  # unknown or confidential: left to the general path
    decision = lifecycle.decide_poll(
        before, client_id=state.asker, now=state.now, policy=state.policy
    )
    if isinstance(decision, lifecycle.KeepWaiting | lifecycle.SlowDownTo):
        assert before is not None
        return decision, replace(before, last_polled_at=state.now, interval=decision.interval)
    return decision, before


@pytest.fixture
def implementations(
    sqlite_template: Path, postgres_database: str, tmp_path: Path
) -> Iterator[Implementations]:
    path = tmp_path / "devicelink.db"
    shutil.copyfile(sqlite_template, path)
    polls = Implementations(f"sqlite:///{path}", postgres_database)
    try:
        yield polls
    finally:
        polls.close()


@pytest.mark.rfc("8628", "3.5")
def test_every_implementation_of_a_poll_answers_and_records_as_core_decides(
    implementations: Implementations,
) -> None:
    seen: set[str] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(state=states())
    @_examples
    def check(state: State) -> None:
        outcomes = {
            name: implementations.run(implementations.poll(name, state))
            for name in ("sqlite", "postgres", "statement", "embedded")
        }
        for name, (decision, before, after) in outcomes.items():
            want, stored = expected(state, before)
            assert as_answered(decision) == as_answered(want), (name, state)
            assert after == stored, (name, state)
            seen.add(_kind(want))
        befores = [before for _, before, _ in outcomes.values()]
        assert all(before == befores[0] for before in befores), befores  # one state, 4 rows

    check()
    # The examples reached every kind of answer, not only the common ones.
    assert seen >= {
        "invalid_grant",
        "expired_token",
        "access_denied",
        "Issue",
        "KeepWaiting",
        "SlowDownTo",
        "general path",
    }


def _state(status: Status | None, **changes: Any) -> State:
    base = State(
        status=status,
        owner="public",
        asker="public",
        expires_in=timedelta(seconds=300),
        last=timedelta(seconds=10),
        interval=5,
        reason=None,
        policy=lifecycle.FlowPolicy(),
        now=NOW,
    )
    return replace(base, **changes)


KNOWN_STATES = [
    _state(Status.PENDING),  # on time
    _state(Status.PENDING, last=timedelta(seconds=5) - MICROSECOND),  # slow_down
    _state(Status.PENDING, interval=58, last=timedelta(seconds=1)),  # slow_down to the cap
    _state(Status.APPROVED, last=timedelta(0)),  # the key, however fast
    _state(Status.DENIED, reason="quota reached"),
    _state(Status.PENDING, expires_in=timedelta(0)),  # expired at this very moment
    _state(Status.CONSUMED),
    _state(None),
    _state(Status.PENDING, asker="other"),
    _state(Status.PENDING, owner="secret", asker="public"),
    _state(Status.PENDING, owner="secret", asker="secret"),
    _state(None, asker="nobody"),
]
"""One state of each kind of answer, tried before the generated ones."""


def _examples(test: Any) -> Any:
    for state in KNOWN_STATES:
        test = example(state=state)(test)
    return test


def _kind(decision: object) -> str:
    if decision is None:
        return "general path"
    if isinstance(decision, lifecycle.Refuse):
        return decision.error.error
    return type(decision).__name__
