"""The loopback listener over real HTTP on 127.0.0.1 (RFC 8252 sections 7.3 and 8.3):
bound before the browser opens, one redirect accepted, everything else a 400 and
ignored, a page that sends the user back to the terminal, a deadline, Ctrl-C, and the
code redeemed with its verifier (RFC 7636 section 4.5). The authorization server is
scripted (``httpx.MockTransport``); the "browser" is a test function that sends the
redirects a browser would."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from devicelink.client import errors
from devicelink.client.http import DeviceFlowClient
from devicelink.client.loopback import LoopbackReceiver, loopback_sign_in
from devicelink.client.loopback_request import Stray

from .scripted import KEY, SERVER, metadata

LOOPBACK: dict[str, Any] = {
    "authorization_endpoint": f"{SERVER}/oauth/authorize",
    "token_endpoint": f"{SERVER}/oauth/token",
    "response_types_supported": ["code"],
    "code_challenge_methods_supported": ["S256"],
    "grant_types_supported": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
    "authorization_response_iss_parameter_supported": True,
}


@dataclass
class AuthorizationServer:
    """Metadata with the code grant, an authorization endpoint that sends a visitor
    without a session to its sign-in page (or, with ``refusal``, refuses the request as
    a server does: ``"page"`` for an unregistered redirect URI, an error code sent back
    to the redirect URI otherwise), and a token endpoint (``token_error`` makes it
    refuse)."""

    offers_loopback: bool = True
    refusal: str | None = None
    token_error: str | None = None
    checks: list[httpx.Request] = field(default_factory=list)
    redemptions: list[dict[str, str]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=metadata() | (LOOPBACK if self.offers_loopback else {}))
        if request.url.path == "/oauth/authorize":
            self.checks.append(request)
            if self.refusal == "page":
                return httpx.Response(400, text="<h1>Not registered</h1>")
            if self.refusal:
                back = (
                    request.url.params["redirect_uri"]
                    + "?"
                    + urlencode(
                        {"error": self.refusal, "state": request.url.params["state"], "iss": SERVER}
                    )
                )
                return httpx.Response(303, headers={"Location": back})
            return httpx.Response(303, headers={"Location": "/login?next=/oauth/authorize"})
        assert request.url.path == "/oauth/token", request.url
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.redemptions.append(form)
        if self.token_error:
            return httpx.Response(400, json={"error": self.token_error})
        return httpx.Response(
            200,
            json={"access_token": KEY, "token_type": "Bearer", "expires_in": 60, "scope": "api"},
        )


@dataclass
class Browser:
    """Opens the authorization URL as a browser would after the user decided: sends
    ``visits(request_url)`` (paths with queries) to the redirect URI's port, in order,
    and records what each was answered."""

    visits: Callable[[dict[str, str]], list[str]]
    answers: list[httpx.Response] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bool:
        self.opened.append(url)
        params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        origin = "http://" + urlsplit(params["redirect_uri"]).netloc
        with httpx.Client(base_url=origin, trust_env=False) as http:
            for target in self.visits(params):
                self.answers.append(http.get(target))
        return True


def redirect(params: dict[str, str], **answer: str) -> str:
    return "/callback?" + urlencode(answer | {"state": params["state"], "iss": SERVER})


def approve(params: dict[str, str]) -> list[str]:
    return [redirect(params, code="the-code")]


@pytest.fixture
def server() -> AuthorizationServer:
    return AuthorizationServer()


@pytest.fixture
def client(server: AuthorizationServer) -> Iterator[DeviceFlowClient]:
    transport = httpx.MockTransport(server.handle)
    with DeviceFlowClient(SERVER, "devicelink-cli", scope="api", transport=transport) as client:
        yield client


def refused(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port any more."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def port_of(browser: Browser) -> int:
    params = parse_qs(urlsplit(browser.opened[0]).query)
    port = urlsplit(params["redirect_uri"][0]).port
    assert port is not None
    return port


# --- one redirect accepted ----------------------------------------------------------------


@pytest.mark.rfc("8252", "7.3")
@pytest.mark.rfc("8252", "8.3")
@pytest.mark.rfc("7636", "4.5")
def test_the_approved_redirect_is_redeemed_with_the_verifier(
    client: DeviceFlowClient, server: AuthorizationServer, capfd: pytest.CaptureFixture[str]
) -> None:
    def listening_first(params: dict[str, str]) -> list[str]:
        uri = urlsplit(params["redirect_uri"])
        assert uri.scheme == "http"
        assert uri.hostname == "127.0.0.1"  # an IP literal, never localhost
        assert uri.path == "/callback"
        assert uri.port is not None
        assert not refused(uri.port)  # bound before the browser opened
        return approve(params)

    browser = Browser(listening_first)
    token = loopback_sign_in(client, open_link=browser)
    assert token.access_token == KEY
    (answer,) = browser.answers
    assert answer.status_code == 200
    assert "return to your terminal" in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-frame-options"] == "DENY"

    (form,) = server.redemptions
    params = parse_qs(urlsplit(browser.opened[0]).query)
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == "the-code"
    assert form["client_id"] == "devicelink-cli"
    assert form["redirect_uri"] == params["redirect_uri"][0]  # exactly, port included
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == params["code_challenge"][0]
    assert refused(port_of(browser))  # the socket is closed once the redirect came back
    # Nothing logged, least of all the code in the request line.
    assert capfd.readouterr() == ("", "")


@pytest.mark.rfc("6749", "10.12")
@pytest.mark.rfc("9207", "2.4")
def test_stray_requests_get_400_and_the_listener_keeps_waiting(client: DeviceFlowClient) -> None:
    def visits(params: dict[str, str]) -> list[str]:
        good = redirect(params, code="the-code")
        return [
            "/favicon.ico",
            good.replace("/callback?", "/elsewhere?"),
            "/callback?" + urlencode({"code": "x", "state": "forged", "iss": SERVER}),
            "/callback?"
            + urlencode({"code": "x", "state": params["state"], "iss": "https://evil.example"}),
            "/callback?" + urlencode({"code": "x", "state": params["state"]}),  # no iss
            "/callback?" + urlencode({"error": "access_denied", "state": "forged", "iss": SERVER}),
            good,
            redirect(params, code="a-second-code"),  # exactly one is accepted
        ]

    browser = Browser(visits)
    token = loopback_sign_in(client, open_link=browser)
    assert token.access_token == KEY
    statuses = [answer.status_code for answer in browser.answers]
    assert statuses == [400, 400, 400, 400, 400, 400, 200, 400]
    assert "Not this sign-in" in browser.answers[0].text


def test_an_idle_connection_does_not_hold_up_the_redirect(client: DeviceFlowClient) -> None:
    # Browsers open spare connections and may never use them.
    idle: list[socket.socket] = []

    def visits(params: dict[str, str]) -> list[str]:
        port = urlsplit(params["redirect_uri"]).port
        assert port is not None
        idle.append(socket.create_connection(("127.0.0.1", port)))
        return approve(params)

    started = time.monotonic()
    try:
        token = loopback_sign_in(client, open_link=Browser(visits))
    finally:
        for sock in idle:
            sock.close()
    assert token.access_token == KEY
    assert time.monotonic() - started < 5


# --- how it ends otherwise ----------------------------------------------------------------


@pytest.mark.rfc("6749", "4.1.2.1")
def test_deny_ends_with_login_denied_and_a_clear_page(client: DeviceFlowClient) -> None:
    browser = Browser(lambda params: [redirect(params, error="access_denied")])
    with pytest.raises(errors.LoginDenied, match="denied in the browser"):
        loopback_sign_in(client, open_link=browser)
    (answer,) = browser.answers
    assert answer.status_code == 200
    assert "Sign-in denied" in answer.text
    assert "no key was issued" in answer.text
    assert refused(port_of(browser))


def test_another_error_in_the_redirect_is_the_servers_refusal(client: DeviceFlowClient) -> None:
    browser = Browser(lambda params: [redirect(params, error="invalid_scope")])
    with pytest.raises(errors.ServerRejected, match="invalid_scope"):
        loopback_sign_in(client, open_link=browser)
    assert "Sign-in failed" in browser.answers[0].text


def test_nothing_back_within_the_lifetime_is_login_expired(client: DeviceFlowClient) -> None:
    browser = Browser(lambda params: [])  # the user never finishes
    started = time.monotonic()
    with pytest.raises(errors.LoginExpired, match="did not come back from the browser"):
        loopback_sign_in(client, open_link=browser, lifetime=0.4)
    assert 0.4 <= time.monotonic() - started < 5
    assert refused(port_of(browser))


def test_ctrl_c_closes_the_listener(client: DeviceFlowClient) -> None:
    waits: list[float] = []

    def on_wait(seconds: float, remaining: float | None) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise KeyboardInterrupt

    browser = Browser(lambda params: [])
    with pytest.raises(KeyboardInterrupt):
        loopback_sign_in(client, open_link=browser, on_wait=on_wait)
    assert refused(port_of(browser))


@pytest.mark.rfc("6749", "5.2")
def test_a_refused_code_ends_the_sign_in(
    client: DeviceFlowClient, server: AuthorizationServer
) -> None:
    server.token_error = "invalid_grant"
    with pytest.raises(errors.DeviceCodeRefused):
        loopback_sign_in(client, open_link=Browser(approve))
    assert len(server.redemptions) == 1  # a code is single use: never sent twice


@pytest.mark.rfc("6749", "4.1.2.1")
@pytest.mark.parametrize(
    ("refusal", "error"),
    [
        pytest.param("page", errors.LoopbackRefused, id="redirect-uri-not-registered"),
        pytest.param("unauthorized_client", errors.LoopbackRefused, id="grant-not-allowed"),
        pytest.param("invalid_scope", errors.ServerRejected, id="another-error"),
    ],
)
def test_a_request_the_server_refuses_never_reaches_the_browser(
    client: DeviceFlowClient,
    server: AuthorizationServer,
    refusal: str,
    error: type[errors.DeviceFlowError],
) -> None:
    server.refusal = refusal
    browser = Browser(approve)
    shown: list[str] = []
    with pytest.raises(error):
        loopback_sign_in(
            client, open_link=browser, on_link=lambda request, lifetime: shown.append(request.url)
        )
    (check,) = server.checks
    assert check.url.params["code_challenge_method"] == "S256"
    assert browser.opened == []
    assert shown == []  # nothing shown to the user: the caller may take the device flow
    assert server.redemptions == []


def test_a_server_without_the_code_grant_is_refused_before_listening(
    client: DeviceFlowClient, server: AuthorizationServer
) -> None:
    server.offers_loopback = False
    browser = Browser(approve)
    with pytest.raises(errors.DiscoveryFailed, match="does not offer sign-in in a browser"):
        loopback_sign_in(client, open_link=browser)
    assert browser.opened == []


def test_the_receiver_alone_closes_its_socket() -> None:
    with LoopbackReceiver() as receiver:
        port = receiver.port
        assert receiver.redirect_uri == f"http://127.0.0.1:{port}/callback"
        receiver.start(lambda target: Stray("test"))
        answer = httpx.get(receiver.redirect_uri, trust_env=False)
        assert answer.status_code == 400
        assert receiver.wait(0.05) is None
    assert refused(port)
