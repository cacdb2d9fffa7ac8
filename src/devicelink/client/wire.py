"""The requests the flows send and how the server's answers are read: OAuth error bodies
(RFC 6749 section 5.2), the device authorization response (RFC 8628 section 3.2) and the
token response (RFC 6749 section 5.1).

An answer comes from the network and what it says may reach the user's terminal, so
every field is checked before it is used; a malformed one is :class:`ServerRejected`.
"""

from __future__ import annotations

from typing import Any

import httpx

from devicelink.client.errors import (
    ClientIdRefused,
    DeviceCodeRefused,
    DeviceFlowError,
    LoginDenied,
    LoginExpired,
    ServerRejected,
    printable,
)
from devicelink.client.messages import DeviceAuthorization, Endpoints, Token
from devicelink.client.pacing import DEFAULT_INTERVAL

BEARER = "Bearer"
ACCEPT_JSON = {"Accept": "application/json"}

_TYPED_ERRORS: dict[str, type[DeviceFlowError]] = {
    "access_denied": LoginDenied,
    "expired_token": LoginExpired,
    "invalid_grant": DeviceCodeRefused,
    "invalid_client": ClientIdRefused,
}


# --- requests ---------------------------------------------------------------------------


def form_request(url: str, form: dict[str, str]) -> httpx.Request:
    return httpx.Request("POST", url, data=form, headers=ACCEPT_JSON)


def get_request(url: str, headers: dict[str, str] | None = None) -> httpx.Request:
    return httpx.Request("GET", url, headers={**ACCEPT_JSON, **(headers or {})})


# --- answers ----------------------------------------------------------------------------


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON of ``response``, or ``None`` when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def json_object(response: httpx.Response, problem: str) -> dict[str, Any]:
    """The JSON object of ``response``; :class:`ServerRejected` saying ``problem`` if none."""
    body = json_body(response)
    if not isinstance(body, dict):
        raise ServerRejected("invalid_response", problem)
    return body


def oauth_error_body(response: httpx.Response) -> dict[str, Any] | None:
    """The RFC 6749 section 5.2 body, if the answer is one."""
    body = json_body(response)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body
    return None


def error_description(body: dict[str, Any] | None) -> str | None:
    description = body.get("error_description") if body else None
    return description if isinstance(description, str) else None


def raise_oauth_error(response: httpx.Response, body: dict[str, Any] | None = None) -> None:
    """Raise the typed error for a refusal (section 3.5: any error other than
    ``authorization_pending`` and ``slow_down`` ends the polling)."""
    body = body or oauth_error_body(response)
    if body is None:
        raise ServerRejected(None, None, status_code=response.status_code)
    error = body["error"]
    kind = _TYPED_ERRORS.get(error)
    if kind is not None:
        raise kind(description=error_description(body))
    raise ServerRejected(error, error_description(body), status_code=response.status_code)


def read_authorization(response: httpx.Response) -> DeviceAuthorization:
    """Section 3.2, checked: what reaches the user's terminal must be printable text."""
    what = "device authorization response"
    body = json_object(response, f"the {what} is not a JSON object")
    expires_in = _count(body.get("expires_in"))
    if not expires_in:
        raise ServerRejected("invalid_response", f"the {what} has no valid expires_in")
    interval = _count(body.get("interval")) or DEFAULT_INTERVAL
    complete = None
    if body.get("verification_uri_complete") is not None:
        complete = _text(body, "verification_uri_complete", what, url=True)
    return DeviceAuthorization(
        user_code=_text(body, "user_code", what),
        verification_uri=_text(body, "verification_uri", what, url=True),
        verification_uri_complete=complete,
        expires_in=expires_in,
        interval=interval,
        device_code=_text(body, "device_code", what),
    )


def read_token(response: httpx.Response, endpoints: Endpoints, server: str) -> Token:
    """RFC 6749 section 5.1; ``token_type`` is case-insensitive (section 7.1)."""
    what = "token response"
    body = json_object(response, f"the {what} is not a JSON object")
    access_token = _text(body, "access_token", what)
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ServerRejected(
            "invalid_response", f"unsupported token_type {printable(token_type, 40)!r}"
        )
    expires_in = body.get("expires_in")
    if expires_in is not None and _count(expires_in) is None:
        raise ServerRejected("invalid_response", f"the {what} has no valid expires_in")
    scope = body.get("scope")
    return Token(
        access_token=access_token,
        token_type=BEARER,
        expires_in=_count(expires_in),
        scope=scope if isinstance(scope, str) else None,
        endpoints=endpoints,
        server=server,
    )


def _text(body: dict[str, Any], name: str, what: str, *, url: bool = False) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ServerRejected("invalid_response", f"the {what} has no valid {name}")
    if url and not value.startswith(("https://", "http://")):
        raise ServerRejected("invalid_response", f"the {what}'s {name} is not an http(s) URL")
    return value


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


__all__ = [
    "ACCEPT_JSON",
    "BEARER",
    "error_description",
    "form_request",
    "get_request",
    "json_body",
    "json_object",
    "oauth_error_body",
    "raise_oauth_error",
    "read_authorization",
    "read_token",
]
