"""A stateful property test of the device authorization lifecycle on PostgreSQL.

Hypothesis drives a :class:`~hypothesis.stateful.RuleBasedStateMachine` through random
interleavings of the use cases, against the real services and repositories on a real
PostgreSQL database, and checks every answer, and the stored rows after every step,
against a small model of the lifecycle (DESIGN.md "Device authorization lifecycle"):

    pending --approve--> approved --the one poll that gets the key--> consumed
    pending --deny-----> denied
    anything past expires_at reads as expired; purged once its retention has passed

Rules: start a flow; poll it (early, or exactly when its interval has passed), through
the asyncpg one-statement fast path or through the SQLAlchemy path, as the right client
or as another one; a burst of concurrent polls; approve or deny (typed as shown, lower
case, without the dash, with spaces) by one of three users; two decisions racing on a
new flow; poll while the key issuer fails (the consumption must roll back); advance the
clock (a tick, an interval, past a code's ``expires_in``); go to the second before, of
or after a code's expiry, a key's expiry or the end of a retention and act there;
authenticate a key (fast path or not); revoke it (RFC 7009, by its client or by another
one); disable an approving account; purge with short retentions.

Replays: Hypothesis re-runs a run's choices and requires the same draws to come up
(else ``FlakyStrategyDefinition``), so the model alone decides which rules apply and
what they draw from; never the database, the scheduling or the wall clock. Every model
update is computed by the model itself (the answers are asserted, then the expected
state is applied), except a race's winner: that is why the raced flows are kept apart
(see ``decide_concurrently``). Time is the machine's own clock, passed to every service
and statement (nothing here reads the wall clock or PostgreSQL's ``now()``); the user
codes, device codes and keys are random but never drawn from. No example database
(``database=None``): a run never replays examples saved by an earlier one.

Invariants, checked after every step with SQL on the same database:

- never two ``api_keys`` rows for one device authorization; a key exists exactly for
  the flows the model says were consumed, never for a denied or expired one, and was
  created at the moment of consumption, after approval and before expiry;
- every stored status, interval, last poll time and approver matches the model, and
  every row the model says was purged is gone (and only those);
- every poll answer matches the model: ``authorization_pending``, ``slow_down`` with
  the right new interval, ``access_denied``, ``expired_token``, ``invalid_grant``, or a
  key exactly once however often (or however concurrently) the flow is polled;
- a revoked key never authenticates (:class:`InvalidToken`, on both paths).

DESIGN.md defects guarded: 1 (the device code is consumed), 3 (a failed key creation
rolls the consumption back, so the next poll gets the key), 9 (compare-and-set
transitions: one winner of a race of decisions, one key for a burst of polls).

Runs: the default run (part of the normal suite) is short, ``max_examples`` 25 and
``stateful_step_count`` 25: about 10 s, about 30 s on a busy two-core machine. For a
dedicated, longer run set ``DEVICELINK_STATEFUL_EXAMPLES`` (and optionally
``DEVICELINK_STATEFUL_STEPS``); 300 examples of 40 steps take about 4 minutes::

    DEVICELINK_STATEFUL_EXAMPLES=300 DEVICELINK_STATEFUL_STEPS=40 \\
        .venv/bin/pytest tests/stateful -q

Needs PostgreSQL (``DEVICELINK_TEST_POSTGRES``, see ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from devicelink.core.codes import CodeHasher
from devicelink.core.errors import (
    InvalidToken,
    KeyIssueFailed,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
)
from devicelink.core.lifecycle import Verdict
from devicelink.core.models import Client, IssuedKey
from devicelink.core.ports import Transaction
from devicelink.service import DeviceFlowService, KeyService, StoredKeyIssuer, TokenGrant
from devicelink.service.admin import AdminService
from devicelink.service.device_flow import ClientCredentials
from devicelink.service.maintenance import Maintenance
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath
from devicelink.storage.purge import SqlPurger
from tests.support.databases import delete_all_rows

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.defect(1),
    pytest.mark.defect(3),
    pytest.mark.defect(9),
    pytest.mark.rfc("8628", "3.5"),
    pytest.mark.rfc("7009", "2.1"),
]

EXAMPLES = int(os.environ.get("DEVICELINK_STATEFUL_EXAMPLES", "25"))
STEPS = int(os.environ.get("DEVICELINK_STATEFUL_STEPS", "25"))

START = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
CODE_LIFETIME = 600  # FlowPolicy defaults
INTERVAL = 5
SLOW_DOWN_STEP = 5
MAX_INTERVAL = 60
KEY_LIFETIME = 1_200  # short, so that keys expire within a run
CODE_RETENTION = timedelta(seconds=60)
KEY_RETENTION = timedelta(seconds=90)
SCOPE = ("api",)

CLI = Client("devicelink-cli", "devicelink CLI", SCOPE, KEY_LIFETIME, created_at=START)
OTHER = Client("other-cli", "another CLI", SCOPE, KEY_LIFETIME, created_at=START)
CLI_CREDS = ClientCredentials(CLI.client_id)
OTHER_CREDS = ClientCredentials(OTHER.client_id)
USERS = ("alice", "bob", "carol")
DISABLEABLE = "carol"

# Poll answers as the model writes them: the error code, and for slow_down the interval.
Answer = tuple[Any, ...]
PENDING: Answer = ("authorization_pending",)
INVALID_GRANT: Answer = ("invalid_grant",)
EXPIRED: Answer = ("expired_token",)
DENIED: Answer = ("access_denied",)
KEY: Answer = ("key",)


class IssuerDown(Exception):
    """The key issuer failed (its key store did not answer)."""


class FlakyIssuer(StoredKeyIssuer):
    """devicelink's own issuer, which fails when armed (DESIGN.md defect 3)."""

    armed = False

    async def issue(self, tx: Transaction, **details: Any) -> IssuedKey:
        if self.armed:
            self.armed = False
            raise IssuerDown("the key store did not answer")
        return await super().issue(tx, **details)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance_to(self, moment: datetime) -> None:
        self.now = max(self.now, moment)


@dataclass(eq=False)
class Flow:
    """The model of one device authorization."""

    number: int
    id: int
    device_code: str
    user_code: str
    expires_at: datetime
    interval: int = INTERVAL
    last_poll: datetime | None = None
    status: str = "pending"  # as stored: pending, approved, denied, consumed
    decided_by: str | None = None
    decided_at: datetime | None = None
    consumed_at: datetime | None = None
    purged: bool = False
    key: Key | None = None
    raced: bool = False
    """Started by ``decide_concurrently``: kept out of what the other rules draw from."""

    def __repr__(self) -> str:
        kind = "raced flow" if self.raced else "flow"
        return f"<{kind} {self.number} {self.status}{' purged' if self.purged else ''}>"


@dataclass(eq=False)
class Key:
    """The model of one issued API key."""

    number: int
    token: str
    flow: Flow
    owner: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    purged: bool = False

    def __repr__(self) -> str:
        return f"<key {self.number} of flow {self.flow.number}>"


def typed(user_code: str, style: str) -> str:
    """The user code as a user might type it (RFC 8628 section 6.1)."""
    if style == "lower":
        return user_code.lower()
    if style == "no_dash":
        return user_code.replace("-", "")
    if style == "spaced":
        return " ".join(user_code.replace("-", "")).lower()
    return user_code


def answer_of(outcome: object) -> Answer:
    if isinstance(outcome, TokenGrant):
        answer = KEY
    elif isinstance(outcome, SlowDown):
        answer = ("slow_down", outcome.interval)
    elif isinstance(outcome, OAuthError):
        answer = (outcome.error,)
    else:
        raise AssertionError(f"unexpected outcome {outcome!r}")
    # Shown by --hypothesis-show-statistics: how often each answer came up.
    event("poll answered", answer[0])
    if answer == ("slow_down", MAX_INTERVAL):
        event("slow_down reached the maximum interval")
    return answer


VIA = st.sampled_from(["hot", "sql"])
STYLE = st.sampled_from(["shown", "lower", "no_dash", "spaced"])
USER = st.sampled_from(USERS)
BOUNDARY = st.sampled_from([0, -1, 0, 1])  # seconds from a moment where something ends
DECISION = st.tuples(st.sampled_from(["approve", "deny"]), USER)


class LifecycleMachine(RuleBasedStateMachine):
    database_url: ClassVar[str]
    """Set by the test on a subclass: the migrated database (emptied for every run)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        # What the rules draw from (the bundles aside): it must evolve the same way
        # whenever Hypothesis replays a run, so it never depends on a race's winner.
        self.model_flows: list[Flow] = []
        self.model_keys: list[Key] = []
        # Flows started by decide_concurrently, and their keys: checked and purged like
        # the others, never drawn from.
        self.raced_flows: list[Flow] = []
        self.raced_keys: list[Key] = []
        self.user_ids: dict[str, int] = {}
        self.disabled: set[str] = set()
        self._runner: asyncio.Runner | None = asyncio.Runner()
        self._store: SqlStore | None = None
        self._hot: AsyncpgFastPath | None = None
        try:
            self._run(self._setup(self.database_url))
        except BaseException:
            self.teardown()
            raise

    # --- plumbing --------------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        assert self._runner is not None
        return self._runner.run(coro)

    async def _setup(self, url: str) -> None:
        # Few connections (the server may be shared): a burst queues for them.
        self._store = store = SqlStore(create_engine_for_url(url, pool_size=3, max_overflow=2))
        async with store.transaction() as tx:
            await delete_all_rows(tx.connection)
            await tx.clients.add(CLI)
            await tx.clients.add(OTHER)
            for name in USERS:
                self.user_ids[name] = (await tx.users.add(name, None, START)).id
        # With the key cache, as the server runs it: revocations and disabled accounts
        # made through this store are announced to it at commit.
        self._hot = hot = await AsyncpgFastPath.connect(url, max_size=3, key_cache_size=100)
        store.on_commit_announce(hot.changed)
        for _ in range(500):  # until it listens (milliseconds): only then does it remember
            if hot.cache.live:
                break
            await asyncio.sleep(0.01)
        self.hasher = hasher = CodeHasher(b"stateful-machine-secret-".ljust(40, b"x"))
        self.issuer = FlakyIssuer()
        self.flow_services = {
            "hot": DeviceFlowService(store, hasher, self.issuer, clock=self.clock, fast_path=hot),
            "sql": DeviceFlowService(store, hasher, self.issuer, clock=self.clock),
        }
        self.key_services = {
            "hot": KeyService(store, hasher, self.clock, fast_path=hot),
            "sql": KeyService(store, hasher, self.clock),
        }
        # The issuer is told of the revocations of `disable` at once, as in the server's
        # own process; without it they would wait in the outbox for a drain this machine
        # never runs, and the purge keeps a key until its issuer has heard.
        self.admin = AdminService(store, self.clock, key_issuer=self.issuer)
        self.maintenance = Maintenance(
            SqlPurger(store.engine),
            self.clock,
            code_retention=CODE_RETENTION,
            key_retention=KEY_RETENTION,
            session_retention=timedelta(0),
            audit_retention=timedelta(days=1),
            batch_size=2,  # several batches per purge
            pause=0,
        )

    def teardown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            if self._hot is not None:
                runner.run(self._hot.close())
            if self._store is not None:
                runner.run(self._store.dispose())
        finally:
            runner.close()

    # --- the model -------------------------------------------------------------------

    def expected_poll(self, flow: Flow) -> Answer:
        """RFC 8628 section 3.5 in DESIGN.md's order: unknown or consumed, expiry,
        denial, approval, and only then the pace."""
        now = self.clock.now
        if flow.purged or flow.status == "consumed":
            return INVALID_GRANT
        if now >= flow.expires_at:
            return EXPIRED
        if flow.status == "denied":
            return DENIED
        if flow.status == "approved":
            # An account disabled after approving can no longer redeem the approval;
            # the flow stays approved (the consumption rolls back).
            if flow.decided_by in self.disabled:
                event("an approval by a disabled account is not redeemed")
                return INVALID_GRANT
            return KEY
        if flow.last_poll is not None and now - flow.last_poll < timedelta(seconds=flow.interval):
            return ("slow_down", min(flow.interval + SLOW_DOWN_STEP, MAX_INTERVAL))
        return PENDING

    def apply_poll(self, flow: Flow, answer: Answer) -> None:
        now = self.clock.now
        if answer == PENDING:
            flow.last_poll = now
        elif answer[0] == "slow_down":
            flow.last_poll = now
            flow.interval = answer[1]
        elif answer == KEY:
            flow.status = "consumed"
            flow.consumed_at = now

    def expected_review(self, flow: Flow) -> Verdict:
        if flow.purged:
            return Verdict.UNKNOWN
        if flow.status == "consumed":
            return Verdict.ALREADY_USED
        if self.clock.now >= flow.expires_at:
            return Verdict.EXPIRED
        if flow.status == "approved":
            return Verdict.ALREADY_APPROVED
        if flow.status == "denied":
            return Verdict.ALREADY_DENIED
        return Verdict.OK

    def flows_in(self, *statuses: str) -> list[Flow]:
        """The flows stored with one of ``statuses`` that have not expired yet."""
        now = self.clock.now
        return [
            f
            for f in self.model_flows
            if f.status in statuses and not f.purged and now < f.expires_at
        ]

    def key_works(self, key: Key) -> bool:
        return (
            not key.purged
            and key.revoked_at is None
            and self.clock.now < key.expires_at
            and key.owner not in self.disabled
        )

    def record_key(self, flow: Flow, grant: TokenGrant) -> Key:
        assert flow.key is None, f"a second key for {flow!r} (DESIGN.md defect 1)"
        assert grant.access_token.startswith("dlk_")
        assert grant.expires_in == KEY_LIFETIME
        assert grant.scope == SCOPE
        assert flow.decided_by is not None
        keys = self.raced_keys if flow.raced else self.model_keys
        key = Key(
            number=len(keys),
            token=grant.access_token,
            flow=flow,
            owner=flow.decided_by,
            issued_at=self.clock.now,
            expires_at=self.clock.now + timedelta(seconds=KEY_LIFETIME),
        )
        flow.key = key
        keys.append(key)
        return key

    def all_flows(self) -> list[Flow]:
        return self.model_flows + self.raced_flows

    def all_keys(self) -> list[Key]:
        return self.model_keys + self.raced_keys

    async def _outcome(self, coro: Any) -> object:
        try:
            return await coro
        except OAuthError as exc:
            return exc

    # --- choosing what to act on ------------------------------------------------------

    def _pick_flow(self, data: st.DataObject, *statuses: str) -> Flow:
        """Half the time a flow in one of ``statuses`` that has not expired (when there
        is one), so that runs get somewhere; otherwise any flow, over or not."""
        live = self.flows_in(*statuses)
        choices = self.model_flows
        if bool(live) and data.draw(st.booleans(), label="a live flow"):
            choices = live
        return data.draw(st.sampled_from(choices), label="flow")

    def _pick_key(self, data: st.DataObject) -> Key:
        return data.draw(st.sampled_from(self.model_keys), label="key")

    # --- rules: the device -----------------------------------------------------------

    @initialize()
    def a_pending_flow_an_approved_one_and_a_key(self) -> None:
        """Every run starts with a pending flow, an approved one and a key, so that no
        step finds nothing to do and most runs exercise the key rules."""
        self._start()
        self._decide_alone("approve", "alice", self._start(), "shown")
        flow = self._start()
        self._decide_alone("approve", "bob", flow, "shown")
        assert len(self._poll(flow, "hot", False, 1)) == 1

    @rule()
    def start(self) -> None:
        self._start()

    def _start(self, *, raced: bool = False) -> Flow:
        service = self.flow_services["hot"]
        started = self._run(
            service.start(CLI_CREDS, scope=None, request_ip="203.0.113.7", user_agent="stateful")
        )
        assert (started.expires_in, started.interval, started.scope) == (
            CODE_LIFETIME,
            INTERVAL,
            SCOPE,
        )
        flow_id = self._run(self._flow_id(started.device_code))
        flows = self.raced_flows if raced else self.model_flows
        flow = Flow(
            number=len(flows),
            id=flow_id,
            device_code=started.device_code,
            user_code=started.user_code,
            expires_at=self.clock.now + timedelta(seconds=CODE_LIFETIME),
            raced=raced,
        )
        flows.append(flow)
        return flow

    async def _flow_id(self, device_code: str) -> int:
        assert self._store is not None
        async with self._store.engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT id FROM device_authorizations WHERE device_code_hash = :h"),
                {"h": self.hasher.device_code(device_code)},
            )
        assert found is not None
        return int(found)

    @rule(
        data=st.data(),
        via=VIA,
        on_time=st.booleans(),
        times=st.integers(min_value=1, max_value=12),
        client=st.sampled_from(["own", "own", "own", "another"]),
    )
    def poll(self, data: st.DataObject, via: str, on_time: bool, times: int, client: str) -> None:
        """Poll ``times`` times in a row: on time (the clock moved to exactly the end of
        the current interval, the boundary) or early (the clock as it is). As another
        client: a device code belongs to the client that started the flow, so any
        other client gets invalid_grant, and nothing is recorded."""
        flow = self._pick_flow(data, "pending", "approved")
        if client == "own":
            self._poll(flow, via, on_time, times)
            return
        outcome = self._run(
            self._outcome(self.flow_services[via].poll(OTHER_CREDS, flow.device_code))
        )
        assert answer_of(outcome) == INVALID_GRANT, (flow, outcome)

    def _poll(self, flow: Flow, via: str, on_time: bool, times: int) -> list[Key]:
        """Poll and check every answer against the model; the keys issued."""
        issued: list[Key] = []
        for _ in range(times):
            if on_time and flow.last_poll is not None:
                self.clock.advance_to(flow.last_poll + timedelta(seconds=flow.interval))
            expected = self.expected_poll(flow)
            outcome = self._run(
                self._outcome(self.flow_services[via].poll(CLI_CREDS, flow.device_code))
            )
            assert answer_of(outcome) == expected, (flow, via, outcome)
            self.apply_poll(flow, expected)
            if isinstance(outcome, TokenGrant):
                issued.append(self.record_key(flow, outcome))
        return issued

    @rule(data=st.data(), n=st.integers(min_value=2, max_value=5))
    def poll_burst(self, data: st.DataObject, n: int) -> None:
        """``n`` concurrent polls at the same moment: they queue on the row lock, so the
        answers are those of ``n`` polls in a row; in particular one key at most."""
        flow = self._pick_flow(data, "pending", "approved")
        expected: list[Answer] = []
        for _ in range(n):
            answer = self.expected_poll(flow)
            expected.append(answer)
            self.apply_poll(flow, answer)
        service = self.flow_services["hot"]

        async def burst() -> list[object]:
            return list(
                await asyncio.gather(
                    *(self._outcome(service.poll(CLI_CREDS, flow.device_code)) for _ in range(n))
                )
            )

        outcomes = self._run(burst())
        assert sorted(map(answer_of, outcomes)) == sorted(expected), (flow, outcomes)
        for grant in outcomes:
            if isinstance(grant, TokenGrant):
                self.record_key(flow, grant)

    @rule(data=st.data(), via=VIA)
    def poll_while_the_issuer_fails(self, data: st.DataObject, via: str) -> None:
        """The poll that would get the key meets a failing issuer: it fails, the flow
        stays approved, and the next poll gets the key (DESIGN.md defect 3)."""
        flow = self._pick_flow(data, "approved")
        expected = self.expected_poll(flow)
        self.issuer.armed = True
        try:
            outcome = self._run(
                self._outcome(self.flow_services[via].poll(CLI_CREDS, flow.device_code))
            )
        finally:
            called = not self.issuer.armed
            self.issuer.armed = False
        if isinstance(outcome, KeyIssueFailed):
            # Answered as server_error (issue 17), the issuer's exception as its cause.
            assert isinstance(outcome.__cause__, IssuerDown), outcome
            assert expected == KEY, (flow, "the issuer was called")
            assert called
            event("a failed issue rolled back")
        else:
            assert expected != KEY, (flow, "the issuer failed but the poll succeeded", outcome)
            assert answer_of(outcome) == expected, (flow, outcome)
            self.apply_poll(flow, expected)
        if expected != KEY:
            return
        # The consumption was rolled back: the flow is still approved, so this one works.
        assert len(self._poll(flow, via, False, 1)) == 1

    # --- rules: the user -------------------------------------------------------------

    def _decide(self, action: str, user: str, flow: Flow, style: str) -> Any:
        service = self.flow_services["hot"]
        method = service.approve if action == "approve" else service.deny
        return method(typed(flow.user_code, style), user_id=self.user_ids[user])

    def _apply_decision(self, flow: Flow, action: str, user: str) -> None:
        flow.status = "approved" if action == "approve" else "denied"
        flow.decided_by = user
        flow.decided_at = self.clock.now

    def _decide_alone(self, action: str, user: str, flow: Flow, style: str) -> None:
        expected = self.expected_review(flow)
        verdict = self._run(self._decide(action, user, flow, style))
        assert verdict is expected, (flow, action, verdict)
        if verdict is Verdict.OK:
            self._apply_decision(flow, action, user)

    def _review(self, flow: Flow, style: str) -> None:
        result = self._run(self.flow_services["sql"].review(typed(flow.user_code, style)))
        assert result.verdict is self.expected_review(flow), (flow, result.verdict)

    @rule(data=st.data(), action=st.sampled_from(["approve", "deny"]), user=USER, style=STYLE)
    def decide(self, data: st.DataObject, action: str, user: str, style: str) -> None:
        """The user types the code (as shown, lower case, without the dash, spaced),
        sees the confirm page (the review), and approves or denies."""
        flow = self._pick_flow(data, "pending")
        self._review(flow, style)
        self._decide_alone(action, user, flow, style)

    @rule(first=DECISION, second=DECISION, via=VIA)
    def decide_concurrently(
        self, first: tuple[str, str], second: tuple[str, str], via: str
    ) -> None:
        """Two decisions at once on a new flow (a double submit, two tabs): exactly one
        wins, the other is told what the record says now (DESIGN.md defect 9); then
        the device polls once, and gets a key only if an active account approved.

        Which request wins is up to the database. So this flow is kept out of
        everything the other rules draw from (``model_flows``, ``model_keys``): when
        Hypothesis replays a run it requires the same choices to come up, which they
        would not if a race's winner decided what can be approved or polled next. The
        invariants and the purge still cover it."""
        flow = self._start(raced=True)

        async def race() -> list[Verdict]:
            return list(
                await asyncio.gather(
                    self._decide(*first, flow, "shown"), self._decide(*second, flow, "shown")
                )
            )

        verdicts = self._run(race())
        assert verdicts.count(Verdict.OK) == 1, (flow, first, second, verdicts)
        winner, loser = (first, verdicts[1]) if verdicts[0] is Verdict.OK else (second, verdicts[0])
        told = Verdict.ALREADY_APPROVED if winner[0] == "approve" else Verdict.ALREADY_DENIED
        assert loser is told, (flow, first, second, verdicts)
        self._apply_decision(flow, *winner)
        event("a race of decisions won by", winner[0])
        self._poll(flow, via, False, 1)

    @precondition(lambda self: DISABLEABLE not in self.disabled)
    @rule()
    def disable(self) -> None:
        """Disable carol: her keys stop working, and an approval she gave that no device
        has redeemed can no longer be redeemed. (Only carol, so that alice and bob keep
        the run issuing keys.) Disabling her again changes nothing.

        Once per run (the precondition, on the model only): Hypothesis orders the rules
        without arguments first and draws the first one often, so without it a run
        spent about a fifth of its steps disabling carol again."""
        assert self._run(self.admin.disable_user(DISABLEABLE)) is True
        self.disabled.add(DISABLEABLE)
        for key in self.all_keys():  # and revokes her keys (issue 17: their issuer is told)
            if key.owner == DISABLEABLE and key.revoked_at is None and not key.purged:
                key.revoked_at = self.clock.now
        assert self._run(self.admin.disable_user(DISABLEABLE)) is False

    # --- rules: keys -----------------------------------------------------------------

    @rule(data=st.data(), via=VIA)
    def authenticate(self, data: st.DataObject, via: str) -> None:
        self._authenticate(self._pick_key(data), via)

    def _authenticate(self, key: Key, via: str) -> None:
        assert self._hot is not None
        hits = self._hot.cache.hits
        outcome = self._run(self._outcome(self.key_services[via].authenticate(key.token)))
        event("authenticate", "accepted" if self.key_works(key) else "refused")
        if self._hot.cache.hits > hits:
            event("authenticate", "answered from the key cache")
        if not self.key_works(key):
            assert isinstance(outcome, InvalidToken), (key, outcome)
            return
        assert not isinstance(outcome, OAuthError), (key, outcome)
        owner = outcome.user
        stored = outcome.key
        assert owner.username == key.owner
        if key.flow.purged:
            # A key remembered by the fast path may still name its purged flow; no answer
            # uses the field, and the stored row says None (checked by the invariant).
            assert stored.device_authorization_id in (None, key.flow.id)
        else:
            assert stored.device_authorization_id == key.flow.id

    @rule(data=st.data(), own_client=st.booleans())
    def revoke(self, data: st.DataObject, own_client: bool) -> None:
        """RFC 7009 by the key's client (once: then it is already revoked), or by another
        client (unauthorized_client); a revoked key never authenticates again."""
        key = self._pick_key(data)
        service = self.key_services["sql"]
        creds = CLI_CREDS if own_client else OTHER_CREDS
        outcome = self._run(self._outcome(service.revoke(creds, key.token)))
        if key.purged:
            assert outcome is False, (key, outcome)
        elif not own_client:
            assert isinstance(outcome, UnauthorizedClient), (key, outcome)
        else:
            assert outcome is (key.revoked_at is None), (key, outcome)
            event("revoke by its client", "revoked" if outcome else "already revoked")
            if key.revoked_at is None:
                key.revoked_at = self.clock.now
        if key.revoked_at is not None or key.purged:
            for via in ("hot", "sql"):
                refused = self._run(self._outcome(self.key_services[via].authenticate(key.token)))
                assert isinstance(refused, InvalidToken), (key, via, refused)

    # --- rules: time and maintenance -------------------------------------------------

    @rule(data=st.data())
    def pass_time(self, data: st.DataObject) -> None:
        """Move the clock: mostly a little (a tick, one interval of a flow), sometimes
        past a flow's ``expires_in``. One rule for all of them, so that long jumps stay
        rare and flows live long enough to be approved and polled."""
        how = data.draw(st.sampled_from(["tick", "interval", "code expiry"]), label="how")
        if how == "tick":
            seconds = data.draw(st.integers(min_value=0, max_value=30), label="seconds")
            self.clock.now += timedelta(seconds=seconds)
            return
        flow = data.draw(st.sampled_from(self.model_flows), label="flow")
        if how == "interval":
            self.clock.now += timedelta(seconds=flow.interval)
        else:
            extra = data.draw(st.integers(min_value=0, max_value=90), label="extra")
            self.clock.advance_to(flow.expires_at + timedelta(seconds=extra))

    @rule()
    def purge(self) -> None:
        self._purge()

    # The boundaries: the second before, of, or after a moment where something ends,
    # and an action on that very thing. Only moments still ahead (or a second behind)
    # are candidates: the clock never goes back.

    @rule(data=st.data())
    def at_a_flow_boundary(self, data: st.DataObject) -> None:
        """A flow's expiry (then review it, poll it on both paths, approve it and poll
        again), or the end of its retention (then purge, and poll it on both paths)."""
        what = data.draw(st.sampled_from(["code expiry", "code retention"]), label="what")
        extra = timedelta(0) if what == "code expiry" else CODE_RETENTION
        reachable = self.clock.now - timedelta(seconds=1)
        flows = [f for f in self.model_flows if not f.purged and f.expires_at + extra >= reachable]
        if not flows:
            return
        flow = data.draw(st.sampled_from(flows), label="flow")
        seconds = data.draw(BOUNDARY, label="offset")
        self.clock.advance_to(flow.expires_at + extra + timedelta(seconds=seconds))
        event("at a boundary", f"{what} {seconds:+d} s")
        if what == "code retention":
            self._purge()
        else:
            self._review(flow, "shown")
        # One poll on each path, each checked against the model.
        self._poll(flow, "hot", False, 1)
        self._poll(flow, "sql", False, 1)
        if what == "code expiry":
            self._decide_alone("approve", data.draw(USER, label="user"), flow, "shown")
            self._poll(flow, data.draw(VIA, label="via"), False, 1)

    @rule(data=st.data())
    def at_a_key_boundary(self, data: st.DataObject) -> None:
        """A key's expiry (then authenticate it on both paths), or the end of its
        retention after expiry or revocation (then purge, and authenticate it)."""
        what = data.draw(st.sampled_from(["key expiry", "key retention"]), label="what")
        extra = timedelta(0) if what == "key expiry" else KEY_RETENTION
        reachable = self.clock.now - timedelta(seconds=1)
        ends: list[tuple[Key, datetime]] = [
            (k, moment + extra)
            for k in self.model_keys
            if not k.purged
            for moment in (
                (k.expires_at,)
                if what == "key expiry" or k.revoked_at is None
                else (k.expires_at, k.revoked_at)
            )
            if moment + extra >= reachable
        ]
        if not ends:
            return
        key, moment = data.draw(st.sampled_from(ends), label="key and moment")
        seconds = data.draw(BOUNDARY, label="offset")
        self.clock.advance_to(moment + timedelta(seconds=seconds))
        event("at a boundary", f"{what} {seconds:+d} s")
        if what == "key retention":
            self._purge()
        self._authenticate(key, "hot")
        self._authenticate(key, "sql")

    def _purge(self) -> None:
        now = self.clock.now
        code_cutoff = now - CODE_RETENTION
        key_cutoff = now - KEY_RETENTION
        gone_flows = [f for f in self.all_flows() if not f.purged and f.expires_at < code_cutoff]
        gone_keys = [
            k
            for k in self.all_keys()
            if not k.purged
            and (
                (k.revoked_at is not None and k.revoked_at < key_cutoff)
                or k.expires_at < key_cutoff
            )
        ]
        report = self._run(self.maintenance.purge_all())
        assert report.complete
        assert report.deleted["device_authorizations"] == len(gone_flows), report
        assert report.deleted["api_keys"] == len(gone_keys), report
        if gone_flows:
            event("purge deleted device authorizations")
        if gone_keys:
            event("purge deleted api keys")
        for flow in gone_flows:
            flow.purged = True
        for key in gone_keys:
            key.purged = True

    # --- invariants ------------------------------------------------------------------

    @invariant()
    def storage_matches_the_model(self) -> None:
        self._run(self._check_storage())

    async def _check_storage(self) -> None:
        assert self._store is not None
        async with self._store.engine.connect() as conn:
            doubles = (
                await conn.execute(
                    text(
                        "SELECT device_authorization_id, count(*) FROM api_keys"
                        " WHERE device_authorization_id IS NOT NULL"
                        " GROUP BY device_authorization_id HAVING count(*) > 1"
                    )
                )
            ).all()
            flow_rows = {
                row.id: row
                for row in await conn.execute(
                    text(
                        "SELECT id, status, interval, last_polled_at, user_id, expires_at,"
                        " approved_at, denied_at, consumed_at FROM device_authorizations"
                    )
                )
            }
            key_rows = {
                bytes(row.key_hash): row
                for row in await conn.execute(
                    text(
                        "SELECT id, key_hash, device_authorization_id, user_id, client_id,"
                        " created_at, expires_at, revoked_at FROM api_keys"
                    )
                )
            }
        assert doubles == [], f"two keys for one device authorization: {doubles}"

        # Device authorizations: exactly the unpurged ones, each as the model says.
        live = {f.id: f for f in self.all_flows() if not f.purged}
        assert set(flow_rows) == set(live), (sorted(flow_rows), sorted(live))
        for flow_id, flow in live.items():
            row = flow_rows[flow_id]
            assert row.status == flow.status, (flow, row)
            assert row.interval == flow.interval, (flow, row)
            assert row.last_polled_at == flow.last_poll, (flow, row)
            assert row.expires_at == flow.expires_at, (flow, row)
            decider = self.user_ids[flow.decided_by] if flow.decided_by else None
            assert row.user_id == decider, (flow, row)
            if flow.status == "consumed":
                # Consumed only after an approval and before expiry.
                assert row.approved_at == flow.decided_at, (flow, row)
                assert row.denied_at is None, (flow, row)
                assert row.approved_at <= row.consumed_at < row.expires_at, (flow, row)
                assert row.consumed_at == flow.consumed_at, (flow, row)
            else:
                assert row.consumed_at is None, (flow, row)

        # API keys: exactly the unpurged keys the model handed out, one per consumed flow.
        live_keys = {self.hasher.api_key(k.token): k for k in self.all_keys() if not k.purged}
        assert set(key_rows) == set(live_keys), "the stored keys are not the ones issued"
        keys_per_flow = Counter(
            row.device_authorization_id
            for row in key_rows.values()
            if row.device_authorization_id is not None
        )
        for flow in live.values():
            expected = int(
                flow.status == "consumed" and flow.key is not None and not flow.key.purged
            )
            assert keys_per_flow[flow.id] == expected, (flow, keys_per_flow[flow.id])
            if flow.status != "consumed":
                assert flow.key is None, flow
        for key_hash, key in live_keys.items():
            row = key_rows[key_hash]
            assert row.device_authorization_id == (None if key.flow.purged else key.flow.id)
            assert row.user_id == self.user_ids[key.owner], key
            assert row.client_id == CLI.client_id, key
            assert row.created_at == key.issued_at == key.flow.consumed_at, key
            assert row.expires_at == key.expires_at, key
            assert row.revoked_at == key.revoked_at, key

    @invariant()
    def revoked_keys_never_authenticate(self) -> None:
        async def check() -> None:
            for key in self.all_keys():
                if key.revoked_at is None:
                    continue
                for service in self.key_services.values():
                    with pytest.raises(InvalidToken):
                        await service.authenticate(key.token)

        self._run(check())


def test_lifecycle_against_the_model(postgres_database: str) -> None:
    class OnTheTestDatabase(LifecycleMachine):
        database_url = postgres_database

    run_state_machine_as_test(
        OnTheTestDatabase,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.filter_too_much,
            ],
            # No example database: every run starts afresh, so what a run does never
            # depends on examples saved by earlier runs (or an earlier version of this
            # machine) in .hypothesis/. A failure prints its steps, and the blob for
            # @reproduce_failure.
            database=None,
            print_blob=True,
        ),
    )
