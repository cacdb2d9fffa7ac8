"""Upstream sign-in through devicelink's pages against the real provider
(node-oidc-provider on loopback), as issue 13's review attacked it.

Its secrets at rest (finding 7): the ``state``, ``nonce`` and PKCE verifier travel in a
sealed cookie, never in the database nor the logs (even at debug), and nothing is
stored for a visit (finding 8).

Identities nobody can squat (finding 2), with users who chose their own names and
addresses:

- ``Admin`` beside the local ``admin`` becomes its own account, never a second ``admin``
  nor a login to it; account names are unique after NFKC and case folding;
- a name with a zero-width space or a newline and terminal escapes is not a name: the
  provider's ``sub`` names that user instead;
- an unverified ``email`` never names anyone, so it cannot take a colleague's address.

What the device sees is ``sub`` at ``/api/me``: the account name, unique and fixed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
import httpx
import pytest
from pydantic import SecretStr

from devicelink.http.pages.signin import OIDC_CALLBACK_PATH, OIDC_LOGIN_PATH
from devicelink.idp.local import hash_password
from devicelink.runtime.logging import configure_logging
from devicelink.runtime.sealing import Sealer
from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from devicelink.storage.tables import metadata
from oidc_provider.fixture import TEST_EMAIL, sign_in_with_httpx, start_oidc_provider
from tests.pages.pagetools import Browser
from tests.support.app import FakeClock
from tests.support.http import csrf_of, decision, token_form

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

PUBLIC_URL = "http://127.0.0.1:8766"
CLIENT_ID = "devicelink-squat"
CLIENT_SECRET = "squat-client-secret-" + "q" * 24
PASSWORD = "chosen-password"
WIDE_ADMIN = "\uff41\uff44\uff4d\uff49\uff4e"  # "admin" in full-width letters
ACCOUNTS: dict[str, dict[str, Any]] = {
    "u-upper": {"username": "upper", "claims": {"preferred_username": "Admin"}},
    # "admin" in full-width letters
    "u-wide": {
        "username": "wide",
        "claims": {"preferred_username": "\uff41\uff44\uff4d\uff49\uff4e"},
    },
    "u-zwsp": {"username": "zwsp", "claims": {"preferred_username": "admin\u200b"}},
    "u-forger": {
        "username": "forger",
        "claims": {"preferred_username": "mallory\n2026-12-04 09:00:00  key_revoked  admin\x1b[2K"},
    },
    "u-unverified": {
        "username": "unverified",
        "claims": {"email": TEST_EMAIL, "email_verified": False},
    },
    "u-colleague": {
        "username": "colleague",
        "claims": {"email": TEST_EMAIL, "email_verified": True},
    },
}


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    accounts = {
        account: {"username": spec["username"], "password": PASSWORD, "claims": spec["claims"]}
        for account, spec in ACCOUNTS.items()
    }
    with start_oidc_provider(
        0, CLIENT_ID, CLIENT_SECRET, PUBLIC_URL + OIDC_CALLBACK_PATH, accounts=accounts
    ) as url:
        yield url


class Devicelink:
    def __init__(self, app: Any, http: httpx.AsyncClient, clock: FakeClock) -> None:
        self.app = app
        self.device = http
        self.clock = clock

    @asynccontextmanager
    async def browser(self) -> AsyncIterator[Browser]:
        transport = httpx.ASGITransport(app=self.app, client=("198.51.100.20", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            yield Browser(http)

    async def sign_in_upstream(self, browser: Browser, provider_username: str) -> None:
        """The browser's upstream sign-in: devicelink's redirect, the provider's form,
        back at the callback."""
        start = await browser.http.get(OIDC_LOGIN_PATH)
        assert start.status_code in (302, 303), start.text
        back = await anyio.to_thread.run_sync(
            _sign_in_at_provider, start.headers["location"], provider_username
        )
        parts = urlsplit(back)
        done = await browser.http.get(f"{parts.path}?{parts.query}")
        assert done.status_code in (302, 303), done.text

    async def sub_of(self, provider_username: str) -> str:
        """Sign in upstream as this provider user, approve a device's flow, and return
        the ``sub`` the device's key is given at ``/api/me``."""
        async with self.browser() as browser:
            await self.sign_in_upstream(browser, provider_username)
            started = await self.device.post(
                "/oauth/device/authorize", data={"client_id": "devicelink-cli"}
            )
            flow = started.json()
            page = await browser.http.get("/oauth/device/verify")
            confirm = await browser.http.post(
                "/oauth/device/verify",
                data={"user_code": flow["user_code"], "csrf_token": csrf_of(page)},
            )
            decided = await browser.http.post(
                "/oauth/device/decide", data=decision(confirm, "approve")
            )
            assert decided.status_code == 200, decided.text
        token = await self.device.post("/oauth/device/token", data=token_form(flow["device_code"]))
        key = token.json()["access_token"]
        me = await self.device.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text
        sub: str = me.json()["sub"]
        return sub


def _sign_in_at_provider(login_url: str, username: str) -> str:
    return str(sign_in_with_httpx(login_url, username, PASSWORD))


@asynccontextmanager
async def devicelink(
    settings: Settings, clock: FakeClock, **changes: object
) -> AsyncIterator[Devicelink]:
    configured = settings.model_copy(update={"public_url": PUBLIC_URL, **changes})
    app = create_app(configured, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            yield Devicelink(app, http, clock)


@pytest.fixture
async def site(settings: Settings, clock: FakeClock, issuer: str) -> AsyncIterator[Devicelink]:
    async with devicelink(
        settings,
        clock,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SecretStr(CLIENT_SECRET),
    ) as started:
        yield started


async def local_admin(site: Devicelink) -> None:
    runtime = site.app.state.devicelink
    async with runtime.store.transaction() as tx:
        await tx.users.add("admin", hash_password("admin-password-x"), site.clock())


async def test_admin_in_another_case_or_width_is_an_account_of_its_own(site: Devicelink) -> None:
    await local_admin(site)
    upper = await site.sub_of("upper")
    wide = await site.sub_of("wide")
    assert upper.startswith("Admin~")
    assert wide.startswith("admin~")  # NFKC: full-width letters are the same name
    assert len({upper, wide, "admin"}) == 3
    # The same upstream user gets the same account, and the same sub, next time.
    assert await site.sub_of("upper") == upper


async def test_a_name_that_is_not_printable_never_names_anyone(site: Devicelink) -> None:
    await local_admin(site)
    assert await site.sub_of("zwsp") == "u-zwsp"
    assert await site.sub_of("forger") == "u-forger"


async def test_an_unverified_email_cannot_take_a_colleagues_address(
    settings: Settings, clock: FakeClock, issuer: str
) -> None:
    async with devicelink(
        settings,
        clock,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SecretStr(CLIENT_SECRET),
        oidc_username_claims="email sub",
    ) as site:
        # The squatter signs in first, with the colleague's address unverified ...
        assert await site.sub_of("unverified") == "u-unverified"
        # ... and the colleague, whose address the provider verified, keeps their name.
        assert await site.sub_of("colleague") == TEST_EMAIL


# --- the sign-in's secrets: in a sealed cookie, nowhere else (findings 7 and 8) ------------


async def everything_stored(site: Devicelink) -> str:
    """Every row of every table, as text."""
    lines: list[str] = []
    async with site.app.state.devicelink.store.engine.connect() as connection:
        for table in metadata.sorted_tables:
            rows = await connection.execute(table.select())
            lines.extend(f"{table.name} {tuple(row)!r}" for row in rows)
    return "\n".join(lines)


@pytest.fixture
def debug_logs() -> Iterator[list[str]]:
    """The server's own logging configuration at DEVICELINK_LOG_LEVEL=debug, every
    record it lets through collected."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    texts: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            texts.append(f"{record.name} {record.getMessage()} {record.__dict__!r}")

    configure_logging("json", "debug")
    root.addHandler(Collect(logging.DEBUG))
    try:
        yield texts
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


async def test_the_sign_ins_secrets_are_never_stored_nor_logged(
    site: Devicelink, debug_logs: list[str]
) -> None:
    runtime = site.app.state.devicelink
    async with site.browser() as browser:
        start = await browser.http.get(OIDC_LOGIN_PATH)
        query = dict(parse_qsl(urlsplit(start.headers["location"]).query))
        sealed = browser.http.cookies["devicelink_upstream"]
        kept = runtime.sealer.open(sealed, max_age=600)
        secrets = {"state": query["state"], "nonce": query["nonce"]}
        secrets["code_verifier"] = kept["code_verifier"]
        assert kept["state"] == secrets["state"]
        assert "browser_sessions" not in await everything_stored(site)  # nothing for a visit
        for value in secrets.values():
            assert value not in sealed

        back = await anyio.to_thread.run_sync(
            _sign_in_at_provider, start.headers["location"], "upper"
        )
        parts = urlsplit(back)
        done = await browser.http.get(f"{parts.path}?{parts.query}")
        assert done.status_code == 303
        assert "devicelink_upstream" not in browser.http.cookies  # used once
        signed_in = await browser.http.get("/oauth/device/verify")
        assert signed_in.status_code == 200

    stored = await everything_stored(site)
    assert "browser_sessions" in stored  # the signed-in session
    assert any("devicelink.access" in text for text in debug_logs)  # debug was on
    for name, value in secrets.items():
        assert value not in stored, f"{name} stored"
        assert not [text for text in debug_logs if value in text], f"{name} logged"


async def test_a_stale_altered_or_foreign_sign_in_cookie_is_refused(
    site: Devicelink, settings: Settings, clock: FakeClock
) -> None:
    async def attempt(spoil: str) -> httpx.Response:
        async with site.browser() as browser:
            start = await browser.http.get(OIDC_LOGIN_PATH)
            back = await anyio.to_thread.run_sync(
                _sign_in_at_provider, start.headers["location"], "upper"
            )
            sealed = browser.http.cookies["devicelink_upstream"]
            if spoil == "stale":
                clock.advance(601)
            elif spoil == "altered":
                flipped = "A" if sealed[40] != "A" else "B"
                browser.http.cookies.set("devicelink_upstream", sealed[:40] + flipped + sealed[41:])
            elif spoil == "foreign":
                other = Sealer(b"another-server-secret-" + b"y" * 32, "upstream-sign-in")
                browser.http.cookies.set("devicelink_upstream", other.seal({"state": "s"}))
            parts = urlsplit(back)
            return await browser.http.get(f"{parts.path}?{parts.query}")

    for spoil in ("stale", "altered", "foreign"):
        refused = await attempt(spoil)
        assert refused.status_code == 400, spoil
        assert "Sign-in expired" in refused.text
    assert (await attempt("none")).status_code == 303
