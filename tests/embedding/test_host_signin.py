"""The host's sign-in first (issue 17, item 4), through examples/host_app: a visitor
signed in nowhere goes to the host's sign-in page (``LOGIN_URL``) and back; devicelink
needs no local accounts then; a host user is known by ``subject``, so two users the host
calls "sam" are two accounts; Sign out is the host's (``LOGOUT_URL``) or hidden."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from examples.host_app.app import build_app
from fastapi import FastAPI

from devicelink.core.models import Identity, User
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server import DeviceLink
from tests.support.http import approve, arun, poll, start_flow

pytestmark = pytest.mark.anyio

HOST = "https://app.example.com"


def host_settings(settings: Settings, **updates: Any) -> Settings:
    """devicelink under /auth of the host, signing in only the host's users."""
    return settings.model_copy(
        update={
            "public_url": f"{HOST}/auth",
            "local_accounts": False,
            "login_url": "/host/login",
            **updates,
        }
    )


class Browser:
    """A browser on the host: ``http`` speaks to devicelink (paths under /auth),
    :meth:`host` to the host's own pages; the two share cookies."""

    def __init__(self, app: FastAPI, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http

    async def host(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, HOST + path, **kwargs)

    async def sign_in_at_host(self, username: str, user_id: str | None = None) -> None:
        form = {"username": username, **({"user_id": user_id} if user_id else {})}
        assert (await self.host("POST", "/host/login", data=form)).status_code == 200

    async def device_key(self) -> str:
        """A device's flow approved by the browser's signed-in host user; its key."""
        flow = await arun(self.http, start_flow())
        await arun(self.http, approve(flow["user_code"]))
        token = await arun(self.http, poll(flow["device_code"]))
        assert token.status_code == 200, token.text
        key: str = token.json()["access_token"]
        return key

    async def account(self, subject: str) -> User:
        runtime = DeviceLink.runtime_of(self.app)
        async with runtime.store.transaction() as tx:
            user = await tx.users.get_by_subject("host", subject)
        assert user is not None
        return user


async def open_browser(app: FastAPI) -> AsyncIterator[Browser]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=f"{HOST}/auth") as http:
            yield Browser(app, http)


@pytest.fixture
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    async for opened in open_browser(build_app(host_settings(settings))):
        yield opened


async def test_a_visitor_signed_in_nowhere_signs_in_at_the_host_and_comes_back(
    browser: Browser,
) -> None:
    """The defect: the visitor landed on devicelink's own sign-in page, where no host
    user can sign in."""
    flow = await arun(browser.http, start_flow())
    link = await browser.http.get(flow["verification_uri_complete"])
    assert link.status_code == 303
    location = urlsplit(link.headers["location"])
    assert location.path == "/host/login"  # the host's sign-in, not devicelink's
    (back,) = parse_qs(location.query)["next"]
    assert back == f"/auth/oauth/device/verify?user_code={flow['user_code']}"

    # The host's sign-in page carries next through its form and sends the user back.
    page = await browser.host("GET", link.headers["location"])
    assert 'name="next" value="/auth/oauth/device/verify?user_code=' in page.text
    signed_in = await browser.host("POST", "/host/login", data={"username": "alice", "next": back})
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == back

    code_page = await browser.host("GET", back)
    assert code_page.status_code == 200
    assert flow["user_code"] in code_page.text  # pre-filled from the link
    await arun(browser.http, approve(flow["user_code"]))
    token = await arun(browser.http, poll(flow["device_code"]))
    assert token.status_code == 200, token.text
    key = token.json()["access_token"]
    whoami = await browser.host("GET", "/host/whoami", headers={"Authorization": f"Bearer {key}"})
    assert whoami.json() == {"user": "alice"}


async def test_devicelinks_sign_in_page_sends_to_the_hosts_with_a_checked_next(
    browser: Browser,
) -> None:
    devices = await browser.http.get("/login", params={"next": "/auth/devices"})
    assert devices.status_code == 303
    assert devices.headers["location"] == "/host/login?next=%2Fauth%2Fdevices"
    for outside in ("https://evil.example/", "//evil.example/x", "/host/admin", "/\\evil"):
        answer = await browser.http.get("/login", params={"next": outside})
        assert answer.headers["location"] == "/host/login?next=%2Fauth%2Foauth%2Fdevice%2Fverify"
    # The example host sends users back only to devicelink's own paths.
    for outside in ("https://evil.example/", "//evil.example/x", "/host/whoami"):
        answer = await browser.host("POST", "/host/login", data={"username": "a", "next": outside})
        assert answer.status_code == 200
        assert "location" not in answer.headers


async def test_two_host_users_with_one_name_are_two_accounts(browser: Browser) -> None:
    """The defect: the second "sam" (another subject) was silently sent to sign-in."""
    await browser.sign_in_at_host("sam", user_id="u-1")
    first_key = await browser.device_key()
    await browser.sign_in_at_host("sam", user_id="u-2")
    second_key = await browser.device_key()

    first, second = await browser.account("u-1"), await browser.account("u-2")
    assert first.id != second.id
    assert first.shown_name == second.shown_name == "sam"
    assert first.username != second.username  # the unique account name, each its own

    whoami = {}
    for key in (first_key, second_key):
        auth = {"Authorization": f"Bearer {key}"}
        whoami[key] = (await browser.host("GET", "/host/whoami", headers=auth)).json()
    assert whoami == {first_key: {"user": "u-1"}, second_key: {"user": "u-2"}}
    me = [
        (await browser.http.get("/api/me", headers={"Authorization": f"Bearer {key}"})).json()
        for key in (first_key, second_key)
    ]
    assert [answer["sub"] for answer in me] == [first.username, second.username]

    devices = await browser.http.get("/devices")  # signed in as u-2: their device only
    assert devices.text.count('class="device state-active"') == 1
    assert ">sam<" in devices.text


async def test_a_host_user_renamed_at_the_host_is_renamed_here(browser: Browser) -> None:
    await browser.sign_in_at_host("sam", user_id="u-1")
    assert ">sam<" in (await browser.http.get("/oauth/device/verify")).text
    await browser.sign_in_at_host("Samuel", user_id="u-1")
    page = await browser.http.get("/oauth/device/verify")
    assert ">Samuel<" in page.text
    account = await browser.account("u-1")
    assert (account.username, account.display_name) == ("sam", "Samuel")


async def test_first_visits_at_the_same_moment_make_one_account_per_user(
    browser: Browser,
) -> None:
    """Two new users named alike, and one user in two tabs, arriving together."""
    sessions = DeviceLink.runtime_of(browser.app).sessions
    visits = [Identity("host", subject, "kim") for subject in ("k-1", "k-2", "k-1", "k-2")]
    opened = await asyncio.gather(*(sessions.sign_in(None, visit) for visit in visits))
    users = [session.user for session in opened]
    assert all(user is not None for user in users)
    ids = [user.id for user in users if user is not None]
    assert ids == [ids[0], ids[1], ids[0], ids[1]]
    assert ids[0] != ids[1]
    names = {user.username for user in users if user is not None}
    assert len(names) == 2
    assert "kim" in names


async def test_a_local_account_does_not_keep_a_host_user_out(settings: Settings) -> None:
    """A host user whose name a local account has gets an account of their own."""
    with_local = host_settings(settings, local_accounts=True)
    async for browser in open_browser(build_app(with_local)):
        runtime = DeviceLink.runtime_of(browser.app)
        async with runtime.store.transaction() as tx:
            await tx.users.add("admin", None, runtime.flows.now())
        await browser.sign_in_at_host("admin", user_id="h-7")
        assert await browser.device_key()
        account = await browser.account("h-7")
        assert account.username.startswith("admin~")
        assert account.shown_name == "admin"


async def test_a_host_user_disabled_here_is_told_so_not_sent_round_in_circles(
    browser: Browser,
) -> None:
    await browser.sign_in_at_host("mallory", user_id="u-9")
    assert (await browser.http.get("/oauth/device/verify")).status_code == 200
    runtime = DeviceLink.runtime_of(browser.app)
    account = await browser.account("u-9")
    async with runtime.store.transaction() as tx:
        await tx.users.disable(account.id, now=runtime.flows.now())
    browser.http.cookies.delete("devicelink_session")
    browser.http.cookies.delete("__Host-devicelink")
    page = await browser.http.get("/oauth/device/verify")
    assert page.status_code == 403  # not a redirect to the host, who would send them back
    assert "cannot sign in" in page.text


async def test_sign_out_is_the_hosts_or_not_offered(settings: Settings) -> None:
    async for browser in open_browser(build_app(host_settings(settings))):
        await browser.sign_in_at_host("alice")
        page = await browser.http.get("/oauth/device/verify")
        assert "Sign out" not in page.text  # devicelink's would leave the host session on
    with_logout = host_settings(settings, logout_url="/host/logout")
    async for browser in open_browser(build_app(with_logout)):
        await browser.sign_in_at_host("alice")
        page = await browser.http.get("/oauth/device/verify")
        assert '<a href="/host/logout" class="link">Sign out</a>' in page.text
        await browser.host("GET", "/host/logout")
        after = await browser.http.get("/oauth/device/verify")
        assert after.headers["location"].startswith("/host/login?next=")


def test_no_local_accounts_is_valid_with_the_hosts_sign_in_only(settings: Settings) -> None:
    standalone = settings.model_copy(update={"local_accounts": False})
    with pytest.raises(ConfigurationError, match="no way to sign in"):
        standalone.check()
    standalone.check(resolves_users=True)  # DeviceLink(..., resolve_user=...)

    with pytest.raises(ConfigurationError, match=r"DEVICELINK_LOGIN_URL .* resolve_user"):
        settings.model_copy(update={"login_url": "/host/login"}).check()
    for bad in ("javascript:alert(1)", "//evil.example/login", "host/login", "/a b"):
        with pytest.raises(ConfigurationError, match="DEVICELINK_LOGIN_URL must be"):
            settings.model_copy(update={"login_url": bad}).check(resolves_users=True)
    for good in ("/host/login", "https://sso.example.com/login?app=acme"):
        settings.model_copy(update={"login_url": good}).check(resolves_users=True)


async def test_a_standalone_server_without_local_accounts_is_refused(settings: Settings) -> None:
    devicelink = DeviceLink(host_settings(settings, login_url=None))  # no resolve_user
    app = FastAPI(lifespan=devicelink.lifespan)
    with pytest.raises(ConfigurationError, match="no way to sign in"):
        async with app.router.lifespan_context(app):
            pass
