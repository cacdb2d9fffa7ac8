"""CSRF, brute-force limits, open redirects, cookies and headers of the browser pages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from devicelink.http.pages.common import safe_next
from devicelink.runtime.settings import Settings
from devicelink.storage import SqlStore
from devicelink.storage.tables import browser_sessions
from tests.pages.pagetools import Browser, Confirming, Flow, Site, heading_of
from tests.support.http import PASSWORD, csrf_of, decision
from tests.support.processes import run_operator

pytestmark = pytest.mark.anyio


# --- CSRF (DESIGN.md defect 6) ---------------------------------------------------------


@pytest.mark.defect(6)
@pytest.mark.parametrize("token", [None, "", "forged-token", "0" * 64])
async def test_defect_6_approval_without_a_valid_csrf_token_is_refused(
    site: Site, browser: Browser, confirming: Confirming, token: str | None
) -> None:
    flow, _ = confirming
    form = {"action": "approve"}
    if token is not None:
        form["csrf_token"] = token
    response = await browser.http.post("/oauth/device/decide", data=form)
    assert response.status_code == 403
    assert "text/html" in response.headers["content-type"]
    assert "Nothing was changed" in response.text
    assert await site.status_of(flow["user_code"]) == "pending"


async def test_csrf_token_of_another_session_is_refused(site: Site, browser: Browser) -> None:
    await site.add_user()
    await site.add_user("mallory")
    flow = await site.start_flow()
    await browser.sign_in()
    await browser.enter_code(flow["user_code"])
    async with site.open_browser("192.0.2.66") as attacker:
        await attacker.sign_in("mallory")
        their_token = csrf_of(await attacker.http.get("/oauth/device/verify"))
    response = await browser.http.post(
        "/oauth/device/decide", data={"action": "approve", "csrf_token": their_token}
    )
    assert response.status_code == 403
    assert await site.status_of(flow["user_code"]) == "pending"


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
]
SAME_ORIGIN = [
    {"Origin": "https://login.example.com", "Sec-Fetch-Site": "same-origin"},
    # What Chromium sends under Referrer-Policy: no-referrer.
    {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
]


@pytest.mark.parametrize(
    ("headers", "status", "state"),
    [(headers, 403, "pending") for headers in CROSS_SITE]
    + [(headers, 200, "approved") for headers in SAME_ORIGIN],
)
async def test_only_a_same_origin_post_is_accepted_even_with_the_right_token(
    site: Site,
    browser: Browser,
    confirming: Confirming,
    headers: dict[str, str],
    status: int,
    state: str,
) -> None:
    flow, confirm = confirming
    response = await browser.http.post(
        "/oauth/device/decide",
        data=decision(confirm, "approve"),
        headers=headers,
    )
    assert response.status_code == status
    assert await site.status_of(flow["user_code"]) == state


async def test_sign_in_form_needs_its_csrf_token(site: Site, browser: Browser) -> None:
    await site.add_user()
    await browser.http.get("/login")
    response = await browser.http.post("/login", data={"username": "alice", "password": "x"})
    assert response.status_code == 403


# --- sign-in and sessions --------------------------------------------------------------


async def stored_sessions(site: Site) -> int:
    store = site.runtime.store
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as connection:
        count = await connection.execute(select(func.count()).select_from(browser_sessions))
        return int(count.scalar_one())


async def test_visits_of_the_sign_in_page_store_nothing(site: Site) -> None:
    """Issue 13, finding 8: cookieless visits used to write a session row each, kept an
    hour. The sign-in form's CSRF token now derives from the cookie's token alone; the
    row is written when the form signs someone in."""
    await site.add_user()
    for index in range(50):
        async with site.open_browser(f"198.18.1.{index + 1}") as visitor:
            assert (await visitor.http.get("/login")).status_code == 200
    assert await stored_sessions(site) == 0
    async with site.open_browser() as browser:
        first = await browser.http.get("/login")
        again = await browser.http.get("/login")
        assert "set-cookie" in first.headers
        assert "set-cookie" not in again.headers  # the same anonymous token, kept
        assert csrf_of(first) == csrf_of(again)
        assert await stored_sessions(site) == 0
        assert (await browser.sign_in()).status_code == 303
    assert await stored_sessions(site) == 1


async def test_wrong_password_is_refused_without_saying_which_part_was_wrong(
    site: Site, browser: Browser
) -> None:
    await site.add_user()
    wrong_password = await browser.sign_in(password="not the password")
    wrong_user = await browser.sign_in(username="nobody")
    assert wrong_password.status_code == wrong_user.status_code == 400
    assert "Wrong username or password" in wrong_password.text
    assert "Wrong username or password" in wrong_user.text
    assert (await browser.http.get("/oauth/device/verify")).status_code == 303


async def test_session_cookie_is_httponly_lax_secure_and_rotated_at_sign_in(
    site: Site, browser: Browser
) -> None:
    await site.add_user()
    login_page = await browser.http.get("/login")
    anonymous = login_page.headers["set-cookie"]
    signed_in = await browser.sign_in()
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith("__Host-devicelink=")  # PUBLIC_URL is https in these tests
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "secure" in lowered
    assert "path=/" in lowered
    assert "domain=" not in lowered
    assert anonymous.split(";")[0] != cookie.split(";")[0]


async def test_sign_out_ends_the_session_on_the_server(site: Site, browser: Browser) -> None:
    await site.add_user()
    await browser.sign_in()
    stolen = dict(browser.http.cookies)
    page = await browser.http.get("/oauth/device/verify")
    out = await browser.http.post("/logout", data={"csrf_token": csrf_of(page)})
    assert heading_of(out) == "Signed out"
    host = urlsplit(site.public_url).hostname
    assert host is not None
    async with site.open_browser() as thief:
        for name, value in stolen.items():
            thief.http.cookies.set(name, value, domain=host)
        assert (await thief.http.get("/oauth/device/verify")).status_code == 303


@pytest.mark.parametrize(
    "command",
    [("users", "passwd", "alice", "--password-stdin"), ("users", "disable", "alice")],
    ids=["passwd", "disable"],
)
async def test_a_password_change_or_disabling_signs_the_accounts_browsers_out(
    site: Site, site_settings: Settings, tmp_path: Path, command: tuple[str, ...]
) -> None:
    await site.add_user("alice")
    await site.add_user("bob")
    async with site.open_browser() as alices, site.open_browser() as bobs:
        await alices.sign_in("alice")
        await bobs.sign_in("bob")
        assert (await alices.http.get("/oauth/device/verify")).status_code == 200

        done = await run_operator(
            site_settings.effective_database_url(), tmp_path, *command, stdin="a new password\n"
        )
        assert done.returncode == 0, done.stderr

        after = await alices.http.get("/oauth/device/verify")
        assert after.status_code == 303  # asked to sign in again
        assert after.headers["location"].startswith("/login")
        assert (await bobs.http.get("/oauth/device/verify")).status_code == 200
        if command[1] == "passwd":
            assert (await alices.sign_in("alice", "a new password")).status_code == 303
            assert (await alices.http.get("/oauth/device/verify")).status_code == 200


# --- brute force (RFC 8628 section 5.1; DESIGN.md defect 7) ----------------------------


@pytest.fixture
def site_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "code_entry_limit_session": "3/15 minutes",
            "code_entry_limit_ip": "5/hour",
            "code_entry_limit_account": "7/hour",
            "login_account_limit": "20/hour",
        }
    )


async def _fail(browser: Browser, times: int) -> None:
    for _ in range(times):
        assert (await browser.enter_code("BCDF-GHJK")).status_code == 400


@pytest.mark.rfc("8628", "5.1")
@pytest.mark.defect(7)
async def test_defect_7_session_limit_holds_even_for_the_right_code(
    browser: Browser, signed_in_flow: Flow
) -> None:
    await _fail(browser, 3)
    right = await browser.enter_code(signed_in_flow["user_code"])
    assert right.status_code == 429
    assert "try again in" in right.text
    assert int(right.headers["Retry-After"]) > 0
    assert "Approve" not in right.text


@pytest.mark.rfc("8628", "5.1")
async def test_ip_limit_spans_sessions_and_accounts(site: Site) -> None:
    for name in ("u1", "u2", "u3"):
        await site.add_user(name)
    flow = await site.start_flow()
    async with site.open_browser("192.0.2.1") as first, site.open_browser("192.0.2.1") as second:
        await first.sign_in("u1")
        await second.sign_in("u2")
        await _fail(first, 3)
        await _fail(second, 2)
        async with site.open_browser("192.0.2.1") as third:
            await third.sign_in("u3")
            assert (await third.enter_code(flow["user_code"])).status_code == 429
    async with site.open_browser("192.0.2.2") as elsewhere:
        await elsewhere.sign_in("u3")
        assert (await elsewhere.enter_code(flow["user_code"])).status_code == 200


@pytest.mark.rfc("8628", "5.1")
async def test_account_limit_spans_addresses(site: Site) -> None:
    await site.add_user()
    flow = await site.start_flow()
    for index in range(3):
        async with site.open_browser(f"192.0.2.{10 + index}") as browser:
            await browser.sign_in()
            await _fail(browser, 3 if index < 2 else 1)
    async with site.open_browser("192.0.2.99") as fresh:
        await fresh.sign_in()
        assert (await fresh.enter_code(flow["user_code"])).status_code == 429


async def test_password_guessing_is_limited(site: Site, browser: Browser) -> None:
    await site.add_user()
    for _ in range(10):
        assert (await browser.sign_in(password="guess")).status_code == 400
    limited = await browser.sign_in()  # even the right password
    assert limited.status_code == 429
    assert "Too many failed sign-ins" in limited.text
    async with site.open_browser("192.0.2.50") as elsewhere:
        assert (await elsewhere.sign_in()).status_code == 303


async def _strangers_guess(site: Site, username: str, addresses: int) -> None:
    """One wrong password for ``username`` from each of ``addresses`` addresses."""
    for index in range(addresses):
        async with site.open_browser(f"198.18.{index // 200}.{index % 200 + 1}") as stranger:
            assert (await stranger.sign_in(username, "a wrong guess")).status_code in (400, 429)


async def test_strangers_failures_elsewhere_never_lock_the_owner_out(site: Site) -> None:
    """Issue 13, finding 4: failures for a username from many addresses, past both the
    per-address limit (10) and the per-username one (20 here); the owner's right
    password from an address with no failures still signs in."""
    await site.add_user()
    await _strangers_guess(site, "alice", 30)
    async with site.open_browser("192.0.2.77") as owner:
        assert (await owner.sign_in()).status_code == 303


async def test_past_the_username_limit_an_address_that_failed_must_wait(site: Site) -> None:
    """A guesser spread over many addresses: past ``DEVICELINK_LOGIN_ACCOUNT_LIMIT`` each
    address that already failed for the username is refused, even the right password;
    so the spread attack gets one guess per address."""
    await site.add_user()
    await _strangers_guess(site, "ALICE", 20)  # names count up to case
    async with site.open_browser("198.18.0.1") as guesser:
        refused = await guesser.sign_in()
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
    async with site.open_browser("198.18.0.21") as fresh:
        assert (await fresh.sign_in("alice", "another guess")).status_code == 400
        assert (await fresh.sign_in()).status_code == 429


# --- no open redirect ------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "/%0d%0aSet-Cookie:x=y",
        "/\t/evil.example",
    ],
)
async def test_return_address_after_sign_in_stays_on_this_server(
    site: Site, browser: Browser, target: str
) -> None:
    await site.add_user()
    page = await browser.http.get("/login", params={"next": target})
    response = await browser.http.post(
        "/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": csrf_of(page),
            "next": target,
        },
    )
    location = response.headers["location"]
    parts = urlsplit(location)
    assert not parts.scheme
    assert not parts.netloc
    assert location.startswith("/")
    assert not location.startswith("//")


@given(st.text(max_size=80))
def test_safe_next_only_ever_returns_a_local_path(candidate: str) -> None:
    result = safe_next(candidate)
    parts = urlsplit(result)
    assert result.startswith("/")
    assert not result.startswith("//")
    assert not parts.scheme
    assert not parts.netloc
    assert "\\" not in result


# --- headers on every page ---------------------------------------------------------------


async def _every_page(site: Site, browser: Browser) -> dict[str, object]:
    await site.add_user()
    flow = await site.start_flow()
    pages: dict[str, object] = {"login": await browser.http.get("/login")}
    pages["sign-in failed"] = await browser.sign_in(password="wrong")
    await browser.sign_in()
    pages["code"] = await browser.http.get("/oauth/device/verify")
    pages["wrong code"] = await browser.enter_code("BCDF-GHJK")
    confirm = await browser.enter_code(flow["user_code"])
    pages["confirm"] = confirm
    pages["approved"] = await browser.decide(confirm, "approve")
    pages["forbidden"] = await browser.http.post("/oauth/device/decide", data={})
    pages["not found"] = await browser.http.get("/nowhere", headers={"Accept": "text/html"})
    pages["device api"] = await site.device.post("/oauth/device/authorize", data={})
    return pages


async def test_every_page_refuses_framing_and_referrers(site: Site, browser: Browser) -> None:
    for name, response in (await _every_page(site, browser)).items():
        headers = response.headers  # type: ignore[attr-defined]
        assert headers["X-Frame-Options"] == "DENY", name
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, name
        assert "unsafe-inline" not in csp, name
        assert "script-src" not in csp, name
        assert "default-src 'none'" in csp, name
        assert headers["Referrer-Policy"] == "no-referrer", name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        if "text/html" in headers.get("content-type", ""):
            assert "<script" not in response.text.lower(), name  # type: ignore[attr-defined]
            assert headers["Cache-Control"] == "no-store", name
