"""The device flow as a sans-IO generator: RFC 8628 sections 3.1-3.5, with RFC 8414
discovery, RFC 7009 revocation and the ``/api/me`` key check around it.

Shape (the same as httpx's ``Auth.auth_flow``): a generator yields *commands* and the
driver (``devicelink.client.http``, or a test) answers each one with ``generator.send``::

    command                      the driver                        and sends back
    Send(request)                sends the httpx.Request           the httpx.Response, or
                                                                   ConnectionLost(reason) when
                                                                   the transport failed
    Sleep(seconds, reason, ...)  waits (and may draw a countdown)  None
    CodeIssued(authorization)    shows the user code and the link  None

The generator's return value (``StopIteration.value``) is the result: a :class:`Token`
from :func:`device_flow`, :class:`Endpoints` from :func:`discover`, ``True`` from
:func:`revoke_flow`, the owner's JSON from :func:`whoami_flow`. Failures are raised from
the generator as the typed errors of ``devicelink.client.errors``. Nothing here does I/O
or sleeps, and time is read only through the ``clock`` (monotonic seconds) and
``wall_clock`` (Unix seconds, for HTTP-date ``Retry-After``) arguments, so one code path
drives the sync and the async client and tests step it with scripted answers.

Pacing (RFC 8628 section 3.5):

- Polls are ``interval`` apart (5 s when the server names none). ``slow_down`` raises the
  interval by 5 s "for this and all subsequent requests", or to the server's ``interval``
  when that is larger.
- Why the client cannot get stuck in ``slow_down`` through latency jitter: a server
  measures the time between the *arrivals* of two polls. Every wait here starts when the
  previous answer has arrived, which is after the previous poll reached the server, so the
  gap between two arrivals is at least the wait plus the next request's latency, whatever
  the latency was. A client that polls on a fixed cadence counted from its *sends* does
  not have that property: a slow poll followed by a fast one arrives early. On top of
  that each wait between polls gets :data:`POLL_MARGIN` (0.25 s), for what the argument
  above does not cover: event loops that wake a timer up to their clock resolution early
  (asyncio does, about 16 ms on Windows), and several server processes whose clocks
  disagree slightly.
- ``429`` and ``503`` are retried after ``Retry-After`` (seconds, or an HTTP-date measured
  against the response's own ``Date``), at most :data:`MAX_RETRY_AFTER` seconds; without
  it, and for other 5xx answers and lost connections, after an exponential backoff of
  1, 2, 4 ... seconds up to :data:`BACKOFF_CAP`. While polling, the backoff never goes
  below the polling interval (section 3.5: reduce the polling frequency on connection
  timeouts), and the same device code is polled again: the flow survives the outage.
- Before a code exists (discovery, the device authorization request, revocation, the key
  check) a request is tried at most :data:`ATTEMPTS_WITHOUT_CODE` times, then
  :class:`ServerUnreachable`. Once a code exists the limit is its lifetime: the client
  gives up with :class:`ExpiredToken` when ``expires_in`` (counted from the moment the
  device authorization request was sent, which is no later than the server's count) has
  passed, and never sleeps past that moment; the last wait is cut short to end there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Literal, TypeVar

import httpx

from devicelink.client.errors import (
    AccessDenied,
    DeviceFlowError,
    DiscoveryFailed,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidToken,
    ServerRejected,
    ServerUnreachable,
    printable,
)

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
METADATA_PATH = "/.well-known/oauth-authorization-server"
ME_PATH = "/api/me"
BEARER = "Bearer"

DEFAULT_INTERVAL = 5
"""RFC 8628 section 3.2: the polling interval when the server names none."""
SLOW_DOWN_STEP = 5
"""RFC 8628 section 3.5: what ``slow_down`` adds to the interval."""
POLL_MARGIN = 0.25
"""Added to every wait between polls (see the module docstring)."""
BACKOFF_START = 1.0
BACKOFF_CAP = 30.0
MAX_RETRY_AFTER = 120.0
ATTEMPTS_WITHOUT_CODE = 4

_JSON = {"Accept": "application/json"}

T = TypeVar("T")


# --- what the generator yields and receives ---------------------------------------------


@dataclass(frozen=True)
class Send:
    """Send ``request``; answer with the ``httpx.Response`` or a :class:`ConnectionLost`."""

    request: httpx.Request


WaitReason = Literal["interval", "slow_down", "retry_after", "backoff"]


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
    """The driver's answer to :class:`Send` when the transport failed (no HTTP answer)."""

    reason: str = "connection failed"


Command = Send | Sleep | CodeIssued
Reply = httpx.Response | ConnectionLost | None
Flow = Generator[Command, Reply, T]
"""A flow of this module whose result is a ``T``."""


# --- what the flows return --------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """RFC 8414 metadata the client uses; ``issuer`` is the server URL, no trailing slash."""

    issuer: str
    device_authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None


@dataclass(frozen=True)
class Token:
    """RFC 6749 section 5.1: the API key and what came with it."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    scope: str | None
    endpoints: Endpoints
    server: str


# --- flows ------------------------------------------------------------------------------


def device_flow(
    server: str,
    client_id: str | None,
    *,
    scope: str | Iterable[str] | None = None,
    endpoints: Endpoints | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Flow[Token]:
    """Sign in: discovery (unless ``endpoints`` are given), device authorization request
    (section 3.1), :class:`CodeIssued`, then polling (sections 3.4, 3.5) until a token.

    ``client_id`` may be ``None`` for a server with a default client.
    """
    issuer = normalise_server(server)
    if endpoints is None:
        endpoints = yield from discover(issuer, clock=clock, wall_clock=wall_clock)
    form = {"client_id": client_id} if client_id else {}
    scope_text = scope if isinstance(scope, str) else " ".join(scope or ())
    if scope_text.strip():  # section 3.1: an empty parameter counts as absent
        form["scope"] = scope_text.strip()
    request = partial(_form_request, endpoints.device_authorization_endpoint, form)
    response, sent_at = yield from _exchange(request, clock=clock, wall_clock=wall_clock)
    if response.status_code != 200:
        _raise_oauth_error(response)
    authorization = _read_authorization(response)
    yield CodeIssued(authorization)

    deadline = sent_at + authorization.expires_in
    interval = float(authorization.interval)
    poll = partial(
        _form_request,
        endpoints.token_endpoint,
        {"grant_type": DEVICE_CODE_GRANT, "device_code": authorization.device_code}
        | ({"client_id": client_id} if client_id else {}),
    )
    reason: WaitReason = "interval"
    while True:
        yield from _wait(interval + POLL_MARGIN, reason, clock, deadline)
        response, _ = yield from _exchange(
            poll,
            clock=clock,
            wall_clock=wall_clock,
            deadline=deadline,
            floor=interval + POLL_MARGIN,
        )
        if response.status_code == 200:
            return _read_token(response, endpoints, issuer)
        body = _oauth_error_body(response)
        error = body.get("error") if body else None
        if error == "authorization_pending":
            reason = "interval"
        elif error == "slow_down":
            interval = slowed_down(interval, body.get("interval") if body else None)
            reason = "slow_down"
        else:
            _raise_oauth_error(response, body)


def slowed_down(interval: float, server_interval: object = None) -> float:
    """Section 3.5: after ``slow_down`` the interval grows by 5 s, or to the server's
    ``interval`` when that is larger (a non-number there is ignored)."""
    grown = interval + SLOW_DOWN_STEP
    if isinstance(server_interval, int | float) and not isinstance(server_interval, bool):
        return max(grown, float(server_interval))
    return grown


def discover(
    server: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Flow[Endpoints]:
    """RFC 8414 section 3: fetch and check the metadata of the server at ``server``.

    For an issuer with a path, the RFC 8414 location (``/.well-known/...`` inserted before
    the path) is tried first, then ``{server}/.well-known/...`` (a router mounted under a
    prefix). Section 3.3: the ``issuer`` must be the server URL.
    """
    issuer = normalise_server(server)
    candidates = metadata_urls(issuer)
    for index, url in enumerate(candidates):
        request = partial(httpx.Request, "GET", url, headers=_JSON)
        response, _ = yield from _exchange(request, clock=clock, wall_clock=wall_clock)
        if response.status_code == 404 and index + 1 < len(candidates):
            continue
        break
    if response.status_code != 200:
        raise DiscoveryFailed(
            f"no OAuth metadata at {url} (HTTP {response.status_code}); check the server address"
        )
    try:
        metadata = response.json()
    except ValueError:
        metadata = None
    if not isinstance(metadata, dict):
        raise DiscoveryFailed(f"the metadata at {url} is not a JSON object")
    named = metadata.get("issuer")
    if not isinstance(named, str) or _same_url(named) != issuer:
        raise DiscoveryFailed(
            f"the metadata at {url} names issuer {printable(named, 100)!r}, not {issuer}; "
            "check the server address"
        )
    grants = metadata.get("grant_types_supported")
    if isinstance(grants, list) and DEVICE_CODE_GRANT not in grants:
        raise DiscoveryFailed(f"{issuer} does not offer the device authorization grant")
    return Endpoints(
        issuer=issuer,
        device_authorization_endpoint=_endpoint(metadata, "device_authorization_endpoint", issuer),
        token_endpoint=_endpoint(metadata, "token_endpoint", issuer),
        revocation_endpoint=_endpoint(metadata, "revocation_endpoint", issuer, required=False),
    )


def revoke_flow(
    endpoints_or_server: Endpoints | str,
    token: str,
    client_id: str | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Flow[bool]:
    """RFC 7009 section 2: revoke ``token`` (discovering the endpoint when given a URL).

    The server answers 200 for unknown tokens as well (section 2.2), so ``True`` means the
    key is no longer usable, whether or not it was before.
    """
    if isinstance(endpoints_or_server, Endpoints):
        endpoints = endpoints_or_server
    else:
        endpoints = yield from discover(endpoints_or_server, clock=clock, wall_clock=wall_clock)
    if endpoints.revocation_endpoint is None:
        raise DiscoveryFailed(
            f"{endpoints.issuer} does not offer revocation (no revocation_endpoint in its "
            "metadata); the key was not revoked"
        )
    form = {"token": token, "token_type_hint": "access_token"}
    if client_id:
        form["client_id"] = client_id
    request = partial(_form_request, endpoints.revocation_endpoint, form)
    response, _ = yield from _exchange(request, clock=clock, wall_clock=wall_clock)
    if response.status_code != 200:
        _raise_oauth_error(response)
    return True


def whoami_flow(
    server: str,
    token: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> Flow[dict[str, Any]]:
    """``GET {server}/api/me`` with the key as a bearer token (RFC 6750 section 2.1)."""
    url = normalise_server(server) + ME_PATH
    headers = {**_JSON, "Authorization": f"Bearer {token}"}
    request = partial(httpx.Request, "GET", url, headers=headers)
    response, _ = yield from _exchange(request, clock=clock, wall_clock=wall_clock)
    if response.status_code == 401:
        body = _oauth_error_body(response)
        raise InvalidToken(description=_description(body))
    if response.status_code != 200:
        _raise_oauth_error(response)
    try:
        owner = response.json()
    except ValueError:
        owner = None
    if not isinstance(owner, dict):
        raise ServerRejected("invalid_response", f"{ME_PATH} did not answer a JSON object")
    return owner


# --- URLs -------------------------------------------------------------------------------


def normalise_server(server: str) -> str:
    """``scheme://host[:port][/path]`` without a trailing slash (the form of an issuer)."""
    try:
        url = httpx.URL(server.strip())
    except (httpx.InvalidURL, TypeError):
        raise DiscoveryFailed(f"{printable(server, 100)!r} is not a server URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.query or url.fragment:
        raise DiscoveryFailed(
            f"{printable(server, 100)!r} is not a server URL (expected https://host[/path])"
        )
    return _same_url(str(url))


def metadata_urls(issuer: str) -> list[str]:
    """Where RFC 8414 metadata may be, most standard first."""
    url = httpx.URL(issuer)
    path = url.path.rstrip("/")
    if not path:
        return [issuer + METADATA_PATH]
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    return [origin + METADATA_PATH + path, issuer + METADATA_PATH]


def _same_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return value
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path.rstrip('/')}"


def _endpoint(metadata: dict[str, Any], name: str, issuer: str, *, required: bool = True) -> Any:
    value = metadata.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise DiscoveryFailed(f"{issuer} names no {name} in its metadata")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        url = None
    secure = issuer.startswith("https://")
    allowed = ("https",) if secure else ("http", "https")
    if url is None or url.scheme not in allowed or not url.host:
        raise DiscoveryFailed(f"the {name} in {issuer}'s metadata is not a valid URL")
    return value


# --- requests and retries ---------------------------------------------------------------


def _form_request(url: str, form: dict[str, str]) -> httpx.Request:
    return httpx.Request("POST", url, data=form, headers=_JSON)


def _exchange(
    build: Callable[[], httpx.Request],
    *,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
    deadline: float | None = None,
    floor: float = 0.0,
) -> Generator[Command, Reply, tuple[httpx.Response, float]]:
    """Send until the answer is not transient; return it and when its request was sent.

    Transient: no answer (:class:`ConnectionLost`), 429, 5xx. With no ``deadline`` (no code
    yet) after :data:`ATTEMPTS_WITHOUT_CODE` tries :class:`ServerUnreachable`; with one,
    until the deadline, then :class:`ExpiredToken`.
    """
    failures = 0
    while True:
        sent_at = clock()
        reply = yield Send(build())
        if isinstance(reply, httpx.Response):
            if not _is_transient(reply):
                return reply, sent_at
        elif not isinstance(reply, ConnectionLost):
            raise TypeError(f"answer Send with an httpx.Response or ConnectionLost, not {reply!r}")
        failures += 1
        if deadline is None and failures >= ATTEMPTS_WITHOUT_CODE:
            raise _unreachable(reply, failures)
        backoff = min(BACKOFF_CAP, BACKOFF_START * 2 ** (failures - 1))
        retry_after = _retry_after(reply, wall_clock) if isinstance(reply, httpx.Response) else None
        reason: WaitReason = "backoff" if retry_after is None else "retry_after"
        delay = backoff if retry_after is None else retry_after
        yield from _wait(max(delay, floor), reason, clock, deadline, outage=True)


def _wait(
    seconds: float,
    reason: WaitReason,
    clock: Callable[[], float],
    deadline: float | None,
    *,
    outage: bool = False,
) -> Generator[Command, Reply, None]:
    """Sleep, but never past ``deadline``: a wait that would cross it ends there, and the
    flow gives up (a poll after the code expired can only get ``expired_token``)."""
    if deadline is None:
        yield Sleep(seconds, reason)
        return
    remaining = deadline - clock()
    if remaining > seconds:
        yield Sleep(seconds, reason, remaining)
        return
    if remaining > 0:
        yield Sleep(remaining, reason, remaining)
    if outage:
        raise ExpiredToken(
            "the code expired while the server could not be reached; start the login again"
        )
    raise ExpiredToken()


def _is_transient(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _retry_after(response: httpx.Response, wall_clock: Callable[[], float]) -> float | None:
    """RFC 9110 section 10.2.3: seconds, or an HTTP-date; bounded by MAX_RETRY_AFTER.

    An HTTP-date is compared with the response's own ``Date`` when it has one, so a
    client whose clock is wrong still waits what the server meant.
    """
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    now = wall_clock()
    date = response.headers.get("date")
    if date:
        try:
            now = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return min(max(when - now, 0.0), MAX_RETRY_AFTER)


def _unreachable(reply: httpx.Response | ConnectionLost, attempts: int) -> ServerUnreachable:
    if isinstance(reply, ConnectionLost):
        return ServerUnreachable(
            f"the server could not be reached after {attempts} attempts "
            f"({printable(reply.reason, 120)}); check the address and the network",
            reason=reply.reason,
        )
    status = reply.status_code
    if status == 429:
        message = "the server is refusing requests from this address for now (HTTP 429)"
    else:
        message = f"the server is unavailable (HTTP {status})"
    return ServerUnreachable(
        f"{message} after {attempts} attempts; try again later",
        reason=f"HTTP {status}",
        status_code=status,
    )


# --- answers ----------------------------------------------------------------------------


_TYPED_ERRORS: dict[str, type[DeviceFlowError]] = {
    "access_denied": AccessDenied,
    "expired_token": ExpiredToken,
    "invalid_grant": InvalidGrant,
    "invalid_client": InvalidClient,
}


def _oauth_error_body(response: httpx.Response) -> dict[str, Any] | None:
    """The RFC 6749 section 5.2 body, if the answer is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body
    return None


def _description(body: dict[str, Any] | None) -> str | None:
    description = body.get("error_description") if body else None
    return description if isinstance(description, str) else None


def _raise_oauth_error(response: httpx.Response, body: dict[str, Any] | None = None) -> None:
    """Raise the typed error for a refusal (section 3.5: any error other than
    ``authorization_pending`` and ``slow_down`` ends the polling)."""
    body = body or _oauth_error_body(response)
    if body is None:
        raise ServerRejected(None, None, status_code=response.status_code)
    error = body["error"]
    kind = _TYPED_ERRORS.get(error)
    if kind is not None:
        raise kind(description=_description(body))
    raise ServerRejected(error, _description(body), status_code=response.status_code)


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ServerRejected("invalid_response", f"the {what} is not a JSON object")
    return body


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


def _read_authorization(response: httpx.Response) -> DeviceAuthorization:
    """Section 3.2, checked: what reaches the user's terminal must be printable text."""
    what = "device authorization response"
    body = _json_object(response, what)
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


def _read_token(response: httpx.Response, endpoints: Endpoints, server: str) -> Token:
    """RFC 6749 section 5.1; ``token_type`` is case-insensitive (section 7.1)."""
    what = "token response"
    body = _json_object(response, what)
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


__all__ = [
    "ATTEMPTS_WITHOUT_CODE",
    "BACKOFF_CAP",
    "DEFAULT_INTERVAL",
    "DEVICE_CODE_GRANT",
    "MAX_RETRY_AFTER",
    "POLL_MARGIN",
    "SLOW_DOWN_STEP",
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
    "device_flow",
    "discover",
    "metadata_urls",
    "normalise_server",
    "revoke_flow",
    "slowed_down",
    "whoami_flow",
]
