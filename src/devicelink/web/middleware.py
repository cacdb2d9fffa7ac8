"""Plain ASGI middleware: cheap enough for every request on the hot path."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicelink.web.errors import SECURITY_HEADERS

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_HEADER_BYTES = 32 * 1024
_TOO_LARGE = b'{"error":"invalid_request","error_description":"the request headers are too large"}'


async def _too_large_headers(send: Send) -> None:
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


class RequestIdMiddleware:
    """Echo ``X-Request-ID`` on every response: the caller's when it is sane, else a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"x-request-id" and request_id is None:
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
        if header_bytes > MAX_HEADER_BYTES:
            # The HTTP parser accepts headers of any size: refuse them here (RFC 6585).
            await _too_large_headers(send)
            return
        if request_id is None:
            request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", encoded))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


_SECURITY_HEADERS = [
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
        headers_to_add = _SECURITY_HEADERS
        if self.exempt_prefixes and scope["path"].startswith(self.exempt_prefixes):
            # The interactive API docs load their own scripts; they still may not be framed.
            headers_to_add = _SECURITY_HEADERS[:3] + [
                (b"content-security-policy", b"frame-ancestors 'none'")
            ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # devicelink's own routes set them already (see DeviceLinkRoute).
                if not any(name == b"x-frame-options" for name, _ in headers):
                    message["headers"] = headers + headers_to_add
            await send(message)

        await self.app(scope, receive, send_with_headers)
