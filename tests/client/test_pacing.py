"""When the client sends, stepped with a fake clock: the polling interval and slow_down
(RFC 8628 section 3.5), retries of transient failures, the code's lifetime, and the
latency jitter that must never earn a slow_down."""

from __future__ import annotations

import random
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from devicelink.client import errors
from devicelink.client.messages import Token
from devicelink.client.pacing import ATTEMPTS_WITHOUT_CODE, MAX_RETRY_AFTER, slowed_down

from .scripted import (
    DEVICE_CODE,
    KEY,
    LOST,
    METADATA_PATH,
    PENDING,
    SLOW_DOWN,
    WALL,
    Answer,
    Clock,
    M,
    ScriptedServer,
    Transcript,
    authorization,
    busy,
    granted,
    html,
    login,
    metadata,
    oauth,
    ok,
)

# --- polling: RFC 8628 section 3.5 ---------------------------------------------------------

W = 5 + M  # the first wait between polls, interval 5


POLLING = [
    pytest.param(
        [PENDING, PENDING, granted()],
        [(W, "interval")] * 3,
        id="pending-pending-approved",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [SLOW_DOWN, SLOW_DOWN, granted()],
        [(W, "interval"), (10 + M, "slow_down"), (15 + M, "slow_down")],
        id="slow_down-without-interval-grows-5-10-15",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [oauth("slow_down", interval=10), oauth("slow_down", interval=15), granted()],
        [(W, "interval"), (10 + M, "slow_down"), (15 + M, "slow_down")],
        id="slow_down-with-interval-grows-5-10-15",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [oauth("slow_down", interval=30), granted()],
        [(W, "interval"), (30 + M, "slow_down")],
        id="slow_down-adopts-a-larger-server-interval",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [oauth("slow_down", interval=6), oauth("slow_down", interval="soon"), granted()],
        [(W, "interval"), (10 + M, "slow_down"), (15 + M, "slow_down")],
        id="slow_down-adds-at-least-5s-whatever-the-body-says",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [SLOW_DOWN, PENDING, PENDING, granted()],
        [(W, "interval"), (10 + M, "slow_down"), (10 + M, "interval"), (10 + M, "interval")],
        id="slow_down-holds-for-all-subsequent-polls",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [PENDING, busy(429, "7"), granted()],
        [(W, "interval"), (W, "interval"), (7, "retry_after")],
        id="429-retry-after-seconds",
    ),
    pytest.param(
        [busy(503, "30"), granted()],
        [(W, "interval"), (30, "retry_after")],
        id="503-retry-after-seconds",
    ),
    pytest.param(
        [busy(503, "1"), granted()],
        [(W, "interval"), (W, "retry_after")],
        id="503-retry-after-shorter-than-the-interval-waits-the-interval",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [busy(503, "86400"), granted()],
        [(W, "interval"), (MAX_RETRY_AFTER, "retry_after")],
        id="503-retry-after-is-bounded",
    ),
    pytest.param(
        [
            busy(
                503,
                format_datetime(WALL + timedelta(seconds=20), usegmt=True),
                Date=format_datetime(WALL, usegmt=True),
            ),
            granted(),
        ],
        [(W, "interval"), (20, "retry_after")],
        id="503-retry-after-http-date-against-the-response-date",
    ),
    pytest.param(
        [
            busy(
                503,
                format_datetime(WALL + timedelta(hours=1, seconds=20), usegmt=True),
                Date=format_datetime(WALL + timedelta(hours=1), usegmt=True),
            ),
            granted(),
        ],
        [(W, "interval"), (20, "retry_after")],
        id="503-retry-after-http-date-with-a-wrong-local-clock",
    ),
    pytest.param(
        [busy(429, format_datetime(WALL + timedelta(seconds=12), usegmt=True)), granted()],
        [(W, "interval"), (12, "retry_after")],
        id="429-retry-after-http-date-without-date-header",
    ),
    pytest.param(
        [busy(429, "tomorrow-ish"), granted()],
        [(W, "interval"), (W, "backoff")],
        id="429-unreadable-retry-after-backs-off",
    ),
    pytest.param(
        [busy(503), busy(503), busy(503), busy(503), busy(503), granted()],
        [(W, "interval"), *[(W, "backoff")] * 3, (8, "backoff"), (16, "backoff")],
        id="503-without-retry-after-backs-off-exponentially",
    ),
    pytest.param(
        [html(502), html(500), granted()],
        [(W, "interval"), (W, "backoff"), (W, "backoff")],
        id="5xx-without-oauth-json-backs-off",
    ),
    pytest.param(
        [PENDING, LOST, granted()],
        [(W, "interval"), (W, "interval"), (W, "backoff")],
        id="connection-lost-mid-flow-then-success",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [LOST] * 7 + [granted()],
        [
            (W, "interval"),
            *[(W, "backoff")] * 3,
            (8, "backoff"),
            (16, "backoff"),
            *[(30, "backoff")] * 2,
        ],
        id="connection-lost-repeatedly-backs-off-to-30s",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
    pytest.param(
        [oauth("slow_down", interval=60), LOST, granted()],
        [(W, "interval"), (60 + M, "slow_down"), (60 + M, "backoff")],
        id="connection-backoff-never-below-the-polling-interval",
        marks=pytest.mark.rfc("8628", "3.5"),
    ),
]


@pytest.mark.parametrize(("answers", "waits"), POLLING)
def test_polling_paces_itself_and_ends_with_the_token(
    answers: list[Answer], waits: list[tuple[float, str]]
) -> None:
    seen = login(ScriptedServer(token=answers))

    assert seen.waits() == [(round(s, 3), r) for s, r in waits]
    assert isinstance(seen.result, Token)
    assert seen.result.access_token == KEY
    # The flow is never lost: every poll, retries included, carries the one device code.
    assert {p["device_code"][0] for p in seen.polls} == {DEVICE_CODE}
    assert len(seen.polls) == len(answers)


# --- expiry ----------------------------------------------------------------------------------


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(
    ("answers", "expires_in", "message"),
    [
        pytest.param([PENDING], 20, "expired before", id="always-pending"),
        pytest.param([SLOW_DOWN], 40, "expired before", id="slowed-down-past-the-deadline"),
        pytest.param([PENDING, LOST], 30, "could not be reached", id="server-gone-until-expiry"),
        pytest.param([busy(503, "120")], 60, "could not be reached", id="busy-until-expiry"),
    ],
)
def test_the_client_gives_up_at_expires_in_without_sleeping_past_it(
    answers: list[Answer], expires_in: int, message: str
) -> None:
    clock = Clock()
    start = clock()
    server = ScriptedServer(authorize=[ok(authorization(expires_in=expires_in))], token=answers)
    seen = Transcript()
    with pytest.raises(errors.LoginExpired, match=message):
        login(server, clock, seen)

    assert clock() == pytest.approx(start + expires_in)  # waited to the end, not past it
    assert all(s.seconds <= s.remaining for s in seen.sleeps if s.remaining is not None)
    last = seen.sleeps[-1]
    assert last.seconds == pytest.approx(last.remaining)  # cut short to end at the deadline


def test_expiry_counts_from_when_the_authorization_request_was_sent() -> None:
    clock = Clock()
    start = clock()

    def slow_authorization(request: httpx.Request) -> httpx.Response:
        clock.advance(2)  # the answer takes 2 s to come back
        return ok(authorization(expires_in=20))

    with pytest.raises(errors.LoginExpired):
        login(ScriptedServer(authorize=[slow_authorization], token=[PENDING]), clock)
    assert clock() == pytest.approx(start + 20)


# --- latency jitter ----------------------------------------------------------------------


class ArrivalTimedServer:
    """A token endpoint applying RFC 8628 section 3.5 as servers do: a poll that
    *arrives* less than ``interval`` after the previous one gets ``slow_down`` and raises
    the interval by 5 s. Each request and each answer takes a random latency; each server
    process may read a clock that is off by ``skews[i]`` (processes take turns)."""

    def __init__(
        self, clock: Clock, rng: random.Random, *, max_latency: float, skews: tuple[float, ...]
    ) -> None:
        self.clock, self.rng, self.max_latency, self.skews = clock, rng, max_latency, skews
        self.interval = 5.0
        self.last_arrival: float | None = None
        self.answers: list[str] = []

    def arrival(self) -> float:
        process = len(self.answers) % len(self.skews)
        return self.clock() + self.skews[process]

    def poll(self, polls_left: int) -> httpx.Response:
        self.clock.advance(self.rng.uniform(0, self.max_latency))  # on the way in
        now = self.arrival()
        if self.last_arrival is not None and now - self.last_arrival < self.interval:
            self.interval += 5
            answer = oauth("slow_down", interval=int(self.interval))
        elif polls_left == 0:
            answer = granted()
        else:
            answer = PENDING
        self.last_arrival = now
        self.answers.append(answer.json().get("error", "granted"))
        self.clock.advance(self.rng.uniform(0, self.max_latency))  # on the way back
        return answer


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(
    "skews",
    [
        pytest.param((0.0,), id="one-server-process"),
        pytest.param((0.0, 0.1, -0.1), id="three-processes-clocks-200ms-apart"),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_compliant_client_never_gets_slow_down_from_latency_jitter(
    seed: int, skews: tuple[float, ...]
) -> None:
    clock = Clock()
    fake = ArrivalTimedServer(clock, random.Random(seed), max_latency=0.3, skews=skews)
    polls = 300
    counter = iter(range(polls - 1, -1, -1))
    server = ScriptedServer(
        authorize=[ok(authorization(expires_in=100_000))],
        token=[lambda request: fake.poll(next(counter))],
    )
    seen = login(server, clock)

    assert isinstance(seen.result, Token)
    assert len(fake.answers) == polls
    assert "slow_down" not in fake.answers


def test_the_jitter_simulation_does_catch_a_client_polling_on_a_fixed_cadence() -> None:
    """The server above is strict enough to matter: a client that schedules each poll
    ``interval`` after its previous *send* (not after the answer) gets slow_down."""
    clock = Clock()
    fake = ArrivalTimedServer(clock, random.Random(1), max_latency=0.3, skews=(0.0,))
    next_send = clock()
    for _ in range(300):
        clock.advance(max(0.0, next_send - clock()))
        sent = clock()
        fake.poll(polls_left=1)
        next_send = sent + fake.interval
    assert "slow_down" in fake.answers


@pytest.mark.parametrize(
    ("answers", "waits"),
    [
        pytest.param([LOST, ok(metadata())], [(1, "backoff")], id="lost-once"),
        pytest.param([busy(503), ok(metadata())], [(1, "backoff")], id="503-once"),
        pytest.param([busy(429, "10"), ok(metadata())], [(10, "retry_after")], id="429-once"),
    ],
)
def test_discovery_retries_transient_failures(
    answers: list[Answer], waits: list[tuple[float, str]]
) -> None:
    seen = login(ScriptedServer(metadata=answers, token=[granted()]))
    assert isinstance(seen.result, Token)
    assert seen.waits(after_code=False) == waits


@pytest.mark.parametrize(
    ("stage", "answer", "status"),
    [
        pytest.param("metadata", LOST, None, id="discovery-connection-lost"),
        pytest.param("authorize", LOST, None, id="authorization-connection-lost"),
        pytest.param("authorize", busy(503), 503, id="authorization-503"),
        pytest.param("authorize", busy(429, "5"), 429, id="authorization-rate-limited"),
    ],
)
def test_before_a_code_exists_repeated_failures_are_server_unreachable(
    stage: str, answer: Answer, status: int | None
) -> None:
    seen = Transcript()
    with pytest.raises(errors.ServerUnreachable) as raised:
        login(ScriptedServer(**{stage: [answer]}), transcript=seen)

    assert raised.value.status_code == status
    assert not seen.codes
    failed = [r for r in seen.requests if r.url.path != METADATA_PATH or stage == "metadata"]
    assert len(failed) == ATTEMPTS_WITHOUT_CODE
    if status != 429:
        assert [s.seconds for s in seen.sleeps] == [1, 2, 4]


@pytest.mark.parametrize(
    ("interval", "body", "expected"),
    [
        pytest.param(5, None, 10, id="no-body-interval"),
        pytest.param(5, 10, 10, id="body-says-plus-5"),
        pytest.param(5, 30, 30, id="body-larger"),
        pytest.param(20, 10, 25, id="body-smaller"),
        pytest.param(5, True, 10, id="body-bool"),
        pytest.param(5, "60", 10, id="body-string"),
    ],
)
@pytest.mark.rfc("8628", "3.5")
def test_slowed_down(interval: float, body: object, expected: float) -> None:
    assert slowed_down(interval, body) == expected
