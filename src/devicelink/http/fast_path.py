"""The fast path for the hot requests: a device's authorization and token poll, and a
CLI's /api/me.

Every waiting device polls every few seconds and every call a signed-in CLI makes
checks a key, so these skip the framework: the application's front door
(:class:`devicelink.server.app.DeviceLinkApp`) hands them to :class:`FastPath` before
FastAPI, Starlette and the middleware stack see them. FastPath reads the small form or
the bearer header itself, calls the same functions the FastAPI routes call
(:func:`devicelink.http.oauth.answer_authorization`,
:func:`devicelink.http.oauth.answer_poll`, :func:`devicelink.http.api.describe_owner`),
and does what the middlewares would have done, with their own pieces: the request id
and the header-size limit, the security headers, the request metrics, the access log.
Anything out of the ordinary (client authentication, an odd body, a form that does not
parse, another method) is handed to the full stack untouched, which answers it as always.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Hashable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devicelink.core.errors import OAuthError
from devicelink.http.api import describe_owner
from devicelink.http.errors import error_response, is_logged, json_error_response
from devicelink.http.forms import FORM_MEDIA_TYPE, MAX_FIELDS
from devicelink.http.middleware import SECURITY_HEADER_LIST, request_id_of
from devicelink.http.oauth import (
    answer_authorization,
    answer_poll,
    answer_token,
    check_start_limit,
)
from devicelink.runtime.logging import AccessLog
from devicelink.runtime.wiring import Runtime
from devicelink.service.clients import ClientCredentials
from devicelink.service.keys import KeyOwner


class FastPath:
    def __init__(
        self,
        full: ASGIApp,
        *,
        token_path: str,
        both_grants_token_path: str,
        authorize_path: str,
        me_path: str,
    ) -> None:
        self.full = full
        """The whole application (FastAPI with its middlewares): everything else."""
        self.routes = {
            (token_path, "POST"): self._poll,
            # The metadata's token_endpoint: clients that follow it poll there.
            (both_grants_token_path, "POST"): self._token,
            (authorize_path, "POST"): self._authorize,
            (me_path, "GET"): self._me,
        }
        self.paths = frozenset(path for path, _ in self.routes)
        self.access_log = AccessLog()
        self.owners = OwnerAnswers()
        self.errors = ErrorAnswers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.routes.get((scope["path"], scope["method"]))
        if handler is None:
            await self.full(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        if request_id is None:
            await self.full(scope, receive, send)  # 431, from the middleware
            return
        rt: Runtime = scope["app"].state.devicelink
        response = await handler(rt, scope, receive)
        if not isinstance(response, Response):
            # Handed over: ``response`` is the request's receive channel, what the thin
            # route read of it included.
            await self.full(scope, response, send)
            return
        headers = response.raw_headers
        if type(response) is not _Rendered and not any(
            name == b"x-frame-options" for name, _ in headers
        ):
            headers.extend(SECURITY_HEADER_LIST)
        headers.append((b"x-request-id", request_id.encode("ascii")))
        try:
            await response(scope, receive, send)
        finally:
            rt.metrics.observe_request(
                scope["path"], response.status_code, time.perf_counter() - started
            )
            if self.access_log.enabled():
                self.access_log.write(scope, response.status_code, started, request_id)

    async def _answering(self, scope: Scope, answer: Awaitable[Response]) -> Response:
        """The answer, or the error in the protocol's format, always (as
        :class:`devicelink.http.errors.DeviceLinkRoute` answers on the full stack, with
        :func:`devicelink.http.errors.error_response`; a protocol error that is not
        logged is given its answer from :class:`ErrorAnswers`, the same bytes)."""
        try:
            return await answer
        except OAuthError as exc:
            if is_logged(exc):
                return error_response(exc, Request(scope), html=False)
            return self.errors.answer(exc)
        except Exception as exc:  # answered as the full stack would, never raised
            return error_response(exc, Request(scope), html=False)

    async def _form(self, rt: Runtime, scope: Scope, receive: Receive) -> dict[str, str] | Receive:
        """The request's form when it is the ordinary kind; otherwise the receive
        channel to hand the request over with (see :func:`_replay`)."""
        limit = rt.settings.max_body_bytes
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                return receive  # client authentication: nothing read yet
            if name == b"content-type":
                content_type = value
            elif name == b"content-length" and (not value.isdigit() or int(value) > limit):
                return receive
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _replay(chunks, receive, message, False)
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
            if size > limit:
                return _replay(chunks, receive, None, more)
        body = b"".join(chunks)
        form = _simple_form(content_type, body)
        if form is None:
            return _replay([body], receive, None, False)
        return form

    async def _poll(self, rt: Runtime, scope: Scope, receive: Receive) -> Response | Receive:
        form = await self._form(rt, scope, receive)
        if not isinstance(form, dict):
            return form
        creds = ClientCredentials(form.get("client_id"), form.get("client_secret"))
        return await self._answering(scope, answer_poll(rt, form, creds, _ip(scope)))

    async def _token(self, rt: Runtime, scope: Scope, receive: Receive) -> Response | Receive:
        form = await self._form(rt, scope, receive)
        if not isinstance(form, dict):
            return form
        creds = ClientCredentials(form.get("client_id"), form.get("client_secret"))
        agent = _header(scope, b"user-agent")
        return await self._answering(scope, answer_token(rt, form, creds, _ip(scope), agent))

    async def _authorize(self, rt: Runtime, scope: Scope, receive: Receive) -> Response | Receive:
        form = await self._form(rt, scope, receive)
        if not isinstance(form, dict):
            return form
        creds = ClientCredentials(form.get("client_id"), form.get("client_secret"))
        user_agent = _header(scope, b"user-agent")

        async def start() -> Response:
            # Counted here, once the request is known to stay on this route: what goes
            # to the full stack is counted there.
            await check_start_limit(rt, _ip(scope))
            return await answer_authorization(rt, form, creds, _ip(scope), user_agent)

        return await self._answering(scope, start())

    async def _me(self, rt: Runtime, scope: Scope, receive: Receive) -> Response | Receive:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip() or None
                break
        if token is None:
            return receive

        async def me() -> Response:
            return self.owners.answer(await rt.keys.authenticate(token, ip=_ip(scope)))

        return await self._answering(scope, me())


class _Answers:
    """Answers rendered once and given again byte for byte, by a key that holds
    everything their rendering uses; at most ``max_entries`` kept, the oldest dropped."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._answers: dict[Hashable, _Rendered] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def _again(self, found: Hashable) -> Response | None:
        rendered = self._answers.get(found)
        return None if rendered is None else rendered.again()

    def _keep(self, found: Hashable, response: Response) -> Response:
        if self.max_entries > 0:
            answers = self._answers
            while len(answers) >= self.max_entries:
                del answers[next(iter(answers))]
            answers[found] = _Rendered.of(response)
        return response


class OwnerAnswers(_Answers):
    """/api/me's answers (:func:`devicelink.http.api.describe_owner`), each rendered
    once and given again to the same key and owner.

    An answer is a function of the key and its owner alone, so it is remembered by
    their whole value (every field of both, the key's last use included): a change to
    either (a revocation refuses the key before it gets here) makes another entry, never
    a stale answer. At most ``max_entries`` answers are kept, the oldest dropped first.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        super().__init__(max_entries)

    def answer(self, owner: KeyOwner) -> Response:
        found = (owner.key, owner.user)
        again = self._again(found)
        return again if again is not None else self._keep(found, describe_owner(owner))


class ErrorAnswers(_Answers):
    """The JSON answers of protocol errors
    (:func:`devicelink.http.errors.json_error_response`), each rendered once and given
    again byte for byte: a device polling a pending code is answered
    ``authorization_pending`` every few seconds, the same answer every time.

    An answer is a function of the error's status, body and headers alone, so it is
    remembered by their whole value (each body value with its type: ``1`` and ``True``
    are told apart); an error whose body or headers cannot be a key is rendered afresh,
    and so is one longer than ``max_body`` bytes (a description that quotes what the
    request sent, say: never kept). At most ``max_entries`` answers are kept, the oldest
    dropped first.
    """

    def __init__(self, max_entries: int = 1024, max_body: int = 1024) -> None:
        super().__init__(max_entries)
        self.max_body = max_body

    def answer(self, error: OAuthError) -> Response:
        found = (
            error.status_code,
            tuple((name, type(value), value) for name, value in error.body().items()),
            tuple(error.headers.items()),
        )
        try:
            again = self._again(found)
        except TypeError:  # an unhashable value: rendered each time
            return json_error_response(error)
        if again is not None:
            return again
        response = json_error_response(error)
        if len(response.body) > self.max_body:
            return response
        return self._keep(found, response)


class _Rendered(Response):
    """A response rendered before: its status, body and headers, the security headers
    already among them (as :class:`FastPath` adds them), in a fresh list for each
    request (the caller appends the request id)."""

    def __init__(
        self, status_code: int, body: bytes | memoryview, raw_headers: list[tuple[bytes, bytes]]
    ) -> None:
        # Not Response.__init__: nothing to render, the headers are the rendered ones.
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = raw_headers

    @classmethod
    def of(cls, response: Response) -> _Rendered:
        headers = list(response.raw_headers)
        if not any(name == b"x-frame-options" for name, _ in headers):
            headers.extend(SECURITY_HEADER_LIST)
        return cls(response.status_code, bytes(response.body), headers)

    def again(self) -> _Rendered:
        return _Rendered(self.status_code, self.body, list(self.raw_headers))


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


def _ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def _simple_form(content_type: bytes, body: bytes) -> dict[str, str] | None:
    """The form when it is the ordinary kind; None sends the request to the full route,
    which explains whatever is wrong with it."""
    if content_type.split(b";", 1)[0].strip().lower() != FORM_MEDIA_TYPE.encode():
        return None
    try:
        pairs = _form_pairs(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return None
        form[name] = value
    return {name: value for name, value in form.items() if value}


def _form_pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, errors="strict",
    max_num_fields=MAX_FIELDS)``, the same pairs: a form with nothing escaped (no ``%``
    or ``+``, as a device's poll usually is) is split here, without parse_qsl's
    unquoting of each name and value (which would give them back unchanged)."""
    if "%" in text or "+" in text:
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    if not text:
        return []
    if 1 + text.count("&") > MAX_FIELDS:
        raise ValueError("Max number of fields exceeded")
    pairs: list[tuple[str, str]] = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


def _replay(chunks: list[bytes], receive: Receive, pending: Message | None, more: bool) -> Receive:
    """A receive channel that gives back what the fast path already read, then the rest."""
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
