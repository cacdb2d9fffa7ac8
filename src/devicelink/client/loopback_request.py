"""Same-device sign-in without I/O: PKCE (RFC 7636), ``state``, the authorization request
(RFC 6749 section 4.1.1 on a loopback redirect, RFC 8252 section 7.3), and reading the
redirect that comes back (RFC 6749 section 4.1.2, RFC 9207).

The listener that receives the redirect is ``devicelink.client.loopback``; redeeming the
code is :func:`devicelink.client.flow.code_exchange_flow`. This module decides what a
redirect means; it does not answer it.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

from devicelink.client.discovery import PKCE_METHOD
from devicelink.client.errors import printable
from devicelink.client.messages import CodeGrant
from devicelink.core.authcode import s256

CALLBACK_PATH = "/callback"
"""The redirect path registered for ``devicelink-cli`` (``http://127.0.0.1/callback``)."""
VERIFIER_BYTES = 64
"""RFC 7636 section 4.1: 64 random bytes give an 86-character verifier (43 to 128 allowed)."""
STATE_BYTES = 32


def new_code_verifier() -> str:
    """RFC 7636 section 4.1: a high-entropy verifier of unreserved characters."""
    return secrets.token_urlsafe(VERIFIER_BYTES)


@dataclass(frozen=True)
class AuthorizationRequest:
    """One sign-in's authorization request: the URL the browser opens, the redirect URI
    it comes back to, and the secrets that bind the two (never shown in a repr)."""

    url: str
    redirect_uri: str
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)


def authorization_request(
    grant: CodeGrant, client_id: str | None, redirect_uri: str, scope: str | None = None
) -> AuthorizationRequest:
    """RFC 6749 section 4.1.1 with PKCE (RFC 7636 section 4.3): a fresh verifier and
    ``state`` for each sign-in. ``client_id`` may be ``None`` for a server with a default
    client."""
    verifier = new_code_verifier()
    state = secrets.token_urlsafe(STATE_BYTES)
    query = {
        "response_type": "code",
        **({"client_id": client_id} if client_id else {}),
        "redirect_uri": redirect_uri,
        "code_challenge": s256(verifier),  # the server checks it with the same function
        "code_challenge_method": PKCE_METHOD,
        "state": state,
        **({"scope": scope} if scope and scope.strip() else {}),
    }
    endpoint = grant.authorization_endpoint
    separator = "&" if urlsplit(endpoint).query else "?"
    return AuthorizationRequest(
        url=endpoint + separator + urlencode(query),
        redirect_uri=redirect_uri,
        state=state,
        code_verifier=verifier,
    )


# --- what comes back --------------------------------------------------------------------


@dataclass(frozen=True)
class Approved:
    """The redirect of an approved sign-in: the code to redeem."""

    code: str = field(repr=False)


@dataclass(frozen=True)
class Refused:
    """The redirect of a refused sign-in (section 4.1.2.1): ``access_denied`` after Deny."""

    error: str
    description: str | None = None


@dataclass(frozen=True)
class Stray:
    """A request that is not this sign-in's redirect: answered 400 and ignored."""

    reason: str


Redirect = Approved | Refused | Stray


def read_redirect(target: str, request: AuthorizationRequest, grant: CodeGrant) -> Redirect:
    """What the request for ``target`` (path and query) tells this sign-in.

    Only the redirect URI's path, with this sign-in's ``state`` (RFC 6749 section 10.12)
    and the server's ``iss`` (RFC 9207 section 2.4: required when the metadata announces
    it, compared as a string; it tells this server's answer from another's), is an answer;
    then ``error`` (section 4.1.2.1) or ``code``. Everything else is :class:`Stray`: a
    page that forged an ``error`` without the state cannot end the sign-in.
    """
    parts = urlsplit(target)
    if parts.path != urlsplit(request.redirect_uri).path:
        return Stray("not the sign-in's redirect path")
    params = parse_qs(parts.query, keep_blank_values=True)
    if any(len(values) > 1 for values in params.values()):
        return Stray("a parameter appears more than once")  # section 3.1
    values = {name: values[0] for name, values in params.items()}
    state = values.get("state", "")
    if not hmac.compare_digest(state.encode(), request.state.encode()):
        return Stray("not this sign-in's state")
    iss = values.get("iss")
    if (iss is None and grant.iss_parameter) or (iss is not None and iss != grant.issuer):
        return Stray("not this server's answer (iss)")
    if "error" in values:
        description = values.get("error_description")
        return Refused(
            printable(values["error"], 64) or "error",
            printable(description) if description else None,
        )
    code = values.get("code", "")
    if not code:
        return Stray("no code")
    return Approved(code)


__all__ = [
    "CALLBACK_PATH",
    "Approved",
    "AuthorizationRequest",
    "Redirect",
    "Refused",
    "Stray",
    "authorization_request",
    "new_code_verifier",
    "read_redirect",
]
