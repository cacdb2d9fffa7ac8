"""Fixtures of the same-device sign-in tests: the app at its https PUBLIC_URL on both
databases (the ``settings`` fixture), a browser with its own cookies, and the native
application's side of the flow (its PKCE pair, ``state`` and loopback redirect URI).

The application's own requests (the token request) come from another address than the
browser, as a CLI and a browser do on one machine behind the same NAT or not: nothing
here depends on it."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from tests.pages.pagetools import Browser, Site
from tests.support.app import FakeClock
from tests.support.http import csrf_of
from tests.support.secret_scanner import REGISTRY

CLIENT_ID = "devicelink-cli"
REDIRECT_URI = "http://127.0.0.1:50123/callback"


@dataclass
class NativeApp:
    """What an RFC 8252 native application holds during one sign-in: its own PKCE
    verifier (RFC 7636 section 4.1), its ``state``, where it listens."""

    client_id: str = CLIENT_ID
    redirect_uri: str = REDIRECT_URI
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    state: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        REGISTRY.add("code_verifier", self.verifier)  # the secrets audit looks for it

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def authorize_url(self, **overrides: str | None) -> str:
        """The URL it opens in the browser (``None`` leaves a parameter out)."""
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
            "state": self.state,
        }
        params.update(overrides)
        return "/oauth/authorize?" + urlencode(
            {name: value for name, value in params.items() if value is not None}
        )

    def token_form(self, code: str, **overrides: str) -> dict[str, str]:
        return {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "code_verifier": self.verifier,
            **overrides,
        }


def callback_params(response: httpx.Response, app: NativeApp) -> dict[str, str]:
    """The query the browser carries to the application's listener: the answer must be
    a 303 to exactly its redirect URI (the port included)."""
    assert response.status_code == 303, f"{response.status_code}: {response.text[:300]}"
    location = response.headers["location"]
    target = urlsplit(location)
    assert f"{target.scheme}://{target.netloc}{target.path}" == app.redirect_uri, location
    params = {name: values[0] for name, values in parse_qs(target.query).items()}
    assert all(len(values) == 1 for values in parse_qs(target.query).values())
    if "code" in params:
        REGISTRY.add("authorization_code", params["code"])  # as the listener sees it
    return params


def sealed_request_of(page: httpx.Response) -> str:
    match = re.search(r'name="request" value="([^"]*)"', page.text)
    assert match, f"no request on the consent page ({page.status_code})"
    return html.unescape(match.group(1))


async def press(browser: Browser, consent: httpx.Response, action: str) -> httpx.Response:
    """Press Approve or Deny on a consent page, as the browser posts it."""
    return await browser.http.post(
        "/oauth/authorize/decide",
        data={
            "action": action,
            "csrf_token": csrf_of(consent),
            "request": sealed_request_of(consent),
        },
    )


async def consent_page(browser: Browser, app: NativeApp, **overrides: str | None) -> Any:
    page = await browser.http.get(app.authorize_url(**overrides))
    assert page.status_code == 200, f"{page.status_code}: {page.text[:300]}"
    assert "Approve" in page.text
    return page


async def code_for(browser: Browser, app: NativeApp) -> str:
    """Consent and Approve: the code the application's listener receives."""
    consent = await consent_page(browser, app)
    params = callback_params(await press(browser, consent, "approve"), app)
    return params["code"]


@pytest.fixture
async def site(settings: Settings, clock: FakeClock) -> AsyncIterator[Site]:
    app = create_app(settings, clock=clock)

    @asynccontextmanager
    async def open_browser(ip: str = "198.51.100.20") -> AsyncIterator[Browser]:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            yield Browser(http)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 51000))
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as device:
            yield Site(app, clock, settings.issuer, open_browser, device)


@pytest.fixture
async def browser(site: Site) -> AsyncIterator[Browser]:
    async with site.open_browser() as opened:
        yield opened


@pytest.fixture
async def signed_in(site: Site, browser: Browser) -> Browser:
    """alice, a local account, signed in in ``browser``."""
    await site.add_user()
    answer = await browser.sign_in()
    assert answer.status_code == 303, answer.text
    return browser


@pytest.fixture
def app() -> NativeApp:
    return NativeApp()
