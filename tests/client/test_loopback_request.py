"""Same-device sign-in without a network: what the metadata must offer (RFC 8414), the
authorization request with PKCE (RFC 7636, RFC 8252), and which redirects end the
sign-in (RFC 6749 section 4.1.2, RFC 9207)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from devicelink.client.loopback_request import (
    Approved,
    AuthorizationRequest,
    Refused,
    Stray,
    authorization_request,
    read_redirect,
)
from devicelink.client.messages import CodeGrant, Endpoints

from .scripted import SERVER, Clock, ScriptedServer, drive, metadata, ok

REDIRECT_URI = "http://127.0.0.1:53682/callback"
GRANT = CodeGrant(
    authorization_endpoint=f"{SERVER}/oauth/authorize", issuer=SERVER, iss_parameter=True
)
LOOPBACK_METADATA: dict[str, Any] = {
    "authorization_endpoint": f"{SERVER}/oauth/authorize",
    "response_types_supported": ["code"],
    "code_challenge_methods_supported": ["S256"],
    "grant_types_supported": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
    "authorization_response_iss_parameter_supported": True,
}


def discovered(**changes: Any) -> Endpoints:
    from devicelink.client.discovery import discover

    body = metadata() | LOOPBACK_METADATA
    body.update(changes)
    body = {k: v for k, v in body.items() if v is not None}
    seen = drive(discover(SERVER), ScriptedServer(metadata=[ok(body)]), Clock())
    endpoints: Endpoints = seen.result
    return endpoints


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# --- discovery ----------------------------------------------------------------------------


@pytest.mark.rfc("8414", "2")
def test_the_metadata_offers_the_loopback_flow() -> None:
    endpoints = discovered()
    assert endpoints.code_grant == GRANT


@pytest.mark.rfc("8414", "2")
@pytest.mark.rfc("7636", "4.2")
@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"authorization_endpoint": None}, id="no-authorization-endpoint"),
        pytest.param({"code_challenge_methods_supported": None}, id="pkce-not-announced"),
        pytest.param({"code_challenge_methods_supported": ["plain"]}, id="plain-only"),
        pytest.param({"response_types_supported": ["token"]}, id="no-code-response"),
        pytest.param(
            {"grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"]},
            id="grant-not-listed",
        ),
    ],
)
def test_a_server_that_does_not_offer_it_gets_the_device_flow(changes: dict[str, Any]) -> None:
    endpoints = discovered(**changes)
    assert endpoints.code_grant is None
    assert endpoints.device_authorization_endpoint == f"{SERVER}/oauth/device/authorize"


def test_the_issuer_is_kept_as_the_metadata_writes_it() -> None:
    # RFC 9207 compares iss with the metadata's issuer as a string, not a normalised URL.
    endpoints = discovered(issuer=SERVER + "/")
    assert endpoints.issuer == SERVER
    assert endpoints.code_grant is not None
    assert endpoints.code_grant.issuer == SERVER + "/"


# --- the authorization request ------------------------------------------------------------


@pytest.mark.rfc("7636", "4.1")
@pytest.mark.rfc("7636", "4.3")
@pytest.mark.rfc("8252", "7.3")
def test_the_authorization_request_carries_pkce_s256_and_state() -> None:
    request = authorization_request(GRANT, "devicelink-cli", REDIRECT_URI, "api")
    params = query(request.url)
    assert request.url.startswith(f"{SERVER}/oauth/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == "devicelink-cli"
    assert params["redirect_uri"] == REDIRECT_URI
    assert params["scope"] == "api"
    assert params["code_challenge_method"] == "S256"
    assert params["state"] == request.state
    assert "code_verifier" not in params  # only its hash travels through the browser
    verifier = request.code_verifier
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )
    digest = hashlib.sha256(verifier.encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert len(request.state) >= 43  # 256 random bits
    assert verifier not in repr(request)  # the one secret that never leaves this process


def test_every_sign_in_has_its_own_verifier_and_state() -> None:
    first = authorization_request(GRANT, "devicelink-cli", REDIRECT_URI)
    second = authorization_request(GRANT, "devicelink-cli", REDIRECT_URI)
    assert first.code_verifier != second.code_verifier
    assert first.state != second.state
    assert "scope" not in query(first.url)  # none asked: the client's default


# --- the redirect -------------------------------------------------------------------------

REQUEST = AuthorizationRequest(
    url=f"{SERVER}/oauth/authorize?...",
    redirect_uri=REDIRECT_URI,
    state="the-state-of-this-sign-in",
    code_verifier="v" * 64,
)


def back(path: str = "/callback", **params: str) -> str:
    return path + ("?" + urlencode(params) if params else "")


GOOD = {"code": "the-code", "state": REQUEST.state, "iss": SERVER}


@pytest.mark.rfc("6749", "4.1.2")
def test_the_approved_redirect_gives_the_code() -> None:
    assert read_redirect(back(**GOOD), REQUEST, GRANT) == Approved("the-code")


@pytest.mark.rfc("6749", "4.1.2.1")
def test_deny_gives_access_denied() -> None:
    target = back(error="access_denied", state=REQUEST.state, iss=SERVER)
    assert read_redirect(target, REQUEST, GRANT) == Refused("access_denied")


@pytest.mark.rfc("6749", "10.12")
@pytest.mark.rfc("9207", "2.4")
@pytest.mark.parametrize(
    "target",
    [
        pytest.param(back("/favicon.ico", **GOOD), id="another-path"),
        pytest.param(back("/callback/", **GOOD), id="path-with-slash"),
        pytest.param(back(**(GOOD | {"state": "another"})), id="wrong-state"),
        pytest.param(back(code="the-code", iss=SERVER), id="no-state"),
        pytest.param(back(**(GOOD | {"iss": "https://evil.example.com"})), id="wrong-iss"),
        pytest.param(back(**(GOOD | {"iss": SERVER + "/"})), id="iss-not-exactly"),
        pytest.param(back(code="the-code", state=REQUEST.state), id="no-iss"),
        pytest.param(back(error="access_denied", state="another", iss=SERVER), id="forged-deny"),
        pytest.param(back(state=REQUEST.state, iss=SERVER), id="no-code"),
        pytest.param(back(**GOOD) + "&code=another", id="code-twice"),
    ],
)
def test_anything_else_is_stray(target: str) -> None:
    assert isinstance(read_redirect(target, REQUEST, GRANT), Stray)


@pytest.mark.rfc("9207", "2.4")
def test_iss_may_be_absent_only_where_the_server_does_not_announce_it() -> None:
    quiet = CodeGrant(GRANT.authorization_endpoint, SERVER, iss_parameter=False)
    target = back(code="the-code", state=REQUEST.state)
    assert read_redirect(target, REQUEST, quiet) == Approved("the-code")
    wrong = back(code="the-code", state=REQUEST.state, iss="https://evil.example.com")
    assert isinstance(read_redirect(wrong, REQUEST, quiet), Stray)
