"""The upstream's back-channel logout (OpenID Connect Back-Channel Logout 1.0; issue 18,
item 8), against the real provider (node-oidc-provider on loopback) posting its logout
tokens to devicelink served by uvicorn on loopback.

A user signs in upstream through devicelink and approves a device; when their session
at the provider ends, the provider posts a logout token and, per
``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT``, the device's key stops working (``revoke-keys``,
the key issuer told as for ``users disable``) or only their browser sessions end
(``end-sessions``); ``off`` means no endpoint. Tokens that fail a check of section 2.6
(forged, signed by another key, for another client, stale, with a nonce, replayed...)
get 400 and change nothing.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from joserfc.util import json_b64encode
from pydantic import SecretStr

from devicelink.core.models import ApiKey
from devicelink.core.ports import Transaction
from devicelink.http.pages.signin import OIDC_CALLBACK_PATH, OIDC_LOGIN_PATH
from devicelink.idp.backchannel import LOGOUT_EVENT
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.runtime.upstream_logout import BACKCHANNEL_LOGOUT_PATH
from devicelink.server.app import create_app
from devicelink.service.issuing import StoredKeyIssuer
from oidc_provider.fixture import (
    TEST_ACCOUNT_ID,
    TEST_PASSWORD,
    TEST_USERNAME,
    sign_in_with_httpx,
    sign_out_at_provider,
    start_oidc_provider,
)
from tests.support.http import csrf_of, decision, token_form
from tests.support.processes import free_port

pytestmark = [pytest.mark.slow]

CLIENT_ID = "devicelink-bcl"
CLIENT_SECRET = "bcl-client-secret-" + "b" * 24
KID = "test-rsa-bcl"
BOB = "u-bob"
BOB_PASSWORD = "bob-password"


@pytest.fixture(scope="module")
def port() -> int:
    """devicelink's port: the provider knows its callback and logout URIs at start."""
    return free_port()


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    """The provider's signing key, so that tests can sign tokens as the provider would."""
    return RSAKey.generate_key(2048, parameters={"kid": KID})


@pytest.fixture(scope="module")
def issuer(port: int, signing_key: RSAKey) -> Iterator[str]:
    base = f"http://127.0.0.1:{port}"
    bob = {"username": "bob", "password": BOB_PASSWORD, "claims": {"preferred_username": "bob"}}
    with start_oidc_provider(
        0,
        CLIENT_ID,
        CLIENT_SECRET,
        base + OIDC_CALLBACK_PATH,
        accounts={BOB: bob},
        backchannel_logout_uri=base + BACKCHANNEL_LOGOUT_PATH,
        signing_jwk=signing_key.as_dict(private=True),
    ) as url:
        yield url


class RecordingIssuer(StoredKeyIssuer):
    """devicelink's own keys, remembering which ones it was asked to revoke (as a host's
    issuer would hear of them)."""

    def __init__(self) -> None:
        self.revoked: list[int] = []

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None:
        self.revoked.append(key.id)
        await super().revoke(tx, key=key, now=now)


class Site:
    """devicelink on loopback, and what a user and a device do with it."""

    def __init__(self, base_url: str, issuer: str, key_issuer: RecordingIssuer) -> None:
        self.base_url = base_url
        self.issuer = issuer
        self.key_issuer = key_issuer
        self._clients: list[httpx.Client] = []
        self.device = self.client(base_url=base_url)

    def client(self, **options: Any) -> httpx.Client:
        """An HTTP client, closed when the site stops."""
        self._clients.append(httpx.Client(timeout=10.0, **options))
        return self._clients[-1]

    def browser(self) -> httpx.Client:
        """A browser's cookies at devicelink (its cookies at the provider are another's)."""
        return self.client(base_url=self.base_url)

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def sign_in_upstream(
        self, browser: httpx.Client, at_provider: httpx.Client, username: str, password: str
    ) -> None:
        start = browser.get(OIDC_LOGIN_PATH)
        assert start.status_code in (302, 303), start.text
        back = urlsplit(
            sign_in_with_httpx(start.headers["location"], username, password, at_provider)
        )
        done = browser.get(f"{back.path}?{back.query}")
        assert done.status_code == 303, done.text

    def approve_device(self, browser: httpx.Client) -> str:
        """A device's flow, approved in ``browser`` (signed in): the device's key."""
        flow = self.device.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        page = browser.get("/oauth/device/verify")
        confirm = browser.post(
            "/oauth/device/verify",
            data={"user_code": flow.json()["user_code"], "csrf_token": csrf_of(page)},
        )
        decided = browser.post("/oauth/device/decide", data=decision(confirm, "approve"))
        assert decided.status_code == 200, decided.text
        token = self.device.post("/oauth/device/token", data=token_form(flow.json()["device_code"]))
        key: str = token.json()["access_token"]
        return key

    def me(self, key: str) -> int:
        """What ``/api/me`` answers the key."""
        return self.device.get("/api/me", headers={"Authorization": f"Bearer {key}"}).status_code

    @staticmethod
    def signed_in(browser: httpx.Client) -> bool:
        """The browser is still signed in here: the code page opens, rather than sign-in."""
        page = browser.get("/oauth/device/verify")
        assert page.status_code in (200, 302, 303), page.text
        return page.status_code == 200

    def post_logout(self, logout_token: str | None) -> httpx.Response:
        data = {} if logout_token is None else {"logout_token": logout_token}
        return self.device.post(BACKCHANNEL_LOGOUT_PATH, data=data)


@contextmanager
def serving(settings: Settings, port: int, issuer: str, action: str) -> Iterator[Site]:
    """devicelink with ``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT=action``, served by uvicorn."""
    base_url = f"http://127.0.0.1:{port}"
    configured = settings.model_copy(
        update={
            "public_url": base_url,
            "oidc_issuer": issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
            "oidc_backchannel_logout": action,
        }
    )
    key_issuer = RecordingIssuer()
    app = create_app(configured, key_issuer=key_issuer)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "devicelink stopped while starting"
        assert time.monotonic() < deadline, "devicelink did not start"
        time.sleep(0.02)
    site = Site(base_url, issuer, key_issuer)
    try:
        yield site
    finally:
        site.close()
        server.should_exit = True
        thread.join(15)


def signed_in_user(site: Site, username: str, password: str) -> tuple[httpx.Client, httpx.Client]:
    """A user signed in upstream through devicelink: their browser here, and the same
    browser's cookies at the provider."""
    browser, at_provider = site.browser(), site.client()
    site.sign_in_upstream(browser, at_provider, username, password)
    return browser, at_provider


def test_signing_out_upstream_revokes_the_users_keys(
    settings: Settings, port: int, issuer: str
) -> None:
    with serving(settings, port, issuer, "revoke-keys") as site:
        browser, at_provider = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        bob_browser, _ = signed_in_user(site, "bob", BOB_PASSWORD)
        key, second = site.approve_device(browser), site.approve_device(browser)
        bobs = site.approve_device(bob_browser)
        assert site.me(key) == site.me(second) == site.me(bobs) == 200

        sign_out_at_provider(issuer, at_provider)

        # Both of alice's keys stop working, and her browser here is signed out ...
        assert site.me(key) == site.me(second) == 401
        assert not site.signed_in(browser)
        assert len(site.key_issuer.revoked) == 2  # the issuer heard of both
        # ... while bob, who did not sign out, keeps his session and his key.
        assert site.me(bobs) == 200
        assert site.signed_in(bob_browser)
        # Signing out is not being disabled: alice signs in again and gets a new key.
        browser, at_provider = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        assert site.me(site.approve_device(browser)) == 200


def test_with_end_sessions_the_keys_outlive_the_browser_sessions(
    settings: Settings, port: int, issuer: str
) -> None:
    with serving(settings, port, issuer, "end-sessions") as site:
        browser, at_provider = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        key = site.approve_device(browser)

        sign_out_at_provider(issuer, at_provider)

        assert not site.signed_in(browser)
        assert site.me(key) == 200
        assert site.key_issuer.revoked == []


def test_off_means_no_endpoint(settings: Settings, port: int, issuer: str) -> None:
    with serving(settings, port, issuer, "off") as site:
        browser, at_provider = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        key = site.approve_device(browser)
        assert site.post_logout("a.b.c").status_code == 404

        sign_out_at_provider(issuer, at_provider)  # the provider's post gets 404 too

        assert site.me(key) == 200
        assert site.signed_in(browser)


# --- tokens that must change nothing (section 2.6) -------------------------------------


def claims(issuer: str, **changes: Any) -> dict[str, Any]:
    """A logout token's claims as the provider signs them, with ``changes`` (None
    removes a claim)."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": issuer,
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "sub": TEST_ACCOUNT_ID,
        "sid": secrets.token_urlsafe(16),
        "events": {LOGOUT_EVENT: {}},
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def signed(key: RSAKey, payload: dict[str, Any], **header: str) -> str:
    return jwt.encode({"alg": "RS256", "kid": KID, "typ": "logout+jwt", **header}, payload, key)


def unsigned(payload: dict[str, Any]) -> str:
    """An ``alg: none`` token (joserfc refuses to make one)."""
    head = json_b64encode({"alg": "none", "typ": "logout+jwt"}).decode()
    return f"{head}.{json_b64encode(payload).decode()}."


def refused_tokens(issuer: str, key: RSAKey) -> dict[str, tuple[str | None, str]]:
    """Each way a logout token may fail, by name: the token, and the reason devicelink
    must give (section 2.8: a 400 with ``error_description``)."""
    old = int(time.time()) - 3600
    impostor = RSAKey.generate_key(2048, parameters={"kid": KID})
    unverified = "signature could not be verified"
    return {
        "no token": (None, "logout_token is required"),
        "not a JWT": ("not-a-jwt", "not a signed JWT"),
        "forged (alg none)": (unsigned(claims(issuer)), unverified),
        "forged (HS256, the client secret)": (
            jwt.encode(
                {"alg": "HS256", "kid": KID},
                claims(issuer),
                OctKey.import_key(CLIENT_SECRET),
                algorithms=["HS256"],
            ),
            unverified,
        ),
        "signed by another key with the provider's kid": (
            signed(impostor, claims(issuer)),
            unverified,
        ),
        "for another client": (signed(key, claims(issuer, aud="another-client")), "'aud'"),
        "from another issuer": (
            signed(key, claims(issuer, iss="https://elsewhere.example")),
            "'iss'",
        ),
        "expired": (signed(key, claims(issuer, iat=old, exp=old + 120)), "expired"),
        "issued long ago, expiring in a year": (
            signed(key, claims(issuer, iat=old, exp=old + 366 * 86_400)),
            "too old",
        ),
        "issued long ago, without exp (as older Keycloak versions sign them)": (
            signed(key, claims(issuer, iat=old, exp=None)),
            "too old",
        ),
        "issued in the future": (
            signed(key, claims(issuer, iat=int(time.time()) + 3600)),
            "in the future",
        ),
        "with a nonce (an ID token)": (
            signed(key, claims(issuer, nonce="n-0S6_WzA2Mj")),
            "must not carry a nonce",
        ),
        "without the logout event": (
            signed(key, claims(issuer, events={"other": {}})),
            "no back-channel logout event",
        ),
        "without jti": (signed(key, claims(issuer, jti=None)), "'jti'"),
        "with neither sub nor sid": (
            signed(key, claims(issuer, sub=None, sid=None)),
            "neither a user (sub) nor a session",
        ),
        "with sid alone": (signed(key, claims(issuer, sub=None)), "needs sub"),
        "an access token (typ)": (signed(key, claims(issuer), typ="at+jwt"), "(typ)"),
    }


def test_tokens_that_fail_a_check_get_400_and_change_nothing(
    settings: Settings, port: int, issuer: str, signing_key: RSAKey
) -> None:
    with serving(settings, port, issuer, "revoke-keys") as site:
        browser, _ = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        key = site.approve_device(browser)

        for name, (token, reason) in refused_tokens(issuer, signing_key).items():
            answer = site.post_logout(token)
            assert answer.status_code == 400, f"{name}: {answer.text}"
            assert answer.json()["error"] == "invalid_request", name
            assert reason in answer.json()["error_description"], name
            assert answer.headers["cache-control"] == "no-store", name
            assert site.me(key) == 200, name
            assert site.signed_in(browser), name

        # The same claims, signed as the provider signs them, are taken ...
        token = signed(signing_key, claims(issuer))
        assert site.post_logout(token).status_code == 200
        assert site.me(key) == 401
        assert not site.signed_in(browser)

        # ... once: replayed after alice signed in again, it must not end her new session.
        browser, _ = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        new_key = site.approve_device(browser)
        replayed = site.post_logout(token)
        assert replayed.status_code == 400
        assert "already received" in replayed.json()["error_description"]
        assert site.me(new_key) == 200
        assert site.signed_in(browser)


def test_a_logout_for_someone_who_never_signed_in_here_is_taken_and_does_nothing(
    settings: Settings, port: int, issuer: str, signing_key: RSAKey
) -> None:
    with serving(settings, port, issuer, "revoke-keys") as site:
        browser, _ = signed_in_user(site, TEST_USERNAME, TEST_PASSWORD)
        key = site.approve_device(browser)
        stranger = signed(signing_key, claims(issuer, sub="u-stranger"))
        assert site.post_logout(stranger).status_code == 200
        assert site.me(key) == 200


# --- the setting ---------------------------------------------------------------------------


def test_the_setting_is_a_stated_choice_with_an_upstream(settings: Settings) -> None:
    wrong = settings.model_copy(
        update={"oidc_issuer": "https://id.example.com", "oidc_client_id": "devicelink"}
    )
    with pytest.raises(ConfigurationError, match="off, end-sessions or revoke-keys"):
        wrong.model_copy(update={"oidc_backchannel_logout": "yes"}).check()
    without_upstream = settings.model_copy(update={"oidc_backchannel_logout": "revoke-keys"})
    with pytest.raises(ConfigurationError, match="needs DEVICELINK_OIDC_ISSUER"):
        without_upstream.check()
