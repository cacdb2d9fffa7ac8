"""What the sans-IO flows and their drivers hand each other, and what the flows return.

A flow is a generator (the shape of httpx's ``Auth.auth_flow``): it yields a *command*
and the driver (``devicelink.client.http``, or a test) answers with ``generator.send``::

    command                      the driver                        and sends back
    Send(request)                sends the httpx.Request           the httpx.Response, or
                                                                   ConnectionLost(reason) when
                                                                   the transport failed
    Sleep(seconds, reason, ...)  waits (and may draw a countdown)  None
    CodeIssued(authorization)    shows the user code and the link  None

The flow's return value (``StopIteration.value``) is its result, e.g. a :class:`Token`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import httpx

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    """Send ``request``; answer with the ``httpx.Response`` or a :class:`ConnectionLost`."""

    request: httpx.Request


WaitReason = Literal["interval", "slow_down", "retry_after", "backoff"]
LastingFailure = Literal["dns", "tls", "certificate"]


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds``; answer ``None``.

    ``reason`` says why (a UI may word its countdown after it); ``remaining`` is how long
    the user code is still valid when the wait starts (``None`` before a code exists).
    """

    seconds: float
    reason: WaitReason
    remaining: float | None = None


@dataclass(frozen=True)
class DeviceAuthorization:
    """RFC 8628 section 3.2: what the user needs, and the device code the flow polls with."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int
    device_code: str = field(repr=False)


@dataclass(frozen=True)
class CodeIssued:
    """Show the user the code and the link (section 3.3); answer ``None``.

    Section 3.3.1: show ``verification_uri`` and ``user_code`` even when a QR code of
    ``verification_uri_complete`` is shown too.
    """

    authorization: DeviceAuthorization


@dataclass(frozen=True)
class ConnectionLost:
    """The driver's answer to :class:`Send` when the transport failed (no HTTP answer).

    ``lasting`` names a failure that trying again in a few seconds cannot mend: ``"dns"``
    (the host name does not resolve), ``"tls"`` (TLS spoken to a server that answers in
    plain http), ``"certificate"`` (a certificate this computer does not trust)."""

    reason: str = "connection failed"
    lasting: LastingFailure | None = None


Command = Send | Sleep | CodeIssued
Reply = httpx.Response | ConnectionLost | None
Flow = Generator[Command, Reply, T]
"""A flow whose result is a ``T``."""


@dataclass(frozen=True)
class CodeGrant:
    """How a server offers same-device sign-in: the authorization code grant with PKCE
    S256 (RFC 7636) on a loopback redirect (RFC 8252), as its RFC 8414 metadata says."""

    authorization_endpoint: str
    issuer: str
    """The ``issuer`` exactly as the metadata writes it: RFC 9207 section 2.4 compares the
    ``iss`` of the redirect with it as a plain string."""
    iss_parameter: bool
    """``authorization_response_iss_parameter_supported``: the redirect must carry ``iss``."""


@dataclass(frozen=True)
class Endpoints:
    """RFC 8414 metadata the client uses; ``issuer`` is the server URL, no trailing slash.
    ``code_grant`` is ``None`` unless the server offers same-device sign-in."""

    issuer: str
    device_authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    code_grant: CodeGrant | None = None


@dataclass(frozen=True)
class Token:
    """RFC 6749 section 5.1: the API key and what came with it."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    scope: str | None
    endpoints: Endpoints
    server: str


__all__ = [
    "CodeGrant",
    "CodeIssued",
    "Command",
    "ConnectionLost",
    "DeviceAuthorization",
    "Endpoints",
    "Flow",
    "Reply",
    "Send",
    "Sleep",
    "Token",
    "WaitReason",
]
