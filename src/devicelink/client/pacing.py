"""When the client sends: the polling interval and ``slow_down`` (RFC 8628 section 3.5),
retries of transient failures, and the code's lifetime as the last word.

- Polls are ``interval`` apart (:data:`DEFAULT_INTERVAL` when the server names none).
  ``slow_down`` raises the interval by :data:`SLOW_DOWN_STEP` "for this and all subsequent
  requests", or to the server's ``interval`` when that is larger.
- Every wait starts when the previous answer has arrived, never on a cadence counted from
  the sends: a server measures the gap between two *arrivals*, and that gap is then at
  least the wait whatever the latency, so jitter alone never earns a ``slow_down``.
  :data:`POLL_MARGIN` covers what that argument does not: timers that fire early and
  server processes whose clocks disagree slightly.
- ``500`` with the OAuth error ``server_error`` is final where the caller says so (the
  token endpoint: RFC 8628 section 3.5, any error but the pending ones ends the polling).
- ``429`` and ``503`` are retried after ``Retry-After`` (seconds, or an HTTP-date measured
  against the response's own ``Date``), at most :data:`MAX_RETRY_AFTER`; without it, and
  for other 5xx answers and lost connections, after an exponential backoff from
  :data:`BACKOFF_START` up to :data:`BACKOFF_CAP`. While polling the backoff never goes
  below the interval (section 3.5: slow down on connection timeouts), and the same device
  code is polled again.
- Before a code exists a request is tried :data:`ATTEMPTS_WITHOUT_CODE` times, then
  :class:`ServerUnreachable`. Once it exists the limit is its lifetime, counted from when
  the device authorization request was sent (no later than the server's count): no wait
  crosses it, and reaching it is :class:`LoginExpired`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from email.utils import parsedate_to_datetime

import httpx

from devicelink.client.errors import LoginExpired, ServerUnreachable, printable
from devicelink.client.messages import Command, ConnectionLost, Reply, Send, Sleep, WaitReason

DEFAULT_INTERVAL = 5
"""RFC 8628 section 3.2: the polling interval when the server names none."""
SLOW_DOWN_STEP = 5
"""RFC 8628 section 3.5: what ``slow_down`` adds to the interval."""
POLL_MARGIN = 0.25
"""Added to every wait between polls."""
BACKOFF_START = 1.0
BACKOFF_CAP = 30.0
MAX_RETRY_AFTER = 120.0
ATTEMPTS_WITHOUT_CODE = 4

Clock = Callable[[], float]


def slowed_down(interval: float, server_interval: object = None) -> float:
    """Section 3.5: after ``slow_down`` the interval grows by 5 s, or to the server's
    ``interval`` when that is larger (a non-number there is ignored)."""
    grown = interval + SLOW_DOWN_STEP
    if isinstance(server_interval, int | float) and not isinstance(server_interval, bool):
        return max(grown, float(server_interval))
    return grown


def exchange(
    build: Callable[[], httpx.Request],
    *,
    clock: Clock,
    wall_clock: Clock,
    deadline: float | None = None,
    floor: float = 0.0,
    server_error_is_final: bool = False,
) -> Generator[Command, Reply, tuple[httpx.Response, float]]:
    """Send until the answer is not transient; return it and when its request was sent.

    Transient: no answer (:class:`ConnectionLost`), 429, 5xx. With no ``deadline`` (no code
    yet) after :data:`ATTEMPTS_WITHOUT_CODE` tries :class:`ServerUnreachable`; with one,
    until the deadline, then :class:`LoginExpired`. No retry waits less than ``floor``.
    With ``server_error_is_final``, a 500 whose body is the OAuth error ``server_error``
    is returned, not retried.
    """
    failures = 0
    while True:
        sent_at = clock()
        request = build()
        reply = yield Send(request)
        if isinstance(reply, httpx.Response) and (
            not _is_transient(reply) or (server_error_is_final and _is_server_error(reply))
        ):
            return reply, sent_at
        if not isinstance(reply, httpx.Response | ConnectionLost):
            raise TypeError(f"answer Send with an httpx.Response or ConnectionLost, not {reply!r}")
        failures += 1
        if deadline is None and isinstance(reply, ConnectionLost) and reply.lasting:
            raise _lasting_failure(reply, request.url)  # no retry can mend it
        if deadline is None and failures >= ATTEMPTS_WITHOUT_CODE:
            raise _unreachable(reply, failures)
        backoff = min(BACKOFF_CAP, BACKOFF_START * 2 ** (failures - 1))
        retry_after = _retry_after(reply, wall_clock) if isinstance(reply, httpx.Response) else None
        reason: WaitReason = "backoff" if retry_after is None else "retry_after"
        delay = backoff if retry_after is None else retry_after
        yield from wait(max(delay, floor), reason, clock, deadline, outage=True)


def wait(
    seconds: float,
    reason: WaitReason,
    clock: Clock,
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
        raise LoginExpired(
            "the code expired while the server could not be reached; start the login again"
        )
    raise LoginExpired()


def _is_transient(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def _is_server_error(response: httpx.Response) -> bool:
    """A 500 answered by the server itself as RFC 6749 ``server_error`` (not a proxy's
    error page, nor a 503 ``temporarily_unavailable``, which stay transient)."""
    if response.status_code != 500:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "server_error"


def _retry_after(response: httpx.Response, wall_clock: Clock) -> float | None:
    """RFC 9110 section 10.2.3: seconds, or an HTTP-date; bounded by MAX_RETRY_AFTER.

    An HTTP-date is compared with the response's own ``Date`` when it has one, so a
    client whose clock is wrong still waits what the server meant.
    """
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    when = _http_date(value)
    if when is None:
        return None
    now = _http_date(response.headers.get("date", ""))
    if now is None:
        now = wall_clock()
    return min(max(when - now, 0.0), MAX_RETRY_AFTER)


def _http_date(value: str) -> float | None:
    """Unix seconds of an RFC 9110 HTTP-date, or ``None`` when it is not one."""
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        return parsedate_to_datetime(value).timestamp()
    return None


def _lasting_failure(reply: ConnectionLost, url: httpx.URL) -> ServerUnreachable:
    """The failure of a request that trying again would not mend, and what to check."""
    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
    if reply.lasting == "dns":
        why = f"the host name {url.host} could not be found (DNS); check the spelling"
    elif reply.lasting == "tls":
        plain = f"http://{url.netloc.decode('ascii')}"
        why = f"{origin} does not answer in TLS (https); if it is a plain http server, use {plain}"
    else:
        why = f"the TLS certificate of {origin} is not trusted by this computer"
    return ServerUnreachable(
        f"the server could not be reached ({printable(reply.reason, 120)}): {why}",
        reason=reply.reason,
    )


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


__all__ = [
    "ATTEMPTS_WITHOUT_CODE",
    "BACKOFF_CAP",
    "BACKOFF_START",
    "DEFAULT_INTERVAL",
    "MAX_RETRY_AFTER",
    "POLL_MARGIN",
    "SLOW_DOWN_STEP",
    "exchange",
    "slowed_down",
    "wait",
]
