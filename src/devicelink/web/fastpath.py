"""The thin route for the hot requests: a device's authorization and token poll, and a
CLI's /api/me.

Every waiting device polls every few seconds and every call a signed-in CLI makes
checks a key, so these skip the framework: a plain ASGI layer reads the small form or
the bearer header itself and calls the same functions the FastAPI routes call
(:func:`devicelink.web.oauth.answer_authorization`,
:func:`devicelink.web.oauth.answer_poll`, :func:`devicelink.web.api.describe_owner`).
Anything out of the ordinary (client authentication, an odd body, a form that does not
parse) is handed to the full route untouched, which answers it as always. It sits inside
the request-id and security-header middlewares, so its answers carry them too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicelink.core.errors import InvalidToken, OAuthError, ServerError, TemporarilyUnavailable
from devicelink.core.ports import StorageUnavailable
from devicelink.service.clients import ClientCredentials
from devicelink.web.api import describe_owner
from devicelink.web.errors import oauth_error_response
from devicelink.web.forms import FORM_MEDIA_TYPE, MAX_FIELDS
from devicelink.web.oauth import answer_authorization, answer_poll, check_start_limit
from devicelink.web.runtime import Runtime

log = logging.getLogger("devicelink.web")


FormAnswer = Callable[[Runtime, dict[str, str], ClientCredentials, Scope], Awaitable[Response]]


async def _poll(
    rt: Runtime, form: dict[str, str], creds: ClientCredentials, scope: Scope
) -> Response:
    return await answer_poll(rt, form, creds, _ip(scope))


async def _authorize(
    rt: Runtime, form: dict[str, str], creds: ClientCredentials, scope: Scope
) -> Response:
    user_agent = None
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")
            break
    return await answer_authorization(rt, form, creds, _ip(scope), user_agent)


def _ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


class FastPathMiddleware:
    def __init__(self, app: ASGIApp, *, token_path: str, authorize_path: str, me_path: str) -> None:
        self.app = app
        self.token_path = token_path
        self.authorize_path = authorize_path
        self.me_path = me_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            method = scope["method"]
            if path == self.token_path and method == "POST":
                await self._form(scope, receive, send, _poll)
                return
            if path == self.authorize_path and method == "POST":
                await self._form(scope, receive, send, _authorize, limit_starts=True)
                return
            if path == self.me_path and method == "GET":
                await self._me(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _form(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        answer: FormAnswer,
        *,
        limit_starts: bool = False,
    ) -> None:
        rt: Runtime = scope["app"].state.devicelink
        limit = rt.settings.max_body_bytes
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                await self.app(scope, receive, send)  # client authentication: full route
                return
            if name == b"content-type":
                content_type = value
            elif name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self.app(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(chunks, receive, message), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
            if size > limit:
                await self.app(scope, _replay(chunks, receive, None, more), send)
                return
        body = b"".join(chunks)
        form = _simple_form(content_type, body)
        if form is None:
            await self.app(scope, _replay([body], receive, None, False), send)
            return
        creds = ClientCredentials(form.get("client_id"), form.get("client_secret"))
        response: Response
        try:
            if limit_starts:
                # Counted here, once the request is known to stay on this route: what
                # goes to the full route is counted there.
                await check_start_limit(rt, _ip(scope))
            response = await answer(rt, form, creds, scope)
        except OAuthError as exc:
            response = oauth_error_response(exc, html=False)
        except StorageUnavailable as exc:
            log.warning("database unavailable: %s", exc)
            response = oauth_error_response(
                TemporarilyUnavailable("the database is unavailable"), html=False
            )
        except Exception as exc:  # noqa: BLE001 - answer in the protocol's format, always
            response = _unexpected(scope, exc)
        await response(scope, receive, send)

    async def _me(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt: Runtime = scope["app"].state.devicelink
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip() or None
                break
        if token is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        response: Response
        try:
            owner = await rt.keys.authenticate(token, ip=client[0] if client else None)
            response = describe_owner(owner)
        except InvalidToken as exc:
            response = oauth_error_response(exc, html=False)
        except StorageUnavailable as exc:
            log.warning("database unavailable: %s", exc)
            response = oauth_error_response(
                TemporarilyUnavailable("the database is unavailable"), html=False
            )
        except Exception as exc:  # noqa: BLE001 - answer in the protocol's format, always
            response = _unexpected(scope, exc)
        await response(scope, receive, send)


def _unexpected(scope: Scope, exc: Exception) -> Response:
    """As :class:`devicelink.web.errors.DeviceLinkRoute` does: the detail to the log
    under the request id, a plain ``server_error`` to the client."""
    log.error(
        "unhandled %s on %s %s (request %s)",
        type(exc).__name__,
        scope.get("method"),
        scope.get("path"),
        scope.get("state", {}).get("request_id", "-"),
        exc_info=exc,
    )
    return oauth_error_response(ServerError(), html=False)


def _simple_form(content_type: bytes, body: bytes) -> dict[str, str] | None:
    """The form when it is the ordinary kind; None sends the request to the full route,
    which explains whatever is wrong with it."""
    if content_type.split(b";", 1)[0].strip().lower() != FORM_MEDIA_TYPE.encode():
        return None
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return None
        form[name] = value
    return {name: value for name, value in form.items() if value}


def _replay(
    chunks: list[bytes], receive: Receive, pending: Message | None, more: bool = False
) -> Receive:
    """A receive channel that gives back what the thin route already read, then the rest."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if pending is not None and not chunks:
                return pending
            return {"type": "http.request", "body": b"".join(chunks), "more_body": more}
        return await receive()

    return replay
