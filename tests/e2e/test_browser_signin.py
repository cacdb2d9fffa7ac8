"""The whole flow in the real Chromium against a running ``devicelink serve``.

A device starts a flow over HTTP; the user opens ``verification_uri_complete`` in
Chromium (Debian's package, driven by Playwright, nothing downloaded), signs in (a local
account, or an upstream OpenID Connect provider process), compares the code, approves or
denies; the device's next poll gets its key or ``access_denied``.

Every page is saved as a screenshot under ``tests/artifacts/screenshots/``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.oidc_provider.fixture import TEST_PASSWORD, TEST_USERNAME, start_oidc_provider
from tests.support.http import token_form
from tests.support.processes import clean_env, free_port, one_time_passwords
from tests.support.servers import Launcher

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"


def shot(page: Page, folder: str, name: str) -> None:
    target = SCREENSHOTS / folder
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def start_flow(base_url: str) -> dict[str, str]:
    response = httpx.post(
        f"{base_url}/oauth/device/authorize",
        data={"client_id": "devicelink-cli"},
        headers={"User-Agent": "devicelink/0.1 (Linux x86_64; Python 3.11)"},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def poll(base_url: str, device_code: str) -> httpx.Response:
    return httpx.post(f"{base_url}/oauth/device/token", data=token_form(device_code))


def compare_and_decide(page: Page, flow: dict[str, str], folder: str, action: str) -> None:
    """From the pre-filled code page: continue, compare the code, click ``action``."""
    code_input = page.get_by_label("Code")
    expect(code_input).to_have_value(flow["user_code"])
    shot(page, folder, "02-code")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Is this your device?")).to_be_visible()
    expect(page.get_by_label("Code to compare")).to_have_text(flow["user_code"])
    approve = page.get_by_role("button", name="Approve")
    deny = page.get_by_role("button", name="Deny")
    expect(approve).to_be_visible()
    expect(deny).to_be_visible()
    approve_box, deny_box = approve.bounding_box(), deny.bounding_box()
    assert approve_box
    assert deny_box
    # Equally visible: the same size, side by side.
    assert abs(approve_box["width"] - deny_box["width"]) < 2
    assert abs(approve_box["height"] - deny_box["height"]) < 2
    shot(page, folder, "03-confirm")
    page.get_by_role("button", name=action).click()


@pytest.fixture
def local_server(launch: Launcher, tmp_path: Path) -> tuple[str, str, Path]:
    """An embedded-default server in an empty directory; its first account's password."""
    server = launch(env=clean_env(), cwd=tmp_path)
    passwords = one_time_passwords(server.stderr())
    assert len(passwords) == 1, server.stderr()
    return server.base_url, passwords[0], tmp_path / "devicelink-data" / "devicelink.db"


@pytest.mark.rfc("8628", "3.3")
@pytest.mark.rfc("8628", "3.5")
def test_local_account_approves_in_chromium_and_the_device_gets_its_key(
    chromium: Browser, local_server: tuple[str, str, Path]
) -> None:
    base_url, password, _ = local_server
    flow = start_flow(base_url)
    assert poll(base_url, flow["device_code"]).json()["error"] == "authorization_pending"
    context = chromium.new_context(viewport={"width": 420, "height": 860})
    page = context.new_page()
    try:
        page.goto(flow["verification_uri_complete"])
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        shot(page, "local", "01-sign-in")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
        shot(page, "local", "01b-sign-in-failed")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        # A second tab on the same confirm page, left open (used further down).
        second_tab = context.new_page()
        second_tab.goto(flow["verification_uri_complete"])
        second_tab.get_by_role("button", name="Continue").click()
        expect(second_tab.get_by_role("button", name="Approve")).to_be_visible()

        compare_and_decide(page, flow, "local", "Approve")
        expect(page.get_by_role("heading", name="Device approved")).to_be_visible()
        expect(page.get_by_text("return to your terminal")).to_be_visible()
        shot(page, "local", "04-approved")

        token = poll(base_url, flow["device_code"])
        assert token.status_code == 200, token.text
        key = token.json()["access_token"]
        me = httpx.get(f"{base_url}/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.json()["username"] == "admin"

        # Approving again from the other tab: the code is used, nothing changes.
        second_tab.get_by_role("button", name="Approve").click()
        expect(second_tab.get_by_role("heading", name="This code was already used")).to_be_visible()
        shot(second_tab, "local", "06-already-used")
        assert poll(base_url, flow["device_code"]).json()["error"] == "invalid_grant"

        # The connected-devices page lists the CLI; revoking it there cuts it off.
        page.goto(f"{base_url}/devices")
        expect(page.get_by_text("devicelink/0.1 (Linux x86_64; Python 3.11)")).to_be_visible()
        shot(page, "local", "09-devices")
        page.get_by_role("button", name="Revoke devicelink CLI").click()
        expect(page.get_by_role("status")).to_contain_text("Revoked 1 device")
        shot(page, "local", "10-device-revoked")
        me = httpx.get(f"{base_url}/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 401
    finally:
        context.close()


@pytest.mark.rfc("8628", "3.5")
def test_local_account_denies_in_chromium_and_the_device_gets_access_denied(
    chromium: Browser, local_server: tuple[str, str, Path]
) -> None:
    base_url, password, database = local_server
    context = chromium.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{base_url}/login")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()

        wrong = start_flow(base_url)
        page.get_by_label("Code").fill("BCDF GHJK")
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("alert")).to_contain_text("That code is not valid")
        shot(page, "local", "02b-wrong-code")

        flow = start_flow(base_url)
        page.goto(flow["verification_uri_complete"])
        compare_and_decide(page, flow, "local-deny", "Deny")
        expect(page.get_by_role("heading", name="Request denied")).to_be_visible()
        shot(page, "local", "05-denied")
        assert poll(base_url, flow["device_code"]).json()["error"] == "access_denied"

        # A code that expires while its confirm page is open: approving changes nothing.
        page.goto(wrong["verification_uri_complete"])
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("button", name="Approve")).to_be_visible()
        with sqlite3.connect(database) as db:  # let the code's ten minutes pass
            db.execute("UPDATE device_authorizations SET expires_at = '2000-01-01 00:00:00'")
        page.get_by_role("button", name="Approve").click()
        expect(page.get_by_role("heading", name="This code has expired")).to_be_visible()
        shot(page, "local", "07-expired")
        assert poll(base_url, wrong["device_code"]).json()["error"] == "expired_token"

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
        shot(page, "local", "08-signed-out")
    finally:
        context.close()


@pytest.mark.rfc("8628", "3.3")
def test_upstream_openid_connect_sign_in_approves_in_chromium(
    chromium: Browser, launch: Launcher, tmp_path: Path
) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/login/oidc/callback"
    with start_oidc_provider(0, "devicelink", "upstream-secret", callback) as issuer:
        server = launch(
            env=clean_env(
                DEVICELINK_OIDC_ISSUER=issuer,
                DEVICELINK_OIDC_CLIENT_ID="devicelink",
                DEVICELINK_OIDC_CLIENT_SECRET="upstream-secret",
                DEVICELINK_OIDC_LABEL="Sign in with Example SSO",
            ),
            cwd=tmp_path,
            port=port,
        )
        flow = start_flow(server.base_url)
        context = chromium.new_context(viewport={"width": 420, "height": 860})
        page = context.new_page()
        try:
            page.goto(flow["verification_uri_complete"])
            shot(page, "oidc", "01-sign-in")
            page.get_by_role("link", name="Sign in with Example SSO").click()
            page.get_by_label("Username").fill(TEST_USERNAME)
            page.get_by_label("Password").fill(TEST_PASSWORD)
            shot(page, "oidc", "01b-upstream-sign-in")
            page.get_by_role("button", name="Sign in").click()
            compare_and_decide(page, flow, "oidc", "Approve")
            expect(page.get_by_role("heading", name="Device approved")).to_be_visible()
            shot(page, "oidc", "04-approved")
        finally:
            context.close()
        token = poll(server.base_url, flow["device_code"])
        assert token.status_code == 200, token.text
        me = httpx.get(
            f"{server.base_url}/api/me",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert me.json()["username"] == TEST_USERNAME


@pytest.mark.rfc("8628", "5.4")
def test_approve_acts_on_the_code_on_its_own_tab_not_the_last_one_opened(
    chromium: Browser, local_server: tuple[str, str, Path]
) -> None:
    """A phisher gets the user to open the phisher's link in a second tab; the user goes
    back to the tab with their own code and presses Approve. Their own device gets the
    key; the phisher's stays pending (issue 13, item 1)."""
    base_url, password, _ = local_server
    own, phishers = start_flow(base_url), start_flow(base_url)
    context = chromium.new_context(viewport={"width": 420, "height": 860})
    try:
        mine = context.new_page()
        mine.goto(own["verification_uri_complete"])
        mine.get_by_label("Username").fill("admin")
        mine.get_by_label("Password").fill(password)
        mine.get_by_role("button", name="Sign in").click()
        mine.get_by_role("button", name="Continue").click()
        expect(mine.get_by_label("Code to compare")).to_have_text(own["user_code"])

        theirs = context.new_page()  # the same browser session, opened after
        theirs.goto(phishers["verification_uri_complete"])
        theirs.get_by_role("button", name="Continue").click()
        expect(theirs.get_by_label("Code to compare")).to_have_text(phishers["user_code"])

        mine.bring_to_front()
        mine.get_by_role("button", name="Approve").click()
        expect(mine.get_by_role("heading", name="Device approved")).to_be_visible()
        shot(mine, "local", "11-two-tabs-approved-own")
    finally:
        context.close()
    assert poll(base_url, own["device_code"]).status_code == 200
    assert poll(base_url, phishers["device_code"]).json()["error"] == "authorization_pending"
