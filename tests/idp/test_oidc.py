"""Upstream OpenID Connect sign-in against a real provider (node-oidc-provider on loopback),
and ID token validation against tokens the real provider would never produce."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio.to_thread
import httpx
import pytest
import respx
from joserfc import jwt
from joserfc.jwk import RSAKey

from devicelink.core.models import Identity
from devicelink.core.ports import Authenticator, LoginFailed
from devicelink.idp.oidc import OidcAuthenticator
from oidc_provider.fixture import (
    TEST_ACCOUNT_ID,
    TEST_EMAIL,
    TEST_PASSWORD,
    TEST_USERNAME,
    cancel_sign_in_with_httpx,
    sign_in_with_httpx,
    start_oidc_provider,
)

pytestmark = pytest.mark.anyio

CLIENT_ID = "devicelink-test"
CLIENT_SECRET = "test-client-secret-" + "z" * 24
CALLBACK = "http://127.0.0.1:8765/login/oidc/callback"


# --- the real provider ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """Confidential client; profile and email claims only at the userinfo endpoint."""
    with start_oidc_provider(0, CLIENT_ID, CLIENT_SECRET, CALLBACK) as url:
        yield url


class Recorder:
    """An httpx client that remembers the URLs the authenticator requested."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.http = httpx.AsyncClient(event_hooks={"request": [self._record]})

    async def _record(self, request: httpx.Request) -> None:
        self.urls.append(str(request.url))

    def paths(self) -> list[str]:
        return [urlsplit(url).path for url in self.urls]


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    async with rec.http:
        yield rec


@pytest.fixture
def oidc(issuer: str, recorder: Recorder) -> OidcAuthenticator:
    return OidcAuthenticator(issuer, CLIENT_ID, CLIENT_SECRET, http=recorder.http)


async def sign_in(
    auth: OidcAuthenticator, password: str = TEST_PASSWORD
) -> tuple[dict[str, str], dict[str, str]]:
    """The browser's part: authorization URL -> provider login -> back at the callback."""
    redirect = await auth.login_redirect(callback_url=CALLBACK)
    final = await anyio.to_thread.run_sync(
        sign_in_with_httpx, redirect.url, TEST_USERNAME, password
    )
    assert final.startswith(CALLBACK + "?")
    return dict(parse_qsl(urlsplit(final).query)), dict(redirect.transient)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_implements_the_authenticator_protocol() -> None:
    auth: Authenticator = OidcAuthenticator("https://login.corp.example/realms/x", "c", "s")
    assert auth.name == "oidc"
    assert auth.label == "Sign in with login.corp.example"
    labelled = OidcAuthenticator("https://login.corp.example", "c", None, label="Sign in with Corp")
    assert labelled.label == "Sign in with Corp"


@pytest.mark.slow
async def test_login_redirect_is_an_authorization_request_with_pkce_state_and_nonce(
    oidc: OidcAuthenticator, issuer: str
) -> None:
    """OIDC Core 3.1.2.1 with RFC 7636 S256; every attempt gets fresh secrets."""
    first = await oidc.login_redirect(callback_url=CALLBACK)
    second = await oidc.login_redirect(callback_url=CALLBACK)
    url = urlsplit(first.url)
    query = dict(parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{issuer}/auth"
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == CALLBACK
    assert query["scope"] == "openid profile email"
    assert query["code_challenge_method"] == "S256"
    assert query["state"] == first.transient["state"]
    assert query["nonce"] == first.transient["nonce"]
    verifier = first.transient["code_verifier"]
    assert 43 <= len(verifier) <= 128
    digest = hashlib.sha256(verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert "code_verifier" not in query
    assert set(first.transient) == {"state", "nonce", "code_verifier"}
    for key in first.transient:
        assert first.transient[key] != second.transient[key]
        assert len(first.transient[key]) >= 43


@pytest.mark.slow
async def test_sign_in_at_the_real_provider_yields_the_identity(
    oidc: OidcAuthenticator, issuer: str, recorder: Recorder
) -> None:
    params, transient = await sign_in(oidc)
    assert params["iss"] == issuer
    assert params["code"]
    identity = await oidc.identity_from_callback(params, transient=transient, callback_url=CALLBACK)
    assert identity == Identity(
        provider="oidc", subject=f"{issuer}|{TEST_ACCOUNT_ID}", username=TEST_USERNAME
    )
    # preferred_username was not in the ID token, so the userinfo endpoint was asked;
    # discovery was fetched once for both calls.
    assert recorder.paths().count("/.well-known/openid-configuration") == 1
    assert recorder.paths()[-1] == "/me"


@pytest.mark.slow
async def test_username_claims_choose_the_claim(issuer: str, recorder: Recorder) -> None:
    auth = OidcAuthenticator(
        issuer, CLIENT_ID, CLIENT_SECRET, username_claims=("email",), http=recorder.http
    )
    params, transient = await sign_in(auth)
    identity = await auth.identity_from_callback(params, transient=transient, callback_url=CALLBACK)
    assert identity.username == TEST_EMAIL
    assert identity.subject == f"{issuer}|{TEST_ACCOUNT_ID}"


@pytest.mark.slow
async def test_claims_in_the_id_token_need_no_userinfo_request(recorder: Recorder) -> None:
    with start_oidc_provider(0, CLIENT_ID, CLIENT_SECRET, CALLBACK, id_token_claims=True) as url:
        auth = OidcAuthenticator(url, CLIENT_ID, CLIENT_SECRET, http=recorder.http)
        params, transient = await sign_in(auth)
        identity = await auth.identity_from_callback(
            params, transient=transient, callback_url=CALLBACK
        )
    assert identity.username == TEST_USERNAME
    assert "/me" not in recorder.paths()


@pytest.mark.slow
async def test_a_public_client_signs_in_with_pkce_alone(recorder: Recorder) -> None:
    with start_oidc_provider(0, "public-cli", "", CALLBACK) as url:
        auth = OidcAuthenticator(url, "public-cli", None, http=recorder.http)
        params, transient = await sign_in(auth)
        identity = await auth.identity_from_callback(
            params, transient=transient, callback_url=CALLBACK
        )
    assert identity.username == TEST_USERNAME


@pytest.mark.slow
async def test_a_tampered_state_is_refused(oidc: OidcAuthenticator) -> None:
    params, transient = await sign_in(oidc)
    for state in (params["state"] + "x", "", None):
        forged = (
            {**params, "state": state}
            if state is not None
            else {k: v for k, v in params.items() if k != "state"}
        )
        with pytest.raises(LoginFailed, match="expired or was started elsewhere"):
            await oidc.identity_from_callback(forged, transient=transient, callback_url=CALLBACK)
    with pytest.raises(LoginFailed):  # no state kept in the session at all
        await oidc.identity_from_callback(params, transient={}, callback_url=CALLBACK)


@pytest.mark.slow
async def test_a_wrong_nonce_is_refused(oidc: OidcAuthenticator) -> None:
    params, transient = await sign_in(oidc)
    transient["nonce"] = "not-the-nonce-of-this-request"
    with pytest.raises(LoginFailed, match="could not be verified"):
        await oidc.identity_from_callback(params, transient=transient, callback_url=CALLBACK)


@pytest.mark.slow
async def test_a_wrong_code_verifier_is_refused_by_the_provider(oidc: OidcAuthenticator) -> None:
    params, transient = await sign_in(oidc)
    transient["code_verifier"] = "x" * 64
    with pytest.raises(LoginFailed, match="please start again"):
        await oidc.identity_from_callback(params, transient=transient, callback_url=CALLBACK)


@pytest.mark.slow
async def test_a_replayed_code_is_refused(oidc: OidcAuthenticator) -> None:
    params, transient = await sign_in(oidc)
    await oidc.identity_from_callback(params, transient=transient, callback_url=CALLBACK)
    with pytest.raises(LoginFailed, match="please start again"):
        await oidc.identity_from_callback(params, transient=transient, callback_url=CALLBACK)


@pytest.mark.slow
async def test_a_mismatched_iss_parameter_is_refused(oidc: OidcAuthenticator) -> None:
    """RFC 9207: the provider names itself in the response; another issuer is a mix-up."""
    params, transient = await sign_in(oidc)
    params["iss"] = "https://evil.example.com"
    with pytest.raises(LoginFailed):
        await oidc.identity_from_callback(params, transient=transient, callback_url=CALLBACK)


@pytest.mark.slow
async def test_cancelling_at_the_provider_is_a_readable_failure(oidc: OidcAuthenticator) -> None:
    redirect = await oidc.login_redirect(callback_url=CALLBACK)
    final = await anyio.to_thread.run_sync(cancel_sign_in_with_httpx, redirect.url)
    params = dict(parse_qsl(urlsplit(final).query))
    assert params["error"] == "access_denied"
    with pytest.raises(LoginFailed, match="cancelled or refused"):
        await oidc.identity_from_callback(
            params, transient=dict(redirect.transient), callback_url=CALLBACK
        )


async def test_error_callbacks_never_echo_the_description() -> None:
    auth = OidcAuthenticator("https://idp.example.test", CLIENT_ID, CLIENT_SECRET)
    transient = {"state": "s", "nonce": "n", "code_verifier": "v"}
    with pytest.raises(LoginFailed, match="cancelled or refused"):
        await auth.identity_from_callback(
            {"error": "access_denied", "state": "s"}, transient=transient, callback_url=CALLBACK
        )
    params = {"error": "server_error", "error_description": "Call +1 555 0100 now", "state": "s"}
    with pytest.raises(LoginFailed, match=r"reported an error \(server_error\)") as failure:
        await auth.identity_from_callback(params, transient=transient, callback_url=CALLBACK)
    assert "555" not in str(failure.value)
    with pytest.raises(LoginFailed, match=r"\(unknown error\)"):
        await auth.identity_from_callback(
            {"error": "<script>"}, transient=transient, callback_url=CALLBACK
        )


@pytest.mark.slow
async def test_an_unreachable_provider_is_a_login_failure(recorder: Recorder) -> None:
    auth = OidcAuthenticator(
        f"http://127.0.0.1:{closed_port()}", CLIENT_ID, CLIENT_SECRET, http=recorder.http
    )
    with pytest.raises(LoginFailed, match="could not be reached"):
        await auth.login_redirect(callback_url=CALLBACK)
    with pytest.raises(LoginFailed, match="could not be reached"):
        await auth.identity_from_callback(
            {"code": "c", "state": "s"},
            transient={"state": "s", "nonce": "n", "code_verifier": "v"},
            callback_url=CALLBACK,
        )


@pytest.mark.slow
async def test_the_discovered_issuer_must_be_the_configured_one(
    issuer: str, recorder: Recorder
) -> None:
    auth = OidcAuthenticator(issuer + "/", CLIENT_ID, CLIENT_SECRET, http=recorder.http)
    with pytest.raises(LoginFailed, match="misconfigured"):
        await auth.login_redirect(callback_url=CALLBACK)


async def test_an_authenticator_without_a_client_closes_its_own() -> None:
    auth = OidcAuthenticator(
        f"http://127.0.0.1:{closed_port()}", CLIENT_ID, CLIENT_SECRET, timeout=2
    )
    with pytest.raises(LoginFailed):
        await auth.login_redirect(callback_url=CALLBACK)
    await auth.aclose()
    await auth.aclose()


# --- ID token validation with crafted tokens (OIDC Core 3.1.3.7) ----------------------------

FAKE_ISSUER = "https://idp.example.test"
NONCE = "nonce-of-this-request"
TRANSIENT = {"state": "state-1", "nonce": NONCE, "code_verifier": "v" * 64}
CALLBACK_PARAMS = {"code": "code-1", "state": "state-1", "iss": FAKE_ISSUER}
KEY = RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig", "alg": "RS256"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "key-1", "use": "sig", "alg": "RS256"})
ROTATED_KEY = RSAKey.generate_key(2048, parameters={"kid": "key-2", "use": "sig", "alg": "RS256"})


def jwks(*keys: RSAKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def id_token(key: RSAKey = KEY, alg: str = "RS256", **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": FAKE_ISSUER,
        "sub": "user-42",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "preferred_username": "crafted-bob",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])


class FakeProvider:
    def __init__(self, mock: respx.MockRouter) -> None:
        mock.get("/.well-known/openid-configuration").respond(
            json={
                "issuer": FAKE_ISSUER,
                "authorization_endpoint": f"{FAKE_ISSUER}/authorize",
                "token_endpoint": f"{FAKE_ISSUER}/token",
                "jwks_uri": f"{FAKE_ISSUER}/jwks",
                "userinfo_endpoint": f"{FAKE_ISSUER}/userinfo",
            }
        )
        self.jwks = mock.get("/jwks").respond(json=jwks(KEY))
        self.token = mock.post("/token")
        self.userinfo = mock.get("/userinfo")

    def issues(self, token: str) -> None:
        self.token.respond(json={"access_token": "at-1", "token_type": "Bearer", "id_token": token})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[OidcAuthenticator, FakeProvider]]:
    async with (
        respx.mock(base_url=FAKE_ISSUER, assert_all_called=False) as mock,
        httpx.AsyncClient() as http,
    ):
        yield (
            OidcAuthenticator(FAKE_ISSUER, CLIENT_ID, CLIENT_SECRET, http=http),
            FakeProvider(mock),
        )


async def redeem(auth: OidcAuthenticator) -> Identity:
    return await auth.identity_from_callback(
        CALLBACK_PARAMS, transient=TRANSIENT, callback_url=CALLBACK
    )


async def test_a_valid_crafted_token_is_accepted(
    fake: tuple[OidcAuthenticator, FakeProvider],
) -> None:
    auth, provider = fake
    provider.issues(id_token(exp=int(time.time()) - 30))  # expired, but within the leeway
    identity = await redeem(auth)
    assert identity == Identity("oidc", f"{FAKE_ISSUER}|user-42", "crafted-bob")
    request = provider.token.calls.last.request
    secret = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {secret}"
    form = dict(parse_qsl(request.content.decode()))
    assert form == {
        "grant_type": "authorization_code",
        "code": "code-1",
        "redirect_uri": CALLBACK,
        "code_verifier": TRANSIENT["code_verifier"],
    }
    assert not provider.userinfo.called


@pytest.mark.parametrize(
    ("why", "token"),
    [
        ("wrong audience", lambda: id_token(aud="someone-else")),
        ("audience list without us", lambda: id_token(aud=["a", "b"])),
        ("several audiences, no azp", lambda: id_token(aud=[CLIENT_ID, "other"])),
        ("azp of another client", lambda: id_token(azp="other")),
        ("expired", lambda: id_token(exp=int(time.time()) - 3600)),
        ("wrong issuer", lambda: id_token(iss="https://evil.example.com")),
        ("no iat", lambda: id_token(iat=None)),
        ("issued in the future", lambda: id_token(iat=int(time.time()) + 3600)),
        ("no exp", lambda: id_token(exp=None)),
        ("no sub", lambda: id_token(sub=None)),
        ("no nonce", lambda: id_token(nonce=None)),
        ("another nonce", lambda: id_token(nonce="replayed-from-elsewhere")),
        ("signed by another key with the same kid", lambda: id_token(key=OTHER_KEY)),
        ("unsigned", lambda: unsigned(id_token())),
        ("not a JWT", lambda: "garbage"),
    ],
)
async def test_bad_id_tokens_are_refused(
    fake: tuple[OidcAuthenticator, FakeProvider], why: str, token: Any
) -> None:
    auth, provider = fake
    provider.issues(token())
    with pytest.raises(LoginFailed, match="could not be verified"):
        await redeem(auth)


def unsigned(token: str) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"key-1"}').rstrip(b"=").decode()
    return f"{header}.{token.split('.')[1]}."


async def test_several_audiences_with_our_azp_are_accepted(
    fake: tuple[OidcAuthenticator, FakeProvider],
) -> None:
    auth, provider = fake
    provider.issues(id_token(aud=[CLIENT_ID, "api"], azp=CLIENT_ID))
    assert (await redeem(auth)).username == "crafted-bob"


async def test_an_unknown_kid_refetches_the_jwks_once(
    fake: tuple[OidcAuthenticator, FakeProvider],
) -> None:
    auth, provider = fake
    provider.issues(id_token())
    await redeem(auth)  # caches the JWKS with key-1
    provider.jwks.respond(json=jwks(ROTATED_KEY))
    provider.issues(id_token(key=ROTATED_KEY))
    assert (await redeem(auth)).username == "crafted-bob"
    assert provider.jwks.call_count == 2
    provider.issues(id_token(key=RSAKey.generate_key(2048, parameters={"kid": "key-3"})))
    with pytest.raises(LoginFailed, match="could not be verified"):
        await redeem(auth)
    assert provider.jwks.call_count == 3  # one refetch per token, not a loop


async def test_userinfo_must_describe_the_same_subject(
    fake: tuple[OidcAuthenticator, FakeProvider],
) -> None:
    auth, provider = fake
    provider.issues(id_token(preferred_username=None))
    provider.userinfo.respond(json={"sub": "user-42", "preferred_username": "from-userinfo"})
    assert (await redeem(auth)).username == "from-userinfo"
    assert provider.userinfo.calls.last.request.headers["authorization"] == "Bearer at-1"
    provider.userinfo.respond(json={"sub": "someone-else", "preferred_username": "mallory"})
    with pytest.raises(LoginFailed, match="could not be verified"):
        await redeem(auth)


async def test_token_endpoint_failures_are_login_failures(
    fake: tuple[OidcAuthenticator, FakeProvider],
) -> None:
    auth, provider = fake
    provider.token.respond(503, text="down")
    with pytest.raises(LoginFailed, match="could not be reached"):
        await redeem(auth)
    provider.token.mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(LoginFailed, match="could not be reached"):
        await redeem(auth)
    provider.token.mock(side_effect=None)
    provider.token.respond(200, json={"access_token": "at-1", "token_type": "Bearer"})
    with pytest.raises(LoginFailed, match="could not be verified"):  # no id_token
        await redeem(auth)


async def test_nothing_secret_is_logged(
    fake: tuple[OidcAuthenticator, FakeProvider], caplog: pytest.LogCaptureFixture
) -> None:
    auth, provider = fake
    token = id_token(aud="someone-else")
    provider.issues(token)
    with caplog.at_level(logging.DEBUG), pytest.raises(LoginFailed):
        await redeem(auth)
    assert caplog.records
    for secret in (token, CLIENT_SECRET, "at-1", "code-1", NONCE, TRANSIENT["code_verifier"]):
        assert secret not in caplog.text


@pytest.mark.slow
async def test_outside_development_a_provider_with_http_endpoints_is_refused(
    issuer: str, recorder: Recorder
) -> None:
    """Issue 13, finding 9: outside development the endpoints a discovery document names
    must be https (the real provider here serves http on loopback); ``config check``
    says which."""
    strict = OidcAuthenticator(
        issuer, CLIENT_ID, CLIENT_SECRET, http=recorder.http, require_https=True
    )
    with pytest.raises(LoginFailed, match="misconfigured"):
        await strict.login_redirect(callback_url=CALLBACK)
    problems = await strict.discovery_problems()
    assert problems is not None
    assert [problem.split()[2] for problem in problems] == [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
    ]
    assert all("must be https:// outside development" in problem for problem in problems)
    lenient = OidcAuthenticator(issuer, CLIENT_ID, CLIENT_SECRET, http=recorder.http)
    assert await lenient.discovery_problems() == []
    assert (await lenient.login_redirect(callback_url=CALLBACK)).url.startswith(issuer)


async def test_an_unreadable_discovery_document_is_no_verdict() -> None:
    unreachable = f"https://127.0.0.1:{closed_port()}/realms/x"
    auth = OidcAuthenticator(unreachable, CLIENT_ID, CLIENT_SECRET, require_https=True)
    try:
        assert await auth.discovery_problems() is None
    finally:
        await auth.aclose()
