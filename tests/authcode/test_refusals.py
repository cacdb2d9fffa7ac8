"""Every refusal of same-device sign-in, on SQLite and PostgreSQL (issue 12, "Must
show"): at the authorization endpoint an unknown client or an unregistered redirect URI
is an error page and never a redirect (RFC 6749 section 4.1.2.1); the other errors go
back to the application with ``state`` and ``iss``; at the token endpoint every binding
of the code is checked (RFC 6749 section 4.1.3, RFC 7636 section 4.6), the code lives a
minute and is used once, and a replay revokes the key it issued (section 4.1.2)."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from devicelink.core.models import AUTHORIZATION_CODE_GRANT, Client
from tests.authcode.conftest import NativeApp, callback_params, code_for, consent_page, press
from tests.http.contract import assert_oauth_error
from tests.pages.pagetools import Browser, Site

pytestmark = pytest.mark.anyio


def assert_error_page(page: httpx.Response) -> None:
    """An error page of this server: 400, HTML, and no way out to the application."""
    assert page.status_code == 400, page.text[:300]
    assert page.headers["content-type"].startswith("text/html")
    assert "location" not in page.headers
    assert "This sign-in cannot continue" in page.text
    assert page.headers["x-frame-options"] == "DENY"


# --- the authorization endpoint: error pages, never redirects -----------------------------


@pytest.mark.rfc("8252", "7.3")
@pytest.mark.rfc("6749", "4.1.2.1")
@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param("http://198.51.100.7:50123/callback", id="another-host"),
        pytest.param("https://attacker.example/callback", id="another-scheme-and-host"),
        pytest.param("http://localhost:50123/callback", id="localhost"),
        pytest.param("http://127.0.0.1:50123/other", id="another-path"),
        pytest.param("http://127.0.0.1:50123/callback?then=x", id="a-query"),
    ],
)
async def test_an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(
    signed_in: Browser, redirect_uri: str
) -> None:
    app = NativeApp(redirect_uri=redirect_uri)
    assert_error_page(await signed_in.http.get(app.authorize_url()))


@pytest.mark.rfc("6749", "4.1.2.1")
async def test_an_unknown_client_gets_an_error_page_never_a_redirect(
    signed_in: Browser,
) -> None:
    assert_error_page(await signed_in.http.get(NativeApp(client_id="nobody").authorize_url()))
    # Nor does a missing client or redirect URI, or one given twice.
    app = NativeApp()
    assert_error_page(await signed_in.http.get(app.authorize_url(client_id=None)))
    assert_error_page(await signed_in.http.get(app.authorize_url(redirect_uri=None)))
    twice = app.authorize_url() + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback"
    assert_error_page(await signed_in.http.get(twice))


async def test_the_error_page_comes_before_sign_in(browser: Browser) -> None:
    """Not signed in: an unregistered redirect URI is refused at once, not after sign-in."""
    app = NativeApp(redirect_uri="http://localhost:50123/callback")
    assert_error_page(await browser.http.get(app.authorize_url()))


# --- the authorization endpoint: errors sent back to the application ---------------------


@pytest.mark.rfc("7636", "4.4.1")
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"code_challenge": None}, "invalid_request", id="no-challenge"),
        pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="plain"),
        pytest.param({"code_challenge_method": None}, "invalid_request", id="plain-by-default"),
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit"),
        pytest.param({"scope": "admin"}, "invalid_scope", id="scope"),
    ],
)
async def test_a_request_without_s256_pkce_goes_back_with_its_error(
    site: Site, browser: Browser, app: NativeApp, overrides: dict[str, str | None], error: str
) -> None:
    # Not even signed in: the user is never asked to consent to a request that fails.
    params = callback_params(await browser.http.get(app.authorize_url(**overrides)), app)
    assert params["error"] == error
    assert params["state"] == app.state
    assert params["iss"] == site.public_url
    assert "code" not in params


@pytest.mark.rfc("6749", "4.1.2.1")
async def test_deny_sends_access_denied_and_no_code(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    consent = await consent_page(signed_in, app)
    params = callback_params(await press(signed_in, consent, "deny"), app)
    assert params == {"error": "access_denied", "state": app.state, "iss": site.public_url}


async def test_a_client_without_the_code_grant_is_told_so_at_its_redirect_uri(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    await set_client(site, grant_types=("urn:ietf:params:oauth:grant-type:device_code",))
    params = callback_params(await signed_in.http.get(app.authorize_url()), app)
    assert params["error"] == "unauthorized_client"


# --- the token endpoint --------------------------------------------------------------


async def redeem(site: Site, app: NativeApp, code: str, **overrides: str) -> httpx.Response:
    return await site.device.post("/oauth/token", data=app.token_form(code, **overrides))


@pytest.mark.rfc("7636", "4.6")
async def test_a_wrong_verifier_gets_invalid_grant(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    other = NativeApp().verifier
    assert_oauth_error(await redeem(site, app, code, code_verifier=other), 400, "invalid_grant")
    # The challenge itself (what "plain" would send) does not pass either.
    wrong = await redeem(site, app, code, code_verifier=app.challenge)
    assert_oauth_error(wrong, 400, "invalid_grant")
    assert_oauth_error(await redeem(site, app, code, code_verifier="short"), 400, "invalid_grant")
    # Whoever intercepted the code without the verifier cannot spend it for the application.
    assert (await redeem(site, app, code)).status_code == 200


@pytest.mark.rfc("6749", "4.1.3")
async def test_another_redirect_uri_at_the_token_endpoint_gets_invalid_grant(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    for other in ("http://127.0.0.1:50124/callback", "http://127.0.0.1/callback"):
        answer = await redeem(site, app, code, redirect_uri=other)
        assert_oauth_error(answer, 400, "invalid_grant")


@pytest.mark.rfc("6749", "4.1.3")
async def test_another_client_at_the_token_endpoint_gets_invalid_grant(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    async with site.runtime.store.transaction() as tx:
        default = await tx.clients.get("devicelink-cli")
        assert default is not None
        await tx.clients.add(replace(default, client_id="other-cli", name="Other"))
    code = await code_for(signed_in, app)
    answer = await redeem(site, app, code, client_id="other-cli")
    assert_oauth_error(answer, 400, "invalid_grant")
    # An unknown client is not a client at all.
    assert_oauth_error(await redeem(site, app, code, client_id="nobody"), 401, "invalid_client")


@pytest.mark.rfc("6749", "4.1.2")
async def test_an_expired_code_gets_invalid_grant(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    site.clock.advance(60)
    assert_oauth_error(await redeem(site, app, code), 400, "invalid_grant")


@pytest.mark.rfc("6749", "4.1.2")
async def test_a_code_a_second_before_expiry_still_works(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    site.clock.advance(59)
    assert (await redeem(site, app, code)).status_code == 200


@pytest.mark.rfc("6749", "4.1.2")
async def test_a_replayed_code_gets_invalid_grant_and_its_key_is_revoked(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    first = await redeem(site, app, code)
    assert first.status_code == 200
    key = first.json()["access_token"]
    bearer = {"Authorization": f"Bearer {key}"}
    assert (await site.device.get("/api/me", headers=bearer)).status_code == 200

    again = await redeem(site, app, code)
    assert_oauth_error(again, 400, "invalid_grant")
    assert (await site.device.get("/api/me", headers=bearer)).status_code == 401
    # A third time: still refused, and nothing else happens.
    assert_oauth_error(await redeem(site, app, code), 400, "invalid_grant")


async def test_an_unknown_code_and_missing_parameters_are_refused(
    site: Site, app: NativeApp
) -> None:
    assert_oauth_error(await redeem(site, app, "not-a-code"), 400, "invalid_grant")
    for missing in ("code", "redirect_uri", "code_verifier", "client_id"):
        form = app.token_form("x")
        del form[missing]
        answer = await site.device.post("/oauth/token", data=form)
        assert_oauth_error(answer, 400, "invalid_request")
    no_grant = await site.device.post("/oauth/token", data={"code": "x"})
    assert_oauth_error(no_grant, 400, "invalid_request")
    implicit = await site.device.post("/oauth/token", data={"grant_type": "password"})
    assert_oauth_error(implicit, 400, "unsupported_grant_type")


async def test_a_client_without_the_code_grant_cannot_redeem(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    await set_client(site, grant_types=("urn:ietf:params:oauth:grant-type:device_code",))
    assert_oauth_error(await redeem(site, app, code), 400, "unauthorized_client")


# --- the device grant, switched off per client ----------------------------------------------


async def set_client(site: Site, **changes: object) -> Client:
    async with site.runtime.store.transaction() as tx:
        stored = await tx.clients.get("devicelink-cli")
        assert stored is not None
        changed = replace(stored, **changes)  # type: ignore[arg-type]
        assert await tx.clients.update(changed)
    return changed


@pytest.mark.rfc("6749", "5.2")
async def test_a_client_without_the_device_grant_gets_unauthorized_client(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    await set_client(site, grant_types=(AUTHORIZATION_CODE_GRANT,))
    started = await site.device.post(
        "/oauth/device/authorize", data={"client_id": "devicelink-cli"}
    )
    assert_oauth_error(started, 400, "unauthorized_client")
    # Without client_id either (the server's default client is this one).
    assert_oauth_error(
        await site.device.post("/oauth/device/authorize"), 400, "unauthorized_client"
    )
    # Same-device sign-in still works for it.
    code = await code_for(signed_in, app)
    assert (await redeem(site, app, code)).status_code == 200


@pytest.mark.rfc("8628", "3.5")
async def test_switching_the_device_grant_off_stops_flows_already_started(
    site: Site, signed_in: Browser
) -> None:
    """The switch acts at once (an operator reacting to a device-code phishing
    campaign): a flow started before it cannot be approved, and one approved before it
    gets no key; each device learns why, as access_denied."""
    waiting, approved = await site.start_flow(), await site.start_flow()
    confirm = await signed_in.enter_code(approved["user_code"])
    assert (await signed_in.decide(confirm, "approve")).status_code == 200
    await set_client(site, grant_types=(AUTHORIZATION_CODE_GRANT,))

    page = await signed_in.decide(await signed_in.enter_code(waiting["user_code"]), "approve")
    assert "the device grant is off" in page.text
    assert await site.status_of(waiting["user_code"]) == "denied"
    for flow in (waiting, approved):
        answer = await site.poll(flow["device_code"])
        assert_oauth_error(answer, 400, "access_denied")
        assert "the device grant is off" in answer.json()["error_description"]
    async with site.runtime.store.transaction() as tx:
        assert await tx.api_keys.list_all() == []  # no key was issued
