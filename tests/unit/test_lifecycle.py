"""Lifecycle decisions of a device authorization (devicelink.core.lifecycle), table-driven.

Every RFC 8628 decision is a pure function of the stored record and ``now``; each table
row is one situation a device or a user can be in.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devicelink.core.lifecycle import (
    FlowPolicy,
    Issue,
    KeepWaiting,
    PollDecision,
    Refuse,
    SlowDownTo,
    Verdict,
    decide_consume,
    decide_poll,
    decide_review,
    granted_scope,
    pace_poll,
    parse_scope,
    poll_refusal,
)
from devicelink.core.models import DeviceAuthorization, Status

now = datetime(2026, 11, 29, 12, tzinfo=UTC)
POLICY = FlowPolicy()
CLIENT = "devicelink-cli"
OTHER_CLIENT = "someone-else"

PENDING, APPROVED, DENIED, CONSUMED = (
    Status.PENDING,
    Status.APPROVED,
    Status.DENIED,
    Status.CONSUMED,
)
LIVE = 300  # seconds left before expiry
EXPIRED = -1


def record(
    status: Status = PENDING,
    *,
    expires_in: float = LIVE,
    last_polled_ago: float | None = None,
    interval: int = 5,
    client_id: str = CLIENT,
) -> DeviceAuthorization:
    """A stored authorization as the repository would return it, relative to ``now``."""
    decided = now - timedelta(seconds=30)
    return DeviceAuthorization(
        id=1,
        client_id=client_id,
        scope=("read",),
        status=status,
        created_at=now - timedelta(seconds=POLICY.code_lifetime - expires_in),
        expires_at=now + timedelta(seconds=expires_in),
        interval=interval,
        user_id=None if status is PENDING else 7,
        approved_at=decided if status in (APPROVED, CONSUMED) else None,
        denied_at=decided if status is DENIED else None,
        consumed_at=decided if status is CONSUMED else None,
        last_polled_at=None
        if last_polled_ago is None
        else now - timedelta(seconds=last_polled_ago),
        request_ip="203.0.113.7",
        user_agent="devicelink/0.1",
    )


def answer(decision: PollDecision) -> object:
    """A Refuse as its RFC error code (and nothing else), any other decision as itself."""
    if isinstance(decision, Refuse):
        return decision.error.error
    return decision


def poll(authorization: DeviceAuthorization | None, *, client_id: str = CLIENT) -> object:
    return answer(decide_poll(authorization, client_id=client_id, now=now, policy=POLICY))


# --- decide_poll: the token endpoint (RFC 8628 section 3.5) -------------------------


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(
    ("authorization", "client_id", "expected"),
    [
        # unknown or consumed codes come first
        pytest.param(None, CLIENT, "invalid_grant", id="unknown device code"),
        pytest.param(
            record(CONSUMED),
            CLIENT,
            "invalid_grant",
            id="consumed: the key is never handed out twice",
            marks=pytest.mark.defect(1),
        ),
        pytest.param(
            record(CONSUMED, expires_in=EXPIRED), CLIENT, "invalid_grant", id="consumed and expired"
        ),
        pytest.param(
            record(CONSUMED, last_polled_ago=1), CLIENT, "invalid_grant", id="consumed, polled fast"
        ),
        # then the client the code was issued to
        pytest.param(record(PENDING), OTHER_CLIENT, "invalid_grant", id="pending, other client"),
        pytest.param(
            record(APPROVED),
            OTHER_CLIENT,
            "invalid_grant",
            id="approved, other client gets nothing",
        ),
        pytest.param(
            record(PENDING, expires_in=EXPIRED),
            OTHER_CLIENT,
            "invalid_grant",
            id="expired, other client",
        ),
        # then expiry, whatever the status
        pytest.param(record(PENDING, expires_in=EXPIRED), CLIENT, "expired_token", id="expired"),
        pytest.param(
            record(PENDING, expires_in=0), CLIENT, "expired_token", id="expired at expires_at"
        ),
        pytest.param(
            record(PENDING, expires_in=EXPIRED, last_polled_ago=1),
            CLIENT,
            "expired_token",
            id="expired and polled too fast",
            marks=pytest.mark.defect(8),
        ),
        pytest.param(
            record(APPROVED, expires_in=EXPIRED), CLIENT, "expired_token", id="approved too late"
        ),
        pytest.param(
            record(DENIED, expires_in=EXPIRED), CLIENT, "expired_token", id="denied and expired"
        ),
        # then the user's decision
        pytest.param(record(DENIED), CLIENT, "access_denied", id="denied"),
        pytest.param(
            record(DENIED, last_polled_ago=1),
            CLIENT,
            "access_denied",
            id="denied and polled too fast",
            marks=pytest.mark.defect(8),
        ),
        pytest.param(record(APPROVED), CLIENT, Issue(), id="approved"),
        pytest.param(
            record(APPROVED, last_polled_ago=1),
            CLIENT,
            Issue(),
            id="approved and polled too fast",
            marks=pytest.mark.defect(8),
        ),
        pytest.param(record(APPROVED, expires_in=1), CLIENT, Issue(), id="approved, 1 s left"),
        # and only then the polling pace
        pytest.param(record(PENDING), CLIENT, KeepWaiting(5), id="pending, first poll"),
        pytest.param(
            record(PENDING, expires_in=1), CLIENT, KeepWaiting(5), id="pending, 1 s before expiry"
        ),
        pytest.param(
            record(PENDING, last_polled_ago=5), CLIENT, KeepWaiting(5), id="pending, exactly 5 s"
        ),
        pytest.param(
            record(PENDING, last_polled_ago=30), CLIENT, KeepWaiting(5), id="pending, slow poller"
        ),
        pytest.param(
            record(PENDING, last_polled_ago=4.999),
            CLIENT,
            SlowDownTo(10),
            id="pending, just under 5 s",
        ),
        pytest.param(
            record(PENDING, last_polled_ago=0), CLIENT, SlowDownTo(10), id="pending, same instant"
        ),
        pytest.param(
            record(PENDING, last_polled_ago=-2),
            CLIENT,
            SlowDownTo(10),
            id="pending, last poll in the future (clock skew)",
        ),
        pytest.param(
            record(PENDING, interval=10, last_polled_ago=7),
            CLIENT,
            SlowDownTo(15),
            id="stored interval 10 is honoured, not the default 5",
        ),
        pytest.param(
            record(PENDING, interval=10, last_polled_ago=10),
            CLIENT,
            KeepWaiting(10),
            id="stored interval 10, waited 10 s",
        ),
        pytest.param(
            record(PENDING, interval=55, last_polled_ago=1),
            CLIENT,
            SlowDownTo(60),
            id="55 + 5 reaches the cap",
        ),
        pytest.param(
            record(PENDING, interval=58, last_polled_ago=1),
            CLIENT,
            SlowDownTo(60),
            id="58 + 5 is capped at 60",
        ),
        pytest.param(
            record(PENDING, interval=60, last_polled_ago=1),
            CLIENT,
            SlowDownTo(60),
            id="already at the cap stays at 60",
        ),
    ],
)
def test_decide_poll(
    authorization: DeviceAuthorization | None, client_id: str, expected: object
) -> None:
    assert poll(authorization, client_id=client_id) == expected


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.defect(8)
@pytest.mark.parametrize(
    ("status", "expires_in", "expected"),
    [
        pytest.param(PENDING, EXPIRED, "expired_token", id="expired"),
        pytest.param(APPROVED, EXPIRED, "expired_token", id="approved but expired"),
        pytest.param(DENIED, EXPIRED, "expired_token", id="denied and expired"),
        pytest.param(DENIED, LIVE, "access_denied", id="denied"),
        pytest.param(APPROVED, LIVE, Issue(), id="approved"),
    ],
)
@pytest.mark.parametrize("last_polled_ago", [0, 1, 4], ids=lambda s: f"polled {s}s ago")
def test_defect_8_slow_down_never_hides_expiry_or_approval(
    status: Status, expires_in: float, expected: object, last_polled_ago: float
) -> None:
    # The same pace on a live pending code is too fast: it would get slow_down ...
    assert poll(record(PENDING, last_polled_ago=last_polled_ago)) == SlowDownTo(10)
    # ... but a final answer must still reach the fast client.
    assert poll(record(status, expires_in=expires_in, last_polled_ago=last_polled_ago)) == expected


@pytest.mark.rfc("8628", "3.5")
@settings(database=None)
@given(
    interval=st.integers(min_value=1, max_value=60),
    seconds_left=st.integers(min_value=1, max_value=600),
)
def test_first_poll_never_gets_slow_down(interval: int, seconds_left: int) -> None:
    authorization = record(PENDING, interval=interval, expires_in=seconds_left)
    assert poll(authorization) == KeepWaiting(interval)


@pytest.mark.rfc("8628", "3.5")
@settings(database=None)
@given(
    interval=st.integers(min_value=1, max_value=60),
    elapsed_ms=st.integers(min_value=0, max_value=70_000),
)
def test_slow_down_adds_5_seconds_up_to_60_and_never_lowers_the_interval(
    interval: int, elapsed_ms: int
) -> None:
    decision = poll(record(PENDING, interval=interval, last_polled_ago=elapsed_ms / 1000))
    if elapsed_ms < interval * 1000:
        assert decision == SlowDownTo(min(interval + 5, 60))
    else:
        assert decision == KeepWaiting(interval)


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(
    ("policy", "interval", "expected"),
    [
        pytest.param(FlowPolicy(slow_down_step=10), 5, SlowDownTo(15), id="step 10"),
        pytest.param(FlowPolicy(max_interval=30), 28, SlowDownTo(30), id="cap 30"),
        pytest.param(FlowPolicy(interval=2, max_interval=8), 5, SlowDownTo(8), id="cap 8"),
    ],
)
def test_slow_down_follows_the_policy(policy: FlowPolicy, interval: int, expected: object) -> None:
    authorization = record(PENDING, interval=interval, last_polled_ago=1)
    decision = decide_poll(authorization, client_id=CLIENT, now=now, policy=policy)
    assert decision == expected


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="invalid_grant"),
        pytest.param(record(DENIED), id="access_denied"),
        pytest.param(record(PENDING, expires_in=EXPIRED), id="expired_token"),
    ],
)
def test_refusals_carry_an_answerable_oauth_error(
    authorization: DeviceAuthorization | None,
) -> None:
    decision = decide_poll(authorization, client_id=CLIENT, now=now, policy=POLICY)
    assert isinstance(decision, Refuse)
    assert decision.error.status_code == 400
    assert set(decision.error.body()) == {"error", "error_description"}


@pytest.mark.rfc("8628", "3.5")
@settings(database=None)
@given(
    status=st.sampled_from(list(Status)),
    client_id=st.sampled_from([CLIENT, OTHER_CLIENT]),
    expires_in=st.integers(min_value=-3, max_value=3),
    last_polled_ago=st.one_of(st.none(), st.integers(min_value=0, max_value=12)),
    interval=st.integers(min_value=1, max_value=60),
)
def test_a_poll_is_paced_exactly_when_no_refusal_applies_and_the_code_is_pending(
    status: Status,
    client_id: str,
    expires_in: int,
    last_polled_ago: int | None,
    interval: int,
) -> None:
    """The condition the one-statement poll (storage/fast_path/statements.py, POLL)
    records a poll on, stated through core's own pieces."""
    authorization = record(
        status, expires_in=expires_in, last_polled_ago=last_polled_ago, interval=interval
    )
    decision = decide_poll(authorization, client_id=client_id, now=now, policy=POLICY)
    refusal = poll_refusal(authorization, client_id=client_id, now=now)
    paced = refusal is None and status is PENDING
    assert isinstance(decision, KeepWaiting | SlowDownTo) == paced
    if paced:
        assert decision == pace_poll(authorization, now=now, policy=POLICY)
    elif refusal is not None:
        assert isinstance(decision, Refuse)
        assert decision.error.body() == refusal.body()
    else:
        assert decision == Issue()


# --- decide_review: the verification page (RFC 8628 section 3.3) --------------------


@pytest.mark.rfc("8628", "3.3")
@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        pytest.param(None, Verdict.UNKNOWN, id="unknown code"),
        pytest.param(record(CONSUMED), Verdict.ALREADY_USED, id="consumed"),
        pytest.param(
            record(CONSUMED, expires_in=EXPIRED), Verdict.ALREADY_USED, id="consumed and expired"
        ),
        pytest.param(record(PENDING, expires_in=EXPIRED), Verdict.EXPIRED, id="pending, expired"),
        pytest.param(record(PENDING, expires_in=0), Verdict.EXPIRED, id="pending, at expires_at"),
        pytest.param(record(APPROVED, expires_in=EXPIRED), Verdict.EXPIRED, id="approved, expired"),
        pytest.param(record(DENIED, expires_in=EXPIRED), Verdict.EXPIRED, id="denied, expired"),
        pytest.param(record(APPROVED), Verdict.ALREADY_APPROVED, id="approved"),
        pytest.param(record(DENIED), Verdict.ALREADY_DENIED, id="denied"),
        pytest.param(record(PENDING), Verdict.OK, id="pending"),
        pytest.param(record(PENDING, expires_in=1), Verdict.OK, id="pending, 1 s left"),
        pytest.param(record(PENDING, last_polled_ago=0), Verdict.OK, id="pending, just polled"),
    ],
)
def test_decide_review(authorization: DeviceAuthorization | None, expected: Verdict) -> None:
    assert decide_review(authorization, now=now) is expected


# --- decide_consume: the one poll that receives the key -----------------------------


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        pytest.param(record(APPROVED), True, id="approved"),
        pytest.param(record(APPROVED, expires_in=1), True, id="approved, 1 s left"),
        pytest.param(record(APPROVED, expires_in=0), False, id="approved, at expires_at"),
        pytest.param(record(APPROVED, expires_in=EXPIRED), False, id="approved, expired"),
        pytest.param(record(PENDING), False, id="pending"),
        pytest.param(record(DENIED), False, id="denied"),
        pytest.param(
            record(CONSUMED), False, id="consumed: never twice", marks=pytest.mark.defect(1)
        ),
    ],
)
def test_decide_consume(authorization: DeviceAuthorization, expected: bool) -> None:
    assert decide_consume(authorization, now=now) is expected


# --- scopes (RFC 6749 section 3.3) ---------------------------------------------------


@pytest.mark.rfc("6749", "3.3")
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty counts as absent (RFC 8628 3.1)"),
        pytest.param("   ", None, id="blank counts as absent"),
        pytest.param("read", ("read",), id="one scope"),
        pytest.param("write read", ("read", "write"), id="sorted"),
        pytest.param("read write read", ("read", "write"), id="de-duplicated"),
        pytest.param(
            "https://api.example.com/x api:read",
            ("api:read", "https://api.example.com/x"),
            id="punctuation",
        ),
        pytest.param("! ~ #[ ]", ("!", "#[", "]", "~"), id="edges of the token charset"),
    ],
)
def test_parse_scope(raw: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_scope(raw) == expected


@pytest.mark.rfc("6749", "3.3")
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("read  write", id="two spaces"),
        pytest.param(" read", id="leading space"),
        pytest.param("read ", id="trailing space"),
        pytest.param("read\twrite", id="tab"),
        pytest.param("read\nwrite", id="newline"),
        pytest.param('re"ad', id="double quote"),
        pytest.param("re\\ad", id="backslash"),
        pytest.param("r\u00e9ad", id="non-ASCII"),
        pytest.param("read\x00", id="control character"),
        pytest.param("read\x7f", id="DEL"),
    ],
)
def test_parse_scope_rejects_malformed_scope(raw: str) -> None:
    with pytest.raises(ValueError, match="malformed scope"):
        parse_scope(raw)


@pytest.mark.rfc("6749", "3.3")
@pytest.mark.parametrize(
    ("requested", "allowed", "expected"),
    [
        pytest.param(None, ("read", "write"), ("read", "write"), id="absent gets all allowed"),
        pytest.param(None, (), (), id="absent, client has no scopes"),
        pytest.param(("read",), ("read", "write"), ("read",), id="subset"),
        pytest.param(("read", "write"), ("read", "write"), ("read", "write"), id="all"),
        pytest.param(("admin",), ("read", "write"), ValueError, id="not allowed"),
        pytest.param(("read", "admin"), ("read", "write"), ValueError, id="partly allowed"),
        pytest.param(("read",), (), ValueError, id="client has no scopes"),
    ],
)
def test_granted_scope(
    requested: tuple[str, ...] | None,
    allowed: tuple[str, ...],
    expected: tuple[str, ...] | type[Exception],
) -> None:
    if isinstance(expected, type):
        with pytest.raises(expected, match="scope not allowed"):
            granted_scope(requested, allowed)
    else:
        assert granted_scope(requested, allowed) == expected


# --- FlowPolicy ------------------------------------------------------------------------


@pytest.mark.rfc("8628", "3.2")
def test_flow_policy_defaults_follow_the_design_and_the_rfc() -> None:
    policy = FlowPolicy()
    assert policy.code_lifetime == 600
    assert policy.interval == 5  # section 3.2: 5 s when absent
    assert policy.slow_down_step == 5  # section 3.5: "increased by 5 seconds"
    assert policy.max_interval == 60
    assert policy.expires_at(now) == datetime(2026, 11, 29, 12, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"code_lifetime": 60}, id="shortest lifetime"),
        pytest.param({"code_lifetime": 86_400}, id="longest lifetime"),
        pytest.param({"interval": 1}, id="shortest interval"),
        pytest.param({"interval": 60}, id="interval equal to the cap"),
        pytest.param({"interval": 10, "max_interval": 10}, id="custom cap"),
        pytest.param({"slow_down_step": 1}, id="smallest step"),
    ],
)
def test_flow_policy_accepts_valid_values(fields: dict[str, int]) -> None:
    policy = FlowPolicy(**fields)
    for name, value in fields.items():
        assert getattr(policy, name) == value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"code_lifetime": 59}, "code_lifetime", id="lifetime too short"),
        pytest.param({"code_lifetime": 86_401}, "code_lifetime", id="lifetime too long"),
        pytest.param({"code_lifetime": -600}, "code_lifetime", id="negative lifetime"),
        pytest.param({"interval": 0}, "interval", id="zero interval"),
        pytest.param({"interval": -5}, "interval", id="negative interval"),
        pytest.param({"interval": 61}, "interval", id="interval above the cap"),
        pytest.param({"interval": 20, "max_interval": 10}, "interval", id="cap below interval"),
        pytest.param({"slow_down_step": 0}, "slow_down_step", id="zero step"),
        pytest.param({"slow_down_step": -5}, "slow_down_step", id="negative step"),
    ],
)
def test_flow_policy_rejects_invalid_values(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowPolicy(**fields)


def test_flow_policy_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.interval = 1  # type: ignore[misc]
