"""The sans-IO device flow, stepped through scripted server answers: no network, a fake
clock, every answer an ``httpx.Response`` built here (RFC 8628 sections 3.1-3.5, RFC 8414,
RFC 7009)."""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeAlias
from urllib.parse import parse_qs

import httpx
import pytest

from devicelink.client import errors
from devicelink.client.flow import (
    ATTEMPTS_WITHOUT_CODE,
    DEVICE_CODE_GRANT,
    MAX_RETRY_AFTER,
    POLL_MARGIN,
    CodeIssued,
    ConnectionLost,
    DeviceAuthorization,
    Endpoints,
    Send,
    Sleep,
    Token,
    device_flow,
    discover,
    metadata_urls,
    revoke_flow,
    slowed_down,
    whoami_flow,
)

SERVER = "https://login.example.com"
METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/oauth/device/authorize"
TOKEN_PATH = "/oauth/device/token"
REVOKE_PATH = "/oauth/revoke"
DEVICE_CODE = "d" * 43
KEY = "dlk_secret_abc123"
M = POLL_MARGIN  # what the client adds to every wait between polls


def metadata(issuer: str = SERVER, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "issuer": issuer,
        "device_authorization_endpoint": f"{issuer}{AUTHORIZE_PATH}",
        "token_endpoint": f"{issuer}{TOKEN_PATH}",
        "revocation_endpoint": f"{issuer}{REVOKE_PATH}",
        "grant_types_supported": [DEVICE_CODE_GRANT],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def authorization(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_code": DEVICE_CODE,
        "user_code": "WDJB-MJHT",
        "verification_uri": f"{SERVER}/oauth/device/verify",
        "verification_uri_complete": f"{SERVER}/oauth/device/verify?user_code=WDJB-MJHT",
        "expires_in": 600,
        "interval": 5,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# --- answers -----------------------------------------------------------------------------


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body, headers={"Cache-Control": "no-store"})


def oauth(error: str, status: int = 400, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": error, **extra})


def granted(**changes: Any) -> httpx.Response:
    body = {"access_token": KEY, "token_type": "Bearer", "expires_in": 2_592_000, "scope": "api"}
    body.update(changes)
    return ok({k: v for k, v in body.items() if v is not None})


def busy(status: int, retry_after: str | None = None, **headers: str) -> httpx.Response:
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return httpx.Response(status, json={"error": "temporarily_unavailable"}, headers=headers)


def html(status: int) -> httpx.Response:
    return httpx.Response(
        status, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}
    )


PENDING = oauth("authorization_pending")
SLOW_DOWN = oauth("slow_down")
LOST = ConnectionLost("ConnectError: connection refused")

Answer: TypeAlias = httpx.Response | ConnectionLost | Callable[[httpx.Request], httpx.Response]


# --- a fake clock, a scripted server and a stepping driver ----------------------------------


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        assert seconds >= 0, seconds
        self.now += seconds


WALL = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


class ScriptedServer:
    """Answers by path, in order; the last answer of a path repeats."""

    def __init__(self, **script: list[Answer]) -> None:
        self.script: dict[str, list[Answer]] = {
            METADATA_PATH: [ok(metadata())],
            AUTHORIZE_PATH: [ok(authorization())],
        }
        paths = {"metadata": METADATA_PATH, "authorize": AUTHORIZE_PATH, "token": TOKEN_PATH}
        paths |= {"revoke": REVOKE_PATH, "me": "/api/me"}
        for name, answers in script.items():
            self.script[paths.get(name, name)] = list(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response | ConnectionLost:
        answers = self.script.get(request.url.path)
        assert answers, f"unexpected {request.method} {request.url}"
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request) if callable(answer) else answer


@dataclass
class Transcript:
    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[Sleep] = field(default_factory=list)
    codes: list[DeviceAuthorization] = field(default_factory=list)
    result: Any = None

    @property
    def polls(self) -> list[dict[str, list[str]]]:
        return [form(r) for r in self.requests if r.url.path == TOKEN_PATH]

    def waits(self, *, after_code: bool = True) -> list[tuple[float, str]]:
        chosen = [s for s in self.sleeps if (s.remaining is not None) == after_code]
        return [(round(s.seconds, 3), s.reason) for s in chosen]


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


def drive(
    flow: Generator[Any, Any, Any],
    answer: Callable[[httpx.Request], httpx.Response | ConnectionLost],
    clock: Clock,
    transcript: Transcript | None = None,
) -> Transcript:
    """Step ``flow`` like a driver would: Sleep moves the clock, Send asks ``answer``."""
    seen = transcript if transcript is not None else Transcript()
    try:
        command = next(flow)
        while True:
            reply: Any = None
            if isinstance(command, Send):
                seen.requests.append(command.request)
                reply = answer(command.request)
            elif isinstance(command, Sleep):
                seen.sleeps.append(command)
                clock.advance(command.seconds)
            elif isinstance(command, CodeIssued):
                seen.codes.append(command.authorization)
            command = flow.send(reply)
    except StopIteration as done:
        seen.result = done.value
    return seen


def login(
    server: Callable[[httpx.Request], httpx.Response | ConnectionLost],
    clock: Clock | None = None,
    transcript: Transcript | None = None,
    **options: Any,
) -> Transcript:
    clock = clock or Clock()
    flow = device_flow(
        options.pop("server_url", SERVER),
        options.pop("client_id", "devicelink-cli"),
        clock=clock,
        wall_clock=lambda: WALL.timestamp(),
        **options,
    )
    return drive(flow, server, clock, transcript)


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
        [(W, "interval"), (W, "backoff"), (W, "backoff"), (W, "backoff"), (8, "backoff")]
        + [(16, "backoff")],
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
        [(W, "interval"), (W, "backoff"), (W, "backoff"), (W, "backoff"), (8, "backoff")]
        + [(16, "backoff"), (30, "backoff"), (30, "backoff")],
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
def test_polling_paces_itself_and_ends_with_the_token(answers, waits):
    seen = login(ScriptedServer(token=answers))

    assert seen.waits() == [(round(s, 3), r) for s, r in waits]
    assert isinstance(seen.result, Token)
    assert seen.result.access_token == KEY
    # The flow is never lost: every poll, retries included, carries the one device code.
    assert {p["device_code"][0] for p in seen.polls} == {DEVICE_CODE}
    assert len(seen.polls) == len(answers)


REFUSALS = [
    pytest.param(oauth("access_denied"), errors.AccessDenied, id="denied"),
    pytest.param(oauth("expired_token"), errors.ExpiredToken, id="server-expired_token"),
    pytest.param(oauth("invalid_grant"), errors.InvalidGrant, id="invalid_grant"),
    pytest.param(
        oauth("invalid_client", 401, error_description="unknown client"),
        errors.InvalidClient,
        id="invalid_client",
    ),
    pytest.param(oauth("unsupported_grant_type"), errors.ServerRejected, id="other-oauth-error"),
    pytest.param(oauth("invalid_request", 400), errors.ServerRejected, id="invalid_request"),
    pytest.param(httpx.Response(404, text="nope"), errors.ServerRejected, id="404-not-json"),
    pytest.param(httpx.Response(400, json=["x"]), errors.ServerRejected, id="400-json-not-oauth"),
    pytest.param(granted(token_type="mac"), errors.ServerRejected, id="200-not-bearer"),
    pytest.param(granted(access_token=None), errors.ServerRejected, id="200-without-token"),
    pytest.param(granted(access_token=""), errors.ServerRejected, id="200-empty-token"),
    pytest.param(granted(expires_in="never"), errors.ServerRejected, id="200-bad-expires_in"),
    pytest.param(httpx.Response(200, text="ok"), errors.ServerRejected, id="200-not-json"),
]


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(("answer", "kind"), REFUSALS)
def test_any_other_answer_stops_the_polling(answer, kind):
    seen = Transcript()
    with pytest.raises(kind) as raised:
        login(ScriptedServer(token=[PENDING, answer]), transcript=seen)

    assert len(seen.polls) == 2  # no further poll after the refusal
    assert isinstance(raised.value, errors.DeviceFlowError)
    assert str(raised.value)  # a message for the user


def test_errors_carry_the_oauth_code_and_a_cleaned_description():
    answer = oauth("invalid_scope", error_description="no \x1b[31mway\x1b[0m")
    with pytest.raises(errors.ServerRejected) as raised:
        login(ScriptedServer(token=[answer]))
    assert raised.value.error == "invalid_scope"
    assert raised.value.status_code == 400
    assert "\x1b" not in str(raised.value)
    assert "invalid_scope" in str(raised.value)


@pytest.mark.rfc("6749", "5.1")
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(
            granted(token_type="bearer"), ("Bearer", 2_592_000, "api"), id="bearer-any-case"
        ),
        pytest.param(
            granted(expires_in=None, scope=None), ("Bearer", None, None), id="key-never-expires"
        ),
    ],
)
def test_the_token_response_is_read(answer, expected):
    seen = login(ScriptedServer(token=[answer]))
    token = seen.result
    assert (token.token_type, token.expires_in, token.scope) == expected
    assert token.server == SERVER
    assert token.endpoints.token_endpoint == f"{SERVER}{TOKEN_PATH}"
    assert KEY not in repr(token)  # a token in a log line or traceback stays secret


@pytest.mark.rfc("8628", "3.4")
def test_the_token_request_is_the_device_grant():
    seen = login(ScriptedServer(token=[granted()]))
    (poll,) = [r for r in seen.requests if r.url.path == TOKEN_PATH]
    assert poll.method == "POST"
    assert poll.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(poll) == {
        "grant_type": [DEVICE_CODE_GRANT],
        "device_code": [DEVICE_CODE],
        "client_id": ["devicelink-cli"],
    }


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
def test_the_client_gives_up_at_expires_in_without_sleeping_past_it(answers, expires_in, message):
    clock = Clock()
    start = clock()
    server = ScriptedServer(authorize=[ok(authorization(expires_in=expires_in))], token=answers)
    seen = Transcript()
    with pytest.raises(errors.ExpiredToken, match=message):
        login(server, clock, seen)

    assert clock() == pytest.approx(start + expires_in)  # waited to the end, not past it
    assert all(s.seconds <= s.remaining for s in seen.sleeps if s.remaining is not None)
    last = seen.sleeps[-1]
    assert last.seconds == pytest.approx(last.remaining)  # cut short to end at the deadline


def test_expiry_counts_from_when_the_authorization_request_was_sent():
    clock = Clock()
    start = clock()

    def slow_authorization(request: httpx.Request) -> httpx.Response:
        clock.advance(2)  # the answer takes 2 s to come back
        return ok(authorization(expires_in=20))

    with pytest.raises(errors.ExpiredToken):
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
def test_a_compliant_client_never_gets_slow_down_from_latency_jitter(seed, skews):
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


def test_the_jitter_simulation_does_catch_a_client_polling_on_a_fixed_cadence():
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


# --- discovery: RFC 8414 -----------------------------------------------------------------


DISCOVERY_FAILURES = [
    pytest.param([httpx.Response(404, json={"error": "not_found"})], "HTTP 404", id="404"),
    pytest.param([ok(metadata(issuer="https://evil.example.com"))], "issuer", id="issuer-mismatch"),
    pytest.param(
        [ok(metadata(issuer="https://login.example.com/tenant"))], "issuer", id="issuer-other-path"
    ),
    pytest.param([ok(metadata() | {"issuer": None})], "issuer", id="issuer-missing"),
    pytest.param([html(200)], "JSON", id="not-json"),
    pytest.param([ok([metadata()])], "JSON object", id="json-not-an-object"),
    pytest.param(
        [ok(metadata(device_authorization_endpoint=None))],
        "device_authorization_endpoint",
        id="no-device-endpoint",
    ),
    pytest.param(
        [ok(metadata(token_endpoint=f"http://login.example.com{TOKEN_PATH}"))],
        "token_endpoint",
        id="https-issuer-http-endpoint",
    ),
    pytest.param(
        [ok(metadata(token_endpoint="javascript:alert(1)"))], "token_endpoint", id="not-a-url"
    ),
    pytest.param(
        [ok(metadata(grant_types_supported=["authorization_code"]))],
        "does not offer the device",
        id="device-grant-not-supported",
    ),
    pytest.param(
        [httpx.Response(301, headers={"Location": "https://elsewhere.example.com/"})],
        "HTTP 301",
        id="redirect-not-followed",
    ),
]


@pytest.mark.rfc("8414", "3")
@pytest.mark.parametrize(("answers", "message"), DISCOVERY_FAILURES)
def test_discovery_failures_are_discovery_failed(answers, message):
    seen = Transcript()
    with pytest.raises(errors.DiscoveryFailed, match=message):
        login(ScriptedServer(metadata=answers), transcript=seen)
    assert not seen.codes
    assert all(r.url.path == METADATA_PATH for r in seen.requests)


@pytest.mark.rfc("8414", "3.3")
@pytest.mark.parametrize(
    ("server_url", "issuer"),
    [
        pytest.param(SERVER + "/", SERVER, id="trailing-slash-typed"),
        pytest.param(SERVER, SERVER + "/", id="trailing-slash-in-metadata"),
        pytest.param("HTTPS://Login.Example.com:443", SERVER, id="case-and-default-port"),
    ],
)
def test_the_issuer_check_normalises_the_url(server_url, issuer):
    server = ScriptedServer(metadata=[ok(metadata() | {"issuer": issuer})], token=[granted()])
    seen = login(server, server_url=server_url)
    assert seen.requests[0].url == SERVER + METADATA_PATH
    assert seen.result.server == SERVER


@pytest.mark.rfc("8414", "3.1")
def test_an_issuer_with_a_path_tries_the_rfc_location_then_the_prefix():
    issuer = "https://example.com/auth"
    assert metadata_urls(issuer) == [
        "https://example.com/.well-known/oauth-authorization-server/auth",
        "https://example.com/auth/.well-known/oauth-authorization-server",
    ]
    answers: dict[str, list[Answer]] = {
        "/.well-known/oauth-authorization-server/auth": [httpx.Response(404)],
        "/auth/.well-known/oauth-authorization-server": [ok(metadata(issuer=issuer))],
    }
    endpoints = drive(discover(issuer), ScriptedServer(**answers), Clock()).result
    assert endpoints.token_endpoint == f"{issuer}{TOKEN_PATH}"


@pytest.mark.parametrize(
    "server_url",
    ["login.example.com", "ftp://login.example.com", "https://", "https://x.com/?a=1", ""],
)
def test_a_server_address_that_is_not_an_http_url_is_refused_before_any_request(server_url):
    with pytest.raises(errors.DiscoveryFailed, match="not a server URL"):
        login(ScriptedServer(), server_url=server_url)


@pytest.mark.parametrize(
    ("answers", "waits"),
    [
        pytest.param([LOST, ok(metadata())], [(1, "backoff")], id="lost-once"),
        pytest.param([busy(503), ok(metadata())], [(1, "backoff")], id="503-once"),
        pytest.param([busy(429, "10"), ok(metadata())], [(10, "retry_after")], id="429-once"),
    ],
)
def test_discovery_retries_transient_failures(answers, waits):
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
def test_before_a_code_exists_repeated_failures_are_server_unreachable(stage, answer, status):
    seen = Transcript()
    with pytest.raises(errors.ServerUnreachable) as raised:
        login(ScriptedServer(**{stage: [answer]}), transcript=seen)

    assert raised.value.status_code == status
    assert not seen.codes
    failed = [r for r in seen.requests if r.url.path != METADATA_PATH or stage == "metadata"]
    assert len(failed) == ATTEMPTS_WITHOUT_CODE
    if status != 429:
        assert [s.seconds for s in seen.sleeps] == [1, 2, 4]


# --- the device authorization request: RFC 8628 sections 3.1 and 3.2 ------------------------


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, {"client_id": ["devicelink-cli"]}, id="no-scope"),
        pytest.param({"scope": ""}, {"client_id": ["devicelink-cli"]}, id="empty-scope-absent"),
        pytest.param(
            {"scope": ["api", "read"]},
            {"client_id": ["devicelink-cli"], "scope": ["api read"]},
            id="scope-list",
        ),
        pytest.param({"client_id": None, "scope": "api"}, {"scope": ["api"]}, id="default-client"),
    ],
)
def test_the_device_authorization_request(options, expected):
    seen = login(ScriptedServer(token=[granted()]), **options)
    (request,) = [r for r in seen.requests if r.url.path == AUTHORIZE_PATH]
    assert request.method == "POST"
    assert request.url == SERVER + AUTHORIZE_PATH
    assert form(request) == expected


@pytest.mark.rfc("8628", "3.2")
def test_the_code_is_handed_to_the_ui_before_the_first_poll():
    seen = login(ScriptedServer(authorize=[ok(authorization(interval=None))], token=[granted()]))
    (code,) = seen.codes
    assert code.user_code == "WDJB-MJHT"
    assert code.verification_uri == f"{SERVER}/oauth/device/verify"
    assert (code.verification_uri_complete or "").endswith("?user_code=WDJB-MJHT")
    assert code.interval == 5  # the default when the server names none
    assert DEVICE_CODE not in repr(code)
    assert seen.sleeps[0].seconds == 5 + M


@pytest.mark.rfc("8628", "3.2")
@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        pytest.param(oauth("invalid_client", 401), errors.InvalidClient, id="invalid_client"),
        pytest.param(oauth("invalid_scope"), errors.ServerRejected, id="invalid_scope"),
        pytest.param(ok(authorization(device_code=None)), errors.ServerRejected, id="no-device"),
        pytest.param(ok(authorization(expires_in=None)), errors.ServerRejected, id="no-expiry"),
        pytest.param(ok(authorization(expires_in=0)), errors.ServerRejected, id="zero-expiry"),
        pytest.param(
            ok(authorization(user_code="AB\x1b[2JCD")),
            errors.ServerRejected,
            id="user-code-with-terminal-escape",
        ),
        pytest.param(
            ok(authorization(verification_uri="javascript:alert(1)")),
            errors.ServerRejected,
            id="verification-uri-not-http",
        ),
        pytest.param(html(200), errors.ServerRejected, id="not-json"),
    ],
)
def test_a_refused_or_malformed_authorization_shows_no_code(answer, kind):
    seen = Transcript()
    with pytest.raises(kind):
        login(ScriptedServer(authorize=[answer]), transcript=seen)
    assert not seen.codes
    assert not seen.polls


# --- revocation (RFC 7009) and the key check ----------------------------------------------


ENDPOINTS = Endpoints(
    issuer=SERVER,
    device_authorization_endpoint=SERVER + AUTHORIZE_PATH,
    token_endpoint=SERVER + TOKEN_PATH,
    revocation_endpoint=SERVER + REVOKE_PATH,
)


@pytest.mark.rfc("7009", "2.1")
@pytest.mark.parametrize(
    ("target", "answers", "requests"),
    [
        pytest.param(ENDPOINTS, [ok({})], 1, id="known-endpoints"),
        pytest.param(SERVER, [ok({})], 2, id="discovers-first"),
        pytest.param(ENDPOINTS, [busy(503, "2"), httpx.Response(200)], 2, id="retries-503"),
    ],
)
def test_revocation_posts_the_token(target, answers, requests):
    seen = drive(
        revoke_flow(target, KEY, "devicelink-cli", clock=Clock()),
        ScriptedServer(revoke=answers),
        Clock(),
    )
    assert seen.result is True
    assert len(seen.requests) == requests
    revoke = seen.requests[-1]
    assert revoke.url == SERVER + REVOKE_PATH
    assert form(revoke) == {
        "token": [KEY],
        "token_type_hint": ["access_token"],
        "client_id": ["devicelink-cli"],
    }


@pytest.mark.rfc("7009", "2.2")
@pytest.mark.parametrize(
    ("script", "kind"),
    [
        pytest.param(
            {"metadata": [ok(metadata(revocation_endpoint=None))]},
            errors.DiscoveryFailed,
            id="no-revocation-endpoint",
        ),
        pytest.param(
            {"revoke": [oauth("unsupported_token_type")]},
            errors.ServerRejected,
            id="unsupported_token_type",
        ),
        pytest.param(
            {"revoke": [oauth("invalid_client", 401)]}, errors.InvalidClient, id="invalid_client"
        ),
        pytest.param({"revoke": [LOST]}, errors.ServerUnreachable, id="unreachable"),
    ],
)
def test_revocation_failures_are_typed(script, kind):
    with pytest.raises(kind):
        drive(revoke_flow(SERVER, KEY, "devicelink-cli"), ScriptedServer(**script), Clock())


@pytest.mark.rfc("6750", "3.1")
@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(ok({"username": "alice"}), {"username": "alice"}, id="owner"),
        pytest.param(oauth("invalid_token", 401), errors.InvalidToken, id="401"),
        pytest.param(html(200), errors.ServerRejected, id="not-json"),
        pytest.param(httpx.Response(403), errors.ServerRejected, id="403"),
    ],
)
def test_whoami_sends_the_key_as_a_bearer_token(answer, outcome):
    flow = whoami_flow(SERVER + "/", KEY)
    seen = Transcript()
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            drive(flow, ScriptedServer(me=[answer]), Clock(), seen)
    else:
        assert drive(flow, ScriptedServer(me=[answer]), Clock(), seen).result == outcome
    (request,) = seen.requests
    assert request.url == SERVER + "/api/me"
    assert request.headers["authorization"] == f"Bearer {KEY}"


# --- the generator protocol itself ------------------------------------------------------------


def test_answering_send_with_nothing_is_a_driver_bug():
    flow = device_flow(SERVER, "devicelink-cli")
    assert isinstance(next(flow), Send)
    with pytest.raises(TypeError, match="ConnectionLost"):
        flow.send(None)


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
def test_slowed_down(interval, body, expected):
    assert slowed_down(interval, body) == expected
