"""Same-device sign-in end to end, with a native-app client this project did not write.

A real ``devicelink serve`` (the embedded default, as a new user runs it first); the
application is Authlib's ``OAuth2Session`` (RFC 6749 authorization code grant, PKCE with
``code_challenge_method="S256"``) with its own loopback listener (``http.server`` on
127.0.0.1, an ephemeral port: RFC 8252 section 7.3). It reads the server's metadata,
opens the authorization URL in Chromium (Debian's package, driven by Playwright), where
the user signs in with a local account and approves; the browser lands on the listener,
Authlib redeems the code with its verifier, and the key works at ``/api/me``.

Every page is saved as a screenshot under ``tests/artifacts/screenshots/same-device/``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from playwright.sync_api import Browser, Page, expect

from tests.support.processes import clean_env, one_time_passwords
from tests.support.secret_scanner import REGISTRY
from tests.support.servers import Launcher

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots" / "same-device"


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


class Listener:
    """The application's loopback listener: one callback, kept, answered with a short
    page that sends the user back to the terminal."""

    def __init__(self, host: str) -> None:
        self.received: list[str] = []
        received = self.received

        class Callback(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.append(self.path)
                body = b"<h1>Signed in</h1><p>Return to your terminal.</p>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (HTTPServer,), {"address_family": family})
        self.server = server_class((host, 0), Callback)
        self.port = self.server.server_address[1]
        self.authority = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_server(launch: Launcher, tmp_path: Path) -> tuple[str, str]:
    server = launch(env=clean_env(), cwd=tmp_path)
    passwords = one_time_passwords(server.stderr())
    assert len(passwords) == 1, server.stderr()
    return server.base_url, passwords[0]


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def listener(request: pytest.FixtureRequest) -> Iterator[Listener]:
    """The application listens on either loopback literal the default client registers
    (for [::1], the consent page's CSP cannot name the listener: see http/authorize.py)."""
    with Listener(request.param) as started:
        yield started


@pytest.mark.rfc("6749", "4.1")
@pytest.mark.rfc("7636", "4.6")
@pytest.mark.rfc("8252", "7.3")
@pytest.mark.rfc("9207", "2")
def test_authlib_with_its_own_loopback_listener_signs_in_through_chromium(
    chromium: Browser, local_server: tuple[str, str], listener: Listener
) -> None:
    base_url, password = local_server
    metadata = httpx.get(f"{base_url}/.well-known/oauth-authorization-server").json()
    assert "S256" in metadata["code_challenge_methods_supported"]
    redirect_uri = f"http://{listener.authority}/callback"
    verifier = "v" * 20 + "-._~" + "0123456789abcdefghijklmnopqrstuvwxyz"
    REGISTRY.add("code_verifier", verifier)  # the secrets audit looks for it
    session = OAuth2Session(
        "devicelink-cli",
        redirect_uri=redirect_uri,
        scope="api",
        code_challenge_method="S256",
    )
    url, state = session.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier
    )
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge"] == [create_s256_code_challenge(verifier)]

    context = chromium.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    try:
        page.goto(url)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        shot(page, "01-sign-in")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

        expect(page.get_by_role("heading", name="Sign in devicelink CLI?")).to_be_visible()
        expect(page.get_by_text("the key goes to").first).to_be_visible()
        expect(page.get_by_text(f"it listens at {listener.authority}")).to_be_visible()
        approve = page.get_by_role("button", name="Approve")
        deny = page.get_by_role("button", name="Deny")
        approve_box, deny_box = approve.bounding_box(), deny.bounding_box()
        assert approve_box
        assert deny_box
        # Equally visible: the same size, side by side.
        assert abs(approve_box["width"] - deny_box["width"]) < 2
        assert abs(approve_box["height"] - deny_box["height"]) < 2
        shot(page, "02-consent")
        approve.click()

        expect(page.get_by_text("Return to your terminal.")).to_be_visible()
        shot(page, "03-listener")
    finally:
        context.close()

    # One callback (the browser may also ask the listener for its /favicon.ico).
    (callback,) = [path for path in listener.received if path.startswith("/callback?")]
    answer = parse_qs(urlsplit(callback).query)
    assert REGISTRY.add("authorization_code", answer["code"][0])
    assert answer["state"] == [state]
    assert answer["iss"] == [metadata["issuer"]]  # RFC 9207: the answer is this server's
    token = session.fetch_token(
        metadata["token_endpoint"],
        authorization_response=f"{redirect_uri}?{urlsplit(callback).query}",
        code_verifier=verifier,
    )
    assert token["token_type"] == "Bearer"
    me = httpx.get(
        f"{base_url}/api/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "admin"

    # The same code a second time: refused, and the key it gave is revoked.
    replay = httpx.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": answer["code"][0],
            "redirect_uri": redirect_uri,
            "client_id": "devicelink-cli",
            "code_verifier": verifier,
        },
    )
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    me = httpx.get(
        f"{base_url}/api/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert me.status_code == 401
