"""Same-device sign-in over HTTP, on SQLite and PostgreSQL: the authorization request
checked, sign-in on the existing pages, the consent page, the code sent back to the
application's loopback listener with ``state`` and ``iss``, and the code redeemed once
for the same key response as the device grant's (RFC 6749 section 4.1, RFC 7636,
RFC 8252, RFC 9207; DESIGN.md "Same-device sign-in")."""

from __future__ import annotations

import html

import pytest

from devicelink.core.models import AuditKind
from tests.authcode.conftest import NativeApp, callback_params, code_for, consent_page, press
from tests.pages.pagetools import Browser, Site, heading_of

pytestmark = pytest.mark.anyio


@pytest.mark.rfc("8414", "2")
async def test_metadata_names_both_grants_the_authorization_endpoint_and_s256(
    site: Site,
) -> None:
    body = (await site.device.get("/.well-known/oauth-authorization-server")).json()
    issuer = site.public_url
    assert body["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert body["token_endpoint"] == f"{issuer}/oauth/token"
    assert body["device_authorization_endpoint"] == f"{issuer}/oauth/device/authorize"
    assert body["response_types_supported"] == ["code"]
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert set(body["grant_types_supported"]) == {
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
    }
    assert body["authorization_response_iss_parameter_supported"] is True


@pytest.mark.rfc("6749", "4.1.1")
@pytest.mark.rfc("9207", "2")
async def test_a_signed_in_user_approves_and_the_application_gets_a_working_key(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    consent = await consent_page(signed_in, app)
    answer = await press(signed_in, consent, "approve")
    params = callback_params(answer, app)
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == app.state
    assert params["iss"] == site.public_url
    assert answer.headers["cache-control"] == "no-store"

    token = await site.device.post("/oauth/token", data=app.token_form(params["code"]))
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("dlk_")
    assert body["expires_in"] == 30 * 86_400
    assert body["scope"] == "api"
    me = await site.device.get(
        "/api/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["client_id"] == "devicelink-cli"


@pytest.mark.rfc("8252", "7.3")
async def test_any_port_and_the_ipv6_loopback_are_accepted(site: Site, signed_in: Browser) -> None:
    for redirect_uri in ("http://[::1]:61000/callback", "http://127.0.0.1/callback"):
        app = NativeApp(redirect_uri=redirect_uri)
        code = await code_for(signed_in, app)
        token = await site.device.post("/oauth/token", data=app.token_form(code))
        assert token.status_code == 200, token.text


async def test_without_a_session_the_request_goes_to_sign_in_and_back(
    site: Site, browser: Browser, app: NativeApp
) -> None:
    await site.add_user()
    first = await browser.http.get(app.authorize_url())
    assert first.status_code == 303
    login_url = first.headers["location"]
    assert login_url.startswith("/login?next=")
    signed = await browser.sign_in(login_url=login_url)
    assert signed.status_code == 303
    back = signed.headers["location"]
    assert back == app.authorize_url()
    consent = await browser.http.get(back)
    assert consent.status_code == 200
    assert "Approve" in consent.text


@pytest.mark.defect(6)
async def test_the_consent_page_says_who_asks_for_what_and_where_the_key_goes(
    signed_in: Browser, app: NativeApp
) -> None:
    page = await consent_page(signed_in, app)
    text = html.unescape(page.text)
    assert "devicelink CLI" in heading_of(page)  # the application's name
    assert "Use the API as you" in text  # the scope in plain words
    assert "an application on this computer" in text
    assert "127.0.0.1:50123" in text
    assert "alice" in text
    assert 'name="csrf_token"' in text
    # Both choices in one form, the same kind of button.
    assert '<button type="submit" name="action" value="deny" class="choice deny">' in text
    assert '<button type="submit" name="action" value="approve" class="choice approve">' in text
    assert page.headers["x-frame-options"] == "DENY"
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    # The form's answer redirects to the listener, and nowhere else.
    assert "form-action 'self' http://127.0.0.1:50123;" in policy
    assert page.headers["cache-control"] == "no-store"


async def test_a_decision_without_the_csrf_token_changes_nothing(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    consent = await consent_page(signed_in, app)
    forged = await signed_in.http.post(
        "/oauth/authorize/decide",
        data={"action": "approve", "request": "x", "csrf_token": "forged"},
    )
    assert forged.status_code == 403
    assert "location" not in forged.headers
    async with site.runtime.store.transaction() as tx:
        events = await tx.audit.recent()
    assert AuditKind.CODE_ISSUED not in {event.kind for event in events}
    assert consent.status_code == 200


async def test_codes_issued_redeemed_and_replayed_are_audited_and_counted(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    assert (await site.device.post("/oauth/token", data=app.token_form(code))).status_code == 200
    assert (await site.device.post("/oauth/token", data=app.token_form(code))).status_code == 400
    async with site.runtime.store.transaction() as tx:
        events = await tx.audit.recent()
    kinds = [event.kind for event in events]
    for kind in (AuditKind.CODE_ISSUED, AuditKind.CODE_REDEEMED, AuditKind.CODE_REPLAYED):
        assert kinds.count(kind) == 1, kinds
    assert kinds.count(AuditKind.KEY_ISSUED) == 1
    assert kinds.count(AuditKind.REVOKED) == 1
    issued = next(event for event in events if event.kind is AuditKind.CODE_ISSUED)
    assert (issued.username, issued.client_id) == ("alice", "devicelink-cli")
    # Never the code itself, anywhere in the audit log.
    assert all(code not in str(event) for event in events)
    metrics = (await site.device.get("/metrics")).text
    for event in ("issued", "redeemed", "replayed"):
        assert f'devicelink_authorization_codes_total{{event="{event}"}} 1.0' in metrics


async def test_the_key_name_and_device_list_show_the_application(
    site: Site, signed_in: Browser, app: NativeApp
) -> None:
    code = await code_for(signed_in, app)
    token = await site.device.post(
        "/oauth/token", data=app.token_form(code), headers={"User-Agent": "acme-cli/2.0"}
    )
    assert token.status_code == 200
    devices = await signed_in.http.get("/devices")
    assert devices.status_code == 200
    assert "acme-cli/2.0" in html.unescape(devices.text)


async def test_the_device_grant_still_works_at_the_new_token_endpoint(site: Site) -> None:
    user = await site.add_user()
    flow = await site.start_flow()
    assert await site.runtime.flows.approve(flow["user_code"], user_id=user.id) == "ok"
    token = await site.device.post(
        "/oauth/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
            "client_id": "devicelink-cli",
        },
    )
    assert token.status_code == 200, token.text
    assert token.json()["access_token"].startswith("dlk_")
