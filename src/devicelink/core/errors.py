"""Protocol errors: RFC 6749 section 5.2, RFC 8628 section 3.5, RFC 6750 section 3.1.

Each error is a small class carrying its ``error`` code and HTTP status. The web layer
has one handler that turns any of them into a section 5.2 JSON body; nothing else
(no stack trace, no internal detail) reaches the wire.
"""

from __future__ import annotations

from typing import ClassVar


class OAuthError(Exception):
    """Base of every error answered in the RFC 6749 section 5.2 format."""

    error: ClassVar[str] = "invalid_request"
    status_code: ClassVar[int] = 400
    default_description: ClassVar[str] = ""

    def __init__(self, description: str | None = None, *, headers: dict[str, str] | None = None):
        self.description = description if description is not None else self.default_description
        self.headers = dict(headers or {})
        super().__init__(f"{self.error}: {self.description}")

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


# RFC 6749 section 5.2


class InvalidRequest(OAuthError):
    error = "invalid_request"
    default_description = "the request is missing a parameter or is malformed"


class RequestTooLarge(InvalidRequest):
    status_code = 413
    default_description = "the request body is too large"


class UnsupportedMediaType(InvalidRequest):
    # 400 rather than 415: RFC 6749 section 5.2 answers malformed requests with 400,
    # and OAuth clients read the error body, not the status line.
    default_description = "send the parameters as application/x-www-form-urlencoded"


class InvalidClient(OAuthError):
    """Unknown client or failed client authentication: 401 with ``WWW-Authenticate``."""

    error = "invalid_client"
    status_code = 401
    default_description = "client authentication failed"

    def __init__(self, description: str | None = None, *, headers: dict[str, str] | None = None):
        merged = {"WWW-Authenticate": 'Basic realm="devicelink"'}
        merged.update(headers or {})
        super().__init__(description, headers=merged)


class InvalidGrant(OAuthError):
    error = "invalid_grant"
    default_description = (
        "the device code is invalid, was already used, or belongs to another client"
    )


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"
    default_description = "this client may not use this grant type"


class NotAResourceServer(UnauthorizedClient):
    """A client that authenticated, but that no operator marked as a resource server,
    asked the introspection endpoint (RFC 7662 section 4: its callers should be
    specifically authorised). 403: its credentials are right, so not section 2.3's 401
    ``invalid_client`` (nor its ``WWW-Authenticate``: other credentials of the same
    client would not help); ``unauthorized_client`` is RFC 6749 section 5.2's code for an
    authenticated client that may not do what it asked."""

    status_code = 403
    default_description = (
        "this client may not introspect keys: an operator must mark it as a resource "
        "server (devicelink clients edit CLIENT_ID --resource-server)"
    )


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"
    default_description = "grant_type must be urn:ietf:params:oauth:grant-type:device_code"


class InvalidScope(OAuthError):
    error = "invalid_scope"
    default_description = "the requested scope is invalid or not allowed for this client"


# RFC 8628 section 3.5


class AuthorizationPending(OAuthError):
    error = "authorization_pending"
    default_description = "the user has not yet approved this request"


class SlowDown(OAuthError):
    """Still pending, and polled too fast: the body carries the new ``interval``."""

    error = "slow_down"
    default_description = "polling too fast; wait the new interval between requests"

    def __init__(self, interval: int, description: str | None = None):
        super().__init__(description)
        self.interval = interval

    def body(self) -> dict[str, object]:
        body = super().body()
        body["interval"] = self.interval
        return body


class AccessDenied(OAuthError):
    error = "access_denied"
    default_description = "the user denied the request"


class ExpiredToken(OAuthError):
    error = "expired_token"
    default_description = "the device code has expired; start a new login"


# Service conditions, answered in the same format


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status_code = 503
    default_description = "the service is temporarily unavailable; try again shortly"

    def __init__(self, description: str | None = None, *, retry_after: int = 5):
        super().__init__(description, headers={"Retry-After": str(retry_after)})


class RateLimited(TemporarilyUnavailable):
    status_code = 429
    default_description = "too many requests; try again later"


class ServerError(OAuthError):
    error = "server_error"
    status_code = 500
    default_description = "the server could not complete the request"


class KeyIssueFailed(ServerError):
    """The key issuer failed (anything but :class:`KeyIssueRefused`) after the user
    approved: nothing was written, and the device must stop polling and start again
    (RFC 8628 section 3.5: an error other than the pending ones ends the polling)."""

    default_description = (
        "the server could not issue the key (its key service failed); nothing was "
        "created: start the login again"
    )


class KeyIssueRefused(Exception):
    """Raised by a key issuer (:class:`devicelink.core.ports.KeyIssuer`) that will not
    mint a key for this user and client: a decision, not a failure.

    From ``issue`` (the poll) the device authorization becomes denied and the device is
    answered ``access_denied`` with ``reason`` as its ``error_description``; from the
    optional ``check`` (the approval) it is denied before any key exists and the page
    tells the user ``reason``. Either way the audit log records it. ``reason`` is meant
    for the user: short, no secrets (at most 300 characters are kept).
    """

    def __init__(self, reason: str) -> None:
        cleaned = " ".join(str(reason).split())[:300]
        self.reason = cleaned or "the key service refused to issue a key"
        super().__init__(self.reason)

    @property
    def description(self) -> str:
        """``reason`` as an ``error_description`` (:func:`description_text`)."""
        return description_text(self.reason)


def description_text(text: str) -> str:
    """``text`` as an RFC 6749 section 5.2 ``error_description`` may carry it: printable
    ASCII without ``"`` and ``\\`` (anything else becomes ``?``)."""
    return "".join(ch if ("\x20" <= ch <= "\x7e" and ch not in '"\\') else "?" for ch in text)


class NotFound(OAuthError):
    error = "not_found"
    status_code = 404
    default_description = "no such endpoint"


class MethodNotAllowed(OAuthError):
    error = "invalid_request"
    status_code = 405
    default_description = "method not allowed on this endpoint"


# RFC 6750 section 3.1: bearer tokens at resource endpoints


class InvalidToken(OAuthError):
    error = "invalid_token"
    status_code = 401
    default_description = "the API key is missing, unknown, revoked or expired"

    def __init__(self, description: str | None = None):
        desc = description if description is not None else self.default_description
        super().__init__(
            desc,
            headers={
                "WWW-Authenticate": f'Bearer realm="devicelink", error="invalid_token", '
                f'error_description="{desc}"'
            },
        )


class InsufficientScope(OAuthError):
    """The key is valid but lacks a scope the resource needs (RFC 6750 section 3.1): 403
    with the scope required in the challenge."""

    error = "insufficient_scope"
    status_code = 403
    default_description = "the API key does not carry the scope this resource requires"

    def __init__(self, required: tuple[str, ...], description: str | None = None):
        desc = description if description is not None else self.default_description
        self.required = required
        super().__init__(
            desc,
            headers={
                "WWW-Authenticate": f'Bearer realm="devicelink", error="insufficient_scope", '
                f'error_description="{desc}", scope="{" ".join(required)}"'
            },
        )
