"""Same-device sign-in in a host application (examples/host_app, devicelink under
/auth): the host's signed-in user goes straight to the consent page (its
``resolve_user``, no second sign-in, as on the device pages), and the key is minted by
the host's own key issuer and works at the host's API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from examples.host_app.app import build_app

from devicelink.runtime.settings import Settings
from tests.authcode.conftest import NativeApp, callback_params, consent_page, press
from tests.embedding.test_host_signin import HOST, Browser, host_settings, open_browser
from tests.pages.pagetools import Browser as PageBrowser

pytestmark = pytest.mark.anyio


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    async for opened in open_browser(build_app(host_settings(settings))):
        yield opened


async def test_a_host_user_consents_without_a_second_sign_in_and_gets_a_host_key(
    browser: Browser,
) -> None:
    app = NativeApp()
    # Signed in nowhere: the host's own sign-in, and back to the authorization request.
    first = await browser.http.get(app.authorize_url())
    assert first.status_code == 303
    assert urlsplit(first.headers["location"]).path == "/host/login"

    await browser.sign_in_at_host("alice")
    consent = await consent_page(PageBrowser(browser.http), app)
    assert 'action="/auth/oauth/authorize/decide"' in consent.text
    params = callback_params(await press(PageBrowser(browser.http), consent, "approve"), app)
    assert params["iss"] == f"{HOST}/auth"

    token = await browser.http.post("/oauth/token", data=app.token_form(params["code"]))
    assert token.status_code == 200, token.text
    key = token.json()["access_token"]
    assert key.startswith("host_")  # the host's issuer minted it
    whoami = await browser.host("GET", "/host/whoami", headers={"Authorization": f"Bearer {key}"})
    assert whoami.json() == {"user": "alice"}
    me = await browser.http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200
