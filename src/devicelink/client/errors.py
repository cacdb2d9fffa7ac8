"""Why a login, a revocation or a key check failed, as typed exceptions.

Every exception is a :class:`DeviceFlowError` whose ``str()`` is a short message a CLI can
print as it is. Those that stand for an OAuth error code (RFC 6749 section 5.2, RFC 8628
section 3.5, RFC 6750 section 3.1) name it in ``error``; the server's
``error_description`` is kept in ``description``, cleaned of control characters, because
it comes from the network and may end up on a terminal.

The names say what happened to the user's login, not the wire code, so that they are
never mistaken for the server's own errors in ``devicelink.core.errors``.

This module does not decide when an error is raised: the flows do.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import ClassVar

_MAX_DESCRIPTION = 200


def printable(text: object, limit: int = _MAX_DESCRIPTION) -> str:
    """``text`` without control characters (no terminal escapes from a server), shortened."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text)).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class DeviceFlowError(Exception):
    """Base of every client-side failure; ``str(exc)`` is meant for the user."""

    error: str | None = None
    default_message: ClassVar[str] = "the sign-in failed"

    def __init__(self, message: str | None = None, *, description: str | None = None) -> None:
        self.message = message or self.default_message
        self.description = printable(description) if description else None
        super().__init__(self.message)


class LoginDenied(DeviceFlowError):
    """RFC 8628 section 3.5 ``access_denied``: the user pressed Deny, or the server's key
    issuer refused to issue a key (then its reason is the description)."""

    error = "access_denied"
    default_message = "the sign-in was denied in the browser"

    def __init__(self, message: str | None = None, *, description: str | None = None) -> None:
        if message is None and description:
            message = f"the sign-in was denied: {printable(description)}"
        super().__init__(message, description=description)


class LoginFailedOnServer(DeviceFlowError):
    """RFC 6749 section 5.2 ``server_error`` from the token endpoint: the server failed
    while finishing the sign-in (its key service, say). The polling stops at once (RFC
    8628 section 3.5): nothing was issued, and the login must start again."""

    error = "server_error"
    default_message = (
        "the server failed to finish the sign-in (server_error); no key was issued: "
        "start the login again, and tell the server's operator if it keeps failing"
    )

    def __init__(self, message: str | None = None, *, description: str | None = None) -> None:
        if message is None and description:
            message = f"the server failed to finish the sign-in: {printable(description)}"
        super().__init__(message, description=description)


class LoginExpired(DeviceFlowError):
    """RFC 8628 section 3.5 ``expired_token``, or the client reached ``expires_in`` itself."""

    error = "expired_token"
    default_message = "the code expired before the sign-in was approved; start the login again"


class DeviceCodeRefused(DeviceFlowError):
    """RFC 6749 section 5.2 ``invalid_grant``: the device code is unknown or already used."""

    error = "invalid_grant"
    default_message = "the server no longer accepts this login's code; start the login again"


class ClientIdRefused(DeviceFlowError):
    """RFC 6749 section 5.2 ``invalid_client``: the server does not know this client id."""

    error = "invalid_client"
    default_message = "the server does not accept this client id; check the client id setting"


class KeyRefused(DeviceFlowError):
    """RFC 6750 section 3.1 ``invalid_token``: the API key was refused (401)."""

    error = "invalid_token"
    default_message = "the API key is missing, unknown, revoked or expired; log in again"


class ServerRejected(DeviceFlowError):
    """Any other OAuth error, or an answer the client cannot read; the polling stops."""

    def __init__(
        self,
        error: str | None,
        description: str | None = None,
        *,
        status_code: int | None = None,
    ) -> None:
        oauth_error = printable(error, 64) if error else None
        what = oauth_error or (f"HTTP {status_code}" if status_code else "a bad answer")
        message = f"the server refused the request ({what})"
        if description:
            message += f": {printable(description)}"
        super().__init__(message, description=description)
        self.error = oauth_error
        self.status_code = status_code


class LoopbackRefused(DeviceFlowError):
    """The server will not send this client's sign-in back to a loopback listener: the
    client is unknown there, may not use the authorization code grant, or has no such
    redirect URI registered (RFC 6749 section 4.1.2.1 ``unauthorized_client``, or the
    error page of section 3.1.2.4). The device flow may still work."""

    error = "unauthorized_client"
    default_message = (
        "the server does not accept a sign-in in the browser for this client (no loopback "
        "redirect URI registered for it, or not allowed the authorization code grant)"
    )


class ServerUnreachable(DeviceFlowError):
    """The server could not be reached, or stayed unavailable, after the retries."""

    default_message = "the server could not be reached; check the address and the network"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status_code = status_code


class DiscoveryFailed(DeviceFlowError):
    """The RFC 8414 metadata is missing, malformed, or names another issuer."""

    default_message = "the server's OAuth metadata could not be read; check the server address"


class BadServerURL(DiscoveryFailed, ValueError):
    """The server address is not an http(s) URL a server can have.

    Also a ``ValueError``: credentials and ``--server`` treat it as a bad value, the flows
    as a server that cannot be discovered.
    """

    default_message = "the server URL is not one (expected https://host[/path])"


__all__ = [
    "BadServerURL",
    "ClientIdRefused",
    "DeviceCodeRefused",
    "DeviceFlowError",
    "DiscoveryFailed",
    "KeyRefused",
    "LoginDenied",
    "LoginExpired",
    "LoginFailedOnServer",
    "LoopbackRefused",
    "ServerRejected",
    "ServerUnreachable",
]
