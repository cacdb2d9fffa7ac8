"""Plain ASGI middleware: cheap enough for every request on the fast path."""

from __future__ import annotations

import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicelink.http.errors import SECURITY_HEADERS
from devicelink.runtime.logging import AccessLog

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_HEADER_BYTES = 32 * 1024
_TOO_LARGE = b'{"error":"invalid_request","error_description":"the request headers are too large"}'


async def too_large_headers(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_TOO_LARGE)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _TOO_LARGE})


def request_id_of(scope: Scope) -> str | None:
    """The request's id (the caller's ``X-Request-ID`` when it is sane, else a new one),
    also put in ``scope["state"]``; None when the headers are too large to serve (the
    HTTP parser accepts headers of any size: they are refused with 431, RFC 6585)."""
    request_id = None
    header_bytes = 0
    for name, value in scope["headers"]:
        header_bytes += len(name) + len(value)
        if name == b"x-request-id" and request_id is None:
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                request_id = candidate
    if header_bytes > MAX_HEADER_BYTES:
        return None
    if request_id is None:
        request_id = os.urandom(16).hex()  # as random as uuid4().hex, and cheaper
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


class RequestIdMiddleware:
    """Echo ``X-Request-ID`` on every response: the caller's when it is sane, else a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        if request_id is None:
            await too_large_headers(send)
            return
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", encoded))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


SECURITY_HEADER_LIST = [
    (name.lower().encode("ascii"), value.encode("ascii"))
    for name, value in SECURITY_HEADERS.items()
]


class SecurityHeadersMiddleware:
    """Anti-framing and friends on every response (RFC 9700 section 4.16)."""

    def __init__(self, app: ASGIApp, *, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.exempt_prefixes = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers_to_add = SECURITY_HEADER_LIST
        if self.exempt_prefixes and scope["path"].startswith(self.exempt_prefixes):
            # The interactive API docs load their own scripts; they still may not be framed.
            headers_to_add = [
                *SECURITY_HEADER_LIST[:3],
                (b"content-security-policy", b"frame-ancestors 'none'"),
            ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # devicelink's own routes set them already (see DeviceLinkRoute).
                if not any(name == b"x-frame-options" for name, _ in headers):
                    message["headers"] = headers + headers_to_add
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessLogMiddleware:
    """One log line per HTTP request, written when the response is complete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.access_log = AccessLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.access_log.enabled():
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        request_id: str | None = None

        async def send_and_watch(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        request_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            status = status or 500
            raise
        finally:
            self.access_log.write(scope, status, started, request_id)


class LatencyMiddleware:
    """Counts every request by its route's path template (or "other", so that unknown
    paths cannot blow up the number of series) and status code, and observes its
    duration by route. The fast path counts what it answers itself, with the same call."""

    def __init__(self, app: ASGIApp, *, known_paths: frozenset[str]) -> None:
        self.app = app
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            status = status or 500  # answered 500 further out, as the access log says
            raise
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            if template is None:
                template = scope["path"] if scope["path"] in self.known_paths else "other"
            runtime = getattr(scope["app"].state, "devicelink", None)
            if runtime is not None:
                runtime.metrics.observe_request(
                    template, status or 500, time.perf_counter() - started
                )
