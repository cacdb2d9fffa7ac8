"""The rules of same-device sign-in (devicelink.core.authcode), table-driven: which
redirect URIs match (RFC 8252 section 7.3), what PKCE proves (RFC 7636), which requests
are refused and how (RFC 6749 section 4.1.2.1), and what a redemption is answered
(RFC 6749 sections 4.1.2 and 4.1.3)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from devicelink.core.authcode import (
    CODE_LIFETIME,
    AuthorizationCode,
    Redeem,
    Refused,
    Replayed,
    UnsafeRedirect,
    UnsupportedResponseType,
    check_authorization_request,
    decide_redemption,
    matching_redirect_uri,
    new_authorization_code,
    pkce_verified,
    registrable_redirect_uri,
)
from devicelink.core.errors import InvalidRequest, InvalidScope, UnauthorizedClient
from devicelink.core.models import AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, Client

REGISTERED = ("http://127.0.0.1/callback", "http://[::1]/callback")
# RFC 7636 appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CLIENT = Client(
    client_id="devicelink-cli",
    name="devicelink CLI",
    scopes=("api",),
    key_lifetime=None,
    grant_types=(AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT),
    redirect_uris=REGISTERED,
)


@pytest.mark.rfc("8252", "7.3")
@pytest.mark.parametrize(
    ("requested", "matches"),
    [
        ("http://127.0.0.1:49152/callback", REGISTERED[0]),
        ("http://127.0.0.1/callback", REGISTERED[0]),
        ("http://[::1]:8080/callback", REGISTERED[1]),
        ("http://localhost:49152/callback", None),  # section 8.3: not localhost
        ("http://127.0.0.2:49152/callback", None),  # another host
        ("http://198.51.100.7:49152/callback", None),
        ("https://127.0.0.1:49152/callback", None),  # another scheme
        ("http://127.0.0.1:49152/callback/", None),  # another path
        ("http://127.0.0.1:49152/Callback", None),
        ("http://127.0.0.1:49152/", None),
        ("http://127.0.0.1:49152/callback?next=x", None),  # a query
        ("http://127.0.0.1:49152/callback#x", None),  # a fragment
        ("http://user@127.0.0.1:49152/callback", None),  # user information
        ("http://127.0.0.1:99999/callback", None),  # not a port
        ("http://127.0.0.1:49152/call back", None),
        ("http://127.0.0.1.evil.example/callback", None),
        ("//127.0.0.1/callback", None),
        ("", None),
        # Text around the brackets, which urlsplit ignores and a browser does not:
        ("http://evil.example[::1]:5555/callback", None),
        ("http://[::1]evil.example:5555/callback", None),
        ("http://127.0.0.1:49152/callback?", None),  # an empty query: "callback??code="
    ],
)
def test_a_loopback_redirect_uri_matches_on_any_port_and_nothing_else(
    requested: str, matches: str | None
) -> None:
    assert matching_redirect_uri(requested, REGISTERED) == matches


@pytest.mark.rfc("8252", "7.3")
@pytest.mark.parametrize(
    ("uri", "registrable"),
    [
        ("http://127.0.0.1/callback", True),
        ("http://[::1]/cb/done", True),
        ("http://localhost/callback", False),
        ("https://app.example/callback", False),
        ("http://127.0.0.1:8080/callback", False),  # the application picks the port
        ("http://127.0.0.1/callback?x=1", False),
        ("http://127.0.0.1", False),  # no path
        ("myapp:/callback", False),
        ("http://evil.example[::1]/callback", False),
        ("http://127.0.0.1/callback?", False),
    ],
)
def test_only_loopback_ip_redirect_uris_without_a_port_can_be_registered(
    uri: str, registrable: bool
) -> None:
    assert (registrable_redirect_uri(uri) is None) is registrable


@pytest.mark.rfc("7636", "4.6")
def test_pkce_s256_verifies_the_rfc_example_and_nothing_else() -> None:
    assert pkce_verified(VERIFIER, CHALLENGE)
    assert not pkce_verified(VERIFIER[:-1] + "l", CHALLENGE)
    # plain: the verifier itself as challenge is never accepted.
    assert not pkce_verified(CHALLENGE, CHALLENGE)


@pytest.mark.rfc("7636", "4.1")
@pytest.mark.parametrize(
    "verifier",
    ["a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "é", "a" * 42 + " "],
)
def test_a_verifier_outside_rfc_7636_syntax_never_verifies(verifier: str) -> None:
    # Even when its S256 is the challenge.
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert not pkce_verified(verifier, challenge.rstrip(b"=").decode())


def test_codes_carry_256_random_bits() -> None:
    codes = {new_authorization_code() for _ in range(100)}
    assert len(codes) == 100
    assert all(len(code) >= 43 for code in codes)


def request(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "devicelink-cli",
        "redirect_uri": "http://127.0.0.1:50000/callback",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "state": "xyz",
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


@pytest.mark.rfc("6749", "4.1.2.1")
@pytest.mark.parametrize(
    ("client", "params", "repeated"),
    [
        (None, request(), ()),  # unknown client
        (CLIENT, request(redirect_uri=None), ()),
        (CLIENT, request(redirect_uri="http://localhost:50000/callback"), ()),
        (CLIENT, request(redirect_uri="http://evil.example/callback"), ()),
        (CLIENT, request(redirect_uri="http://127.0.0.1:50000/other"), ()),
        (CLIENT, request(), ("redirect_uri",)),
        (replace(CLIENT, redirect_uris=()), request(), ()),
    ],
)
def test_an_unknown_client_or_unregistered_redirect_is_never_redirected_to(
    client: Client | None, params: dict[str, str], repeated: tuple[str, ...]
) -> None:
    with pytest.raises(UnsafeRedirect):
        check_authorization_request(params, client, repeated=repeated)


@pytest.mark.rfc("7636", "4.4.1")
@pytest.mark.parametrize(
    ("params", "error", "client"),
    [
        (request(code_challenge=None), InvalidRequest, CLIENT),
        (request(code_challenge_method="plain"), InvalidRequest, CLIENT),
        (request(code_challenge_method=None), InvalidRequest, CLIENT),  # plain by default
        (request(code_challenge="short"), InvalidRequest, CLIENT),
        (request(response_type="token"), UnsupportedResponseType, CLIENT),
        (request(scope="admin"), InvalidScope, CLIENT),
        (request(state="s" * 1025), InvalidRequest, CLIENT),
        (request(), UnauthorizedClient, replace(CLIENT, grant_types=(DEVICE_CODE_GRANT,))),
    ],
)
def test_other_errors_go_back_to_the_registered_redirect_uri(
    params: dict[str, str], error: type[Exception], client: Client
) -> None:
    with pytest.raises(error):
        check_authorization_request(params, client)


def test_a_good_request_is_bound_to_the_exact_redirect_uri_and_granted_scope() -> None:
    checked = check_authorization_request(request(), CLIENT)
    assert checked.redirect_uri == "http://127.0.0.1:50000/callback"
    assert (checked.code_challenge, checked.scope, checked.state) == (CHALLENGE, ("api",), "xyz")


CODE = AuthorizationCode(
    id=1,
    client_id="devicelink-cli",
    user_id=7,
    redirect_uri="http://127.0.0.1:50000/callback",
    code_challenge=CHALLENGE,
    scope=("api",),
    created_at=NOW,
    expires_at=NOW + timedelta(seconds=CODE_LIFETIME),
)


@pytest.mark.rfc("6749", "4.1.3")
@pytest.mark.parametrize(
    ("code", "overrides", "outcome"),
    [
        (CODE, {}, Redeem),
        (None, {}, Refused),
        (replace(CODE, redeemed_at=NOW), {}, Replayed),
        (CODE, {"now": NOW + timedelta(seconds=CODE_LIFETIME)}, Refused),
        (CODE, {"client_id": "other-cli"}, Refused),
        (CODE, {"redirect_uri": "http://127.0.0.1:50001/callback"}, Refused),
        (CODE, {"code_verifier": VERIFIER[:-1] + "l"}, Refused),
        (CODE, {"code_verifier": CHALLENGE}, Refused),
        # A used code presented with every binding is a replay (its key is revoked),
        # even once expired; presented without the verifier, a plain refusal: whoever
        # only saw the code cannot end the key it gave.
        (replace(CODE, redeemed_at=NOW), {"now": NOW + timedelta(hours=1)}, Replayed),
        (replace(CODE, redeemed_at=NOW), {"code_verifier": "x" * 43}, Refused),
        (replace(CODE, redeemed_at=NOW), {"client_id": "other"}, Refused),
    ],
)
def test_a_code_is_redeemed_only_with_every_binding_once_within_its_minute(
    code: AuthorizationCode | None, overrides: dict[str, object], outcome: type[object]
) -> None:
    asked: dict[str, object] = {
        "client_id": "devicelink-cli",
        "redirect_uri": "http://127.0.0.1:50000/callback",
        "code_verifier": VERIFIER,
        "now": NOW + timedelta(seconds=CODE_LIFETIME - 1),
    }
    asked.update(overrides)
    decision = decide_redemption(code, **asked)  # type: ignore[arg-type]
    assert type(decision) is outcome
    if not isinstance(decision, Redeem):
        assert decision.error.error == "invalid_grant"
