"""The httpx drivers: the async one against a real devicelink app in this process (httpx's
ASGI transport, no network), the sync one against scripted answers with transport errors.

The client package never imports the server; these tests may, to have something real to
talk to. The app's issuer is ``PUBLIC_URL`` (https://login.example.com), so the client
addresses it by that name and discovery's issuer check holds.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
import pytest

from devicelink.client import (
    USER_AGENT,
    AsyncDeviceFlowClient,
    DeviceAuthorization,
    DeviceFlowClient,
    Endpoints,
    KeyRefused,
    LoginDenied,
    LoginExpired,
    ServerUnreachable,
    Token,
    arun_device_flow,
    device_flow,
    run_device_flow,
)
from devicelink.client.discovery import DEVICE_CODE_GRANT
from devicelink.client.pacing import POLL_MARGIN

if TYPE_CHECKING:  # the server side, only for the fixture's type
    from tests.support.app import Server

PUBLIC_URL = "https://login.example.com"  # tests/conftest.py's
TOKEN_PATH = "/oauth/device/token"
SERVER_TOKEN_PATH = "/oauth/token"  # the server's token_endpoint, for both grants
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


class Recorder(httpx.AsyncBaseTransport):
    """The app's ASGI transport, keeping every request and answer."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.exchanges.append((request, httpx.Response(response.status_code, content=body)))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )

    def token_answers(self) -> list[str]:
        return [
            answer.json().get("error", "granted") if answer.status_code != 200 else "granted"
            for request, answer in self.exchanges
            if request.url.path == SERVER_TOKEN_PATH
        ]


class SharedTime:
    """One fake time for the client's monotonic clock and the server's clock: a wait of
    the client moves both, so the server sees polls exactly as far apart as waited."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.now = 10_000.0
        self.waited = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.waited += seconds
        self.server.clock.advance(seconds)


AppClient = tuple[AsyncDeviceFlowClient, Recorder, SharedTime]
"""The client under test, the transport that records, and the time both sides share."""


@pytest.fixture
async def app_client(
    server: Server,
) -> AsyncIterator[AppClient]:
    recorder = Recorder(server.app)
    time = SharedTime(server)
    client = AsyncDeviceFlowClient(
        PUBLIC_URL, transport=recorder, sleep=time.sleep, clock=time.clock
    )
    async with client:
        yield client, recorder, time


# --- async, against the real server ------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.rfc("8628", "3.3")
@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("approve_after_waits", [0, 3], ids=["approved-at-once", "after-3-polls"])
async def test_async_login_against_the_server(
    server: Server, app_client: AppClient, approve_after_waits: int
) -> None:
    client, recorder, _ = app_client
    alice = await server.add_user("alice")
    shown: list[DeviceAuthorization] = []
    waits: list[tuple[float, float | None]] = []

    async def approve(user_code: str) -> None:
        assert await server.runtime.flows.approve(user_code, user_id=alice.id) == "ok"

    async def on_code(authorization: DeviceAuthorization) -> None:
        shown.append(authorization)
        if approve_after_waits == 0:
            await approve(authorization.user_code)

    async def on_wait(seconds: float, remaining: float | None) -> None:
        waits.append((seconds, remaining))
        if approve_after_waits and len(waits) == approve_after_waits:
            await approve(shown[0].user_code)

    token = await client.login(on_code=on_code, on_wait=on_wait)

    assert isinstance(token, Token)
    assert token.access_token.startswith("dlk_")
    assert token.token_type == "Bearer"
    assert token.expires_in
    assert token.expires_in > 0
    assert token.server == PUBLIC_URL
    (authorization,) = shown
    assert USER_CODE.match(authorization.user_code)
    assert authorization.verification_uri == f"{PUBLIC_URL}/oauth/device/verify"
    # A compliant client is never told to slow down by a compliant server.
    assert recorder.token_answers() == ["authorization_pending"] * (
        max(approve_after_waits - 1, 0)
    ) + ["granted"]
    assert all(seconds == 5 + POLL_MARGIN for seconds, _ in waits)
    assert all(r.headers["user-agent"] == USER_AGENT for r, _ in recorder.exchanges)
    polls = [
        parse_qs(r.content.decode())
        for r, _ in recorder.exchanges
        if r.url.path == SERVER_TOKEN_PATH
    ]
    assert {p["device_code"][0] for p in polls}
    assert len({p["device_code"][0] for p in polls}) == 1
    assert all(p["grant_type"] == [DEVICE_CODE_GRANT] for p in polls)

    owner = await client.whoami(token)
    assert owner["username"] == "alice"


@pytest.mark.anyio
@pytest.mark.rfc("8628", "3.5")
async def test_async_login_denied_in_the_browser(server: Server, app_client: AppClient) -> None:
    client, recorder, _ = app_client
    alice = await server.add_user("alice")

    async def deny(authorization: DeviceAuthorization) -> None:
        await server.runtime.flows.deny(authorization.user_code, user_id=alice.id)

    with pytest.raises(LoginDenied):
        await client.login(on_code=deny)
    assert recorder.token_answers() == ["access_denied"]


@pytest.mark.anyio
@pytest.mark.rfc("8628", "3.5")
async def test_async_login_gives_up_when_the_code_expires(
    server: Server, app_client: AppClient
) -> None:
    client, recorder, time = app_client
    with pytest.raises(LoginExpired):
        await client.login(on_code=lambda authorization: None)

    lifetime = server.runtime.settings.code_lifetime
    assert time.waited == pytest.approx(lifetime)
    answers = recorder.token_answers()
    assert set(answers) == {"authorization_pending"}  # never slowed down, never polled late
    assert len(answers) == int(lifetime // (5 + POLL_MARGIN))


@pytest.mark.anyio
@pytest.mark.rfc("7009", "2.1")
@pytest.mark.defect(10)
async def test_async_revoke_makes_the_key_unusable(server: Server, app_client: AppClient) -> None:
    """What ``logout`` relies on (DESIGN.md defect 10): revoked on the server, not only
    forgotten locally."""
    client, _, _ = app_client
    alice = await server.add_user("alice")

    async def approve(authorization: DeviceAuthorization) -> None:
        await server.runtime.flows.approve(authorization.user_code, user_id=alice.id)

    token = await client.login(on_code=approve)
    assert (await client.whoami(token))["username"] == "alice"

    assert await client.revoke(token) is True
    with pytest.raises(KeyRefused):
        await client.whoami(token)
    assert await client.revoke(token) is True  # RFC 7009 section 2.2: again, still 200


@pytest.mark.anyio
@pytest.mark.rfc("6750", "3.1")
async def test_async_whoami_with_an_unknown_key_is_invalid_token(app_client: AppClient) -> None:
    client, _, _ = app_client
    with pytest.raises(KeyRefused):
        await client.whoami("dlk_not_a_real_key_0000")


# --- sync, against scripted answers ------------------------------------------------------


def metadata() -> dict[str, Any]:
    return {
        "issuer": PUBLIC_URL,
        "device_authorization_endpoint": f"{PUBLIC_URL}/oauth/device/authorize",
        "token_endpoint": f"{PUBLIC_URL}{TOKEN_PATH}",
        "revocation_endpoint": f"{PUBLIC_URL}/oauth/revoke",
    }


AUTHORIZATION = {
    "device_code": "device-code-1",
    "user_code": "WDJB-MJHT",
    "verification_uri": f"{PUBLIC_URL}/oauth/device/verify",
    "expires_in": 600,
    "interval": 5,
}
GRANTED = {"access_token": "dlk_key_abc", "token_type": "Bearer", "expires_in": 3600}


class Script:
    """A MockTransport handler: answers per path, in order; an exception is raised."""

    def __init__(self, **by_path: list[Any]) -> None:
        self.by_path = {
            "/.well-known/oauth-authorization-server": [httpx.Response(200, json=metadata())],
            "/oauth/device/authorize": [httpx.Response(200, json=AUTHORIZATION)],
        }
        self.by_path.update({("/" + k.replace("__", "/")): v for k, v in by_path.items()})
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answers = self.by_path[request.url.path]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


W = 5 + POLL_MARGIN
TRANSPORT_ERRORS = [
    pytest.param(httpx.ConnectError("connection refused"), id="connect-error"),
    pytest.param(httpx.ReadTimeout("timed out"), id="read-timeout"),
    pytest.param(httpx.RemoteProtocolError("peer closed"), id="remote-protocol-error"),
]


def token_script(failure: Exception) -> Script:
    return Script(
        oauth__device__token=[
            httpx.Response(400, json={"error": "authorization_pending"}),
            failure,
            httpx.Response(503, headers={"Retry-After": "2"}),
            httpx.Response(200, json=GRANTED),
        ]
    )


def check_transcript(script: Script, time: FakeTime, token: Token, waits: list[Any]) -> None:
    assert token.access_token == "dlk_key_abc"
    # interval, interval, backoff after the transport error, Retry-After (floored at interval)
    assert time.slept == [W, W, W, W]
    assert [seconds for seconds, _ in waits] == time.slept
    remaining = [left for _, left in waits]
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[0] == pytest.approx(600)
    polls = [r for r in script.requests if r.url.path == TOKEN_PATH]
    assert len(polls) == 4
    assert {parse_qs(r.content.decode())["device_code"][0] for r in polls} == {"device-code-1"}
    assert all(r.headers["user-agent"] == USER_AGENT for r in script.requests)
    assert all("timeout" in r.extensions for r in script.requests)


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("failure", TRANSPORT_ERRORS)
def test_sync_driver_survives_a_transport_error_mid_flow(failure: Exception) -> None:
    script, time = token_script(failure), FakeTime()
    codes: list[DeviceAuthorization] = []
    waits: list[tuple[float, float | None]] = []
    with DeviceFlowClient(
        PUBLIC_URL, transport=httpx.MockTransport(script), sleep=time.sleep, clock=time.clock
    ) as client:
        token = client.login(on_code=codes.append, on_wait=lambda s, r: waits.append((s, r)))

    assert [c.user_code for c in codes] == ["WDJB-MJHT"]
    check_transcript(script, time, token, waits)


@pytest.mark.anyio
@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("failure", TRANSPORT_ERRORS)
async def test_async_driver_survives_a_transport_error_mid_flow(failure: Exception) -> None:
    script, time = token_script(failure), FakeTime()
    waits: list[tuple[float, float | None]] = []
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(script), headers={"User-Agent": USER_AGENT}
    ) as http:
        token = await arun_device_flow(
            device_flow(PUBLIC_URL, "devicelink-cli", clock=time.clock),
            http,
            on_code=lambda authorization: None,
            on_wait=lambda s, r: waits.append((s, r)),
            sleep=time.asleep,
        )
    check_transcript(script, time, token, waits)


def test_sync_driver_gives_up_on_an_unreachable_server() -> None:
    time = FakeTime()
    script = Script(**{".well-known__oauth-authorization-server": [httpx.ConnectError("refused")]})
    with (
        httpx.Client(transport=httpx.MockTransport(script)) as http,
        pytest.raises(ServerUnreachable, match="ConnectError") as raised,
    ):
        run_device_flow(device_flow(PUBLIC_URL, "devicelink-cli"), http, sleep=time.sleep)
    assert time.slept == [1, 2, 4]
    assert raised.value.status_code is None


def test_sync_driver_shows_the_code_on_stderr_without_on_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = Script(oauth__device__token=[httpx.Response(200, json=GRANTED)])
    time = FakeTime()
    with httpx.Client(transport=httpx.MockTransport(script)) as http:
        run_device_flow(
            device_flow(PUBLIC_URL, "devicelink-cli", clock=time.clock), http, sleep=time.sleep
        )
    err = capsys.readouterr().err
    assert "WDJB-MJHT" in err
    assert f"{PUBLIC_URL}/oauth/device/verify" in err


OLD_ENDPOINTS = Endpoints(
    PUBLIC_URL, f"{PUBLIC_URL}/oauth/device/authorize", f"{PUBLIC_URL}{TOKEN_PATH}"
)


@pytest.mark.rfc("7009", "2.1")
@pytest.mark.parametrize(
    "token",
    [
        pytest.param("dlk_key_abc", id="key-string"),
        pytest.param(
            Token("dlk_key_abc", "Bearer", None, None, OLD_ENDPOINTS, PUBLIC_URL),
            id="token-from-a-discovery-without-revocation",
        ),
    ],
)
def test_sync_client_revokes_the_key_on_the_server(token: str | Token) -> None:
    script = Script(oauth__revoke=[httpx.Response(200)])
    with DeviceFlowClient(PUBLIC_URL, transport=httpx.MockTransport(script)) as client:
        assert client.revoke(token) is True
    (revoke,) = [r for r in script.requests if r.url.path == "/oauth/revoke"]
    assert parse_qs(revoke.content.decode()) == {
        "token": ["dlk_key_abc"],
        "token_type_hint": ["access_token"],
        "client_id": ["devicelink-cli"],
    }


@pytest.mark.rfc("6750", "3.1")
def test_sync_client_whoami_returns_the_owner() -> None:
    script = Script(api__me=[httpx.Response(200, json={"username": "alice"})])
    with DeviceFlowClient(PUBLIC_URL, transport=httpx.MockTransport(script)) as client:
        assert client.whoami("dlk_key_abc") == {"username": "alice"}
    (request,) = script.requests
    assert request.headers["authorization"] == "Bearer dlk_key_abc"


@pytest.mark.rfc("6750", "3.1")
def test_sync_client_whoami_with_a_refused_key_is_invalid_token() -> None:
    answer = httpx.Response(401, json={"error": "invalid_token", "error_description": "revoked"})
    script = Script(api__me=[answer])
    with (
        DeviceFlowClient(PUBLIC_URL, transport=httpx.MockTransport(script)) as client,
        pytest.raises(KeyRefused) as raised,
    ):
        client.whoami("dlk_key_abc")
    assert raised.value.description == "revoked"
    assert "log in again" in str(raised.value)
