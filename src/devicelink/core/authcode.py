"""Same-device sign-in: the authorization code grant with PKCE on a loopback redirect
(RFC 6749 section 4.1, RFC 7636, RFC 8252 sections 7.3 and 8, RFC 9207).

Every decision of that flow is made here, without I/O, with ``now`` passed in: which
redirect URIs a client may register and which a request may name, what an
authorization request must carry and which of its errors may be sent back to the
redirect URI, what PKCE proves, and what a redemption of a code is answered. The
service (:mod:`devicelink.service.authorization_codes`) carries these decisions out;
the web layer renders them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import SplitResult, urlsplit

from devicelink.core.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
)
from devicelink.core.lifecycle import granted_scope, parse_scope
from devicelink.core.models import AUTHORIZATION_CODE_GRANT, Client

CODE_LIFETIME = 60
"""Seconds an authorization code may be redeemed (RFC 6749 section 4.1.2: "a maximum
authorization code lifetime of 10 minutes is RECOMMENDED"; ours is used at once by a
listener on the same machine)."""
CODE_BYTES = 32
"""256 random bits, as the device code (RFC 6749 section 10.10)."""
STATE_LIMIT = 1024
"""The longest ``state`` echoed (it travels sealed in the consent form)."""

LOOPBACK_HOSTS = ("127.0.0.1", "::1")
"""RFC 8252 section 7.3: loopback IP literals; section 8.3: ``localhost`` is NOT
RECOMMENDED (a name can resolve elsewhere, and a listener may miss one of the families)."""

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
"""RFC 7636 section 4.1: code-verifier = 43*128unreserved."""
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
"""RFC 7636 section 4.2: BASE64URL(SHA256(verifier)) without padding is 43 characters."""


def new_authorization_code() -> str:
    """A fresh authorization code: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(CODE_BYTES)


# --- redirect URIs (RFC 8252 sections 7.3 and 8.3) -------------------------------------


_AUTHORITY = re.compile(r"(?:127\.0\.0\.1|\[::1\])(?::[0-9]{1,5})?")
"""The whole authority of a loopback redirect URI, as a browser reads it: Python's
``urlsplit`` takes the host from between the brackets and ignores text around them
(``http://evil.com[::1]:5555/``), which a browser refuses or reads otherwise."""


def _split(uri: str) -> SplitResult | None:
    """``uri``'s parts when it can be a loopback redirect URI at all: no control
    characters or spaces, an authority that is exactly a loopback IP literal and a
    port, no query (not even an empty one: the code is appended as the query)."""
    if len(uri) > 512 or any(ch <= " " or ch == "\x7f" for ch in uri) or "?" in uri:
        return None
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError:
        return None
    if not _AUTHORITY.fullmatch(parts.netloc):
        return None
    return parts


def registrable_redirect_uri(uri: str) -> str | None:
    """Why ``uri`` cannot be registered as a client's redirect URI, or None when it can.

    A native client's loopback redirect (RFC 8252 section 7.3): ``http``, an IP literal
    of the loopback interface, no port (the client picks one when it listens), a path,
    no query, no fragment, no user information."""
    parts = _split(uri)
    if (
        parts is None
        or parts.scheme != "http"
        or parts.hostname not in LOOPBACK_HOSTS
        or parts.username is not None
        or parts.password is not None
    ):
        return (
            f"{uri!r}: a redirect URI is http://127.0.0.1/PATH or http://[::1]/PATH "
            "(RFC 8252 section 7.3; not localhost)"
        )
    if parts.port is not None:
        return f"{uri!r}: leave the port out; the application picks one when it listens"
    if not parts.path.startswith("/") or parts.query or parts.fragment or "#" in uri:
        return f"{uri!r}: a redirect URI has a path, and no query or fragment"
    return None


def matching_redirect_uri(requested: str, registered: tuple[str, ...]) -> str | None:
    """The registered redirect URI that ``requested`` names, or None.

    RFC 8252 section 7.3: for a loopback IP literal the port is the client's choice at
    the time of the request, so any port matches; everything else must be exactly the
    registered URI's: scheme, host (``localhost`` is another host), path, and no query
    or fragment (RFC 6749 section 3.1.2)."""
    parts = _split(requested)
    if parts is None or parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if parts.query or parts.fragment or "#" in requested:
        return None
    for uri in registered:
        candidate = urlsplit(uri)
        if candidate.hostname == parts.hostname and candidate.path == parts.path:
            return uri
    return None


# --- PKCE (RFC 7636) --------------------------------------------------------------------


def s256(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_verified(verifier: str, challenge: str) -> bool:
    """RFC 7636 section 4.6: the verifier is well formed and its S256 is the challenge."""
    if _VERIFIER.fullmatch(verifier) is None:
        return False
    return hmac.compare_digest(s256(verifier), challenge)


# --- the authorization request (RFC 6749 section 4.1.1, RFC 7636 section 4.3) ----------


class UnsafeRedirect(Exception):
    """The client or the redirect URI is not what was registered: the error is shown to
    the user and never sent to the redirect URI (RFC 6749 section 4.1.2.1), which
    would make this server an open redirector."""


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    default_description = "response_type must be code"


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A checked authorization request: what the consent page shows, and what the code
    issued on approval is bound to."""

    client: Client
    redirect_uri: str
    """Exactly as the request named it (its port included): the token request must
    name the same (RFC 6749 section 4.1.3)."""
    code_challenge: str
    scope: tuple[str, ...]
    state: str | None


def checked_redirect(
    params: Mapping[str, str], client: Client | None, *, repeated: Collection[str] = ()
) -> str:
    """The first check of an authorization request: the client is known, and
    ``redirect_uri`` is one of its own, each given once. Raises :class:`UnsafeRedirect`
    (with what to show the user) otherwise; returns the redirect URI."""
    if "client_id" in repeated or "redirect_uri" in repeated:
        raise UnsafeRedirect("The application named itself or its address more than once.")
    if client is None:
        raise UnsafeRedirect("The application that sent you here is not registered.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None:
        raise UnsafeRedirect("The application did not say where to return (no redirect_uri).")
    if matching_redirect_uri(redirect_uri, client.redirect_uris) is None:
        raise UnsafeRedirect(
            "The application asked to return to an address that is not registered for it."
        )
    return redirect_uri


def check_authorization_request(
    params: Mapping[str, str], client: Client | None, *, repeated: Collection[str] = ()
) -> AuthorizationRequest:
    """RFC 6749 section 4.1.1 with RFC 7636 section 4.3 and RFC 8252: the request,
    checked. ``repeated``: the parameters given more than once (section 3.1: none may
    be). Raises :class:`UnsafeRedirect` first (an error page), then the errors the
    client is told at its redirect URI (section 4.1.2.1)."""
    redirect_uri = checked_redirect(params, client, repeated=repeated)
    assert client is not None
    if repeated:
        raise InvalidRequest(f"parameter {sorted(repeated)[0]!r} is repeated")
    if AUTHORIZATION_CODE_GRANT not in client.grant_types:
        raise UnauthorizedClient("this client may not use the authorization code grant")
    if params.get("response_type") != "code":
        raise UnsupportedResponseType()
    challenge = params.get("code_challenge")
    if challenge is None:
        raise InvalidRequest("code_challenge is required (PKCE, RFC 7636)")
    method = params.get("code_challenge_method", "plain")
    if method != "S256":
        # Section 4.2 defaults to "plain", which an interceptor of the request defeats.
        raise InvalidRequest("code_challenge_method must be S256")
    if _S256_CHALLENGE.fullmatch(challenge) is None:
        raise InvalidRequest("code_challenge is not an S256 challenge")
    state = params.get("state")
    if state is not None and len(state) > STATE_LIMIT:
        raise InvalidRequest(f"state is longer than {STATE_LIMIT} characters")
    try:
        scope = granted_scope(parse_scope(params.get("scope")), client.scopes)
    except ValueError:
        raise InvalidScope(
            f"this client may ask for: {' '.join(client.scopes) or 'no scope'}"
        ) from None
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        scope=scope,
        state=state,
    )


# --- the code and its redemption (RFC 6749 sections 4.1.2 and 4.1.3) -------------------


@dataclass(frozen=True, slots=True)
class NewAuthorizationCode:
    code_hash: bytes
    client_id: str
    user_id: int
    redirect_uri: str
    code_challenge: str
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """An issued code, as stored (its keyed hash only), bound to what it was issued for."""

    id: int
    client_id: str
    user_id: int
    redirect_uri: str
    code_challenge: str
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None = None
    api_key_id: int | None = None
    """The key its redemption issued: revoked if the code comes back (section 4.1.2)."""


def echoed_state(params: Mapping[str, str]) -> str | None:
    """The ``state`` to send back with an answer (RFC 6749 section 4.1.2): the
    client's, unless it is too long to be one this server accepted."""
    state = params.get("state")
    return state if state is not None and len(state) <= STATE_LIMIT else None


def code_expires_at(now: datetime) -> datetime:
    return now + timedelta(seconds=CODE_LIFETIME)


class ReplayedCode(InvalidGrant):
    """``invalid_grant`` for a code that came back after its redemption."""

    default_description = "the authorization code was already used; its key is revoked"


@dataclass(frozen=True, slots=True)
class Redeem:
    """Issue the key: the code is good for this request."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """The code was already redeemed: refuse, and revoke what it issued (RFC 6749
    section 4.1.2: "the authorization server MUST deny the request and SHOULD revoke
    ... all tokens previously issued based on that authorization code")."""

    error: ReplayedCode


@dataclass(frozen=True, slots=True)
class Refused:
    error: InvalidGrant


def decide_redemption(
    code: AuthorizationCode | None,
    *,
    client_id: str,
    redirect_uri: str,
    code_verifier: str,
    now: datetime,
) -> Redeem | Replayed | Refused:
    """RFC 6749 section 4.1.3 and RFC 7636 section 4.6: whether a token request may
    redeem ``code``. Every refusal is ``invalid_grant``; the description says which
    binding failed (none of them tells an attacker anything the code does not).

    A used code is a replay, and revokes its key, only when the request carries every
    binding, the verifier included: with PKCE only the verifier's holder could have
    redeemed it, so whoever only saw the code (in the browser's history, say) can
    neither redeem it nor end the key it gave."""
    if code is None:
        return Refused(InvalidGrant("the authorization code is unknown"))
    if code.client_id != client_id:
        return Refused(InvalidGrant("the authorization code was issued to another client"))
    if code.redirect_uri != redirect_uri:
        return Refused(InvalidGrant("redirect_uri differs from the authorization request's"))
    if not pkce_verified(code_verifier, code.code_challenge):
        return Refused(InvalidGrant("code_verifier does not match the code_challenge"))
    if code.redeemed_at is not None:
        return Replayed(ReplayedCode())
    if now >= code.expires_at:
        return Refused(InvalidGrant("the authorization code has expired; sign in again"))
    return Redeem()
