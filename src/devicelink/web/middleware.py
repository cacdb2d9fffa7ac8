"""Plain ASGI middleware: cheap enough for every request on the hot path."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicelink.web.errors import SECURITY_HEADERS

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIdMiddleware:
    """Echo ``X-Request-ID`` on every response: the caller's when it is sane, else a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
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
