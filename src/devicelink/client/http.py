"""Drivers that run the flows of ``devicelink.client.flow`` on httpx, and a small client.

:func:`run_device_flow` (sync) and :func:`arun_device_flow` (async) obey the commands of
any flow in that module: they send requests (a transport failure becomes
:class:`ConnectionLost`), sleep (after telling ``on_wait``), and hand the code to
``on_code``. All protocol decisions stay in the flow; this module owns no policy beyond
the HTTP client's defaults (User-Agent, timeouts, no redirects).

This module does not store credentials or print anything except, when no ``on_code`` is
given, the code and the link on standard error.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from devicelink import __version__
from devicelink.client.discovery import discover
from devicelink.client.flow import (
    authorization_check_flow,
    code_exchange_flow,
    device_flow,
    revoke_flow,
    whoami_flow,
)
from devicelink.client.messages import (
    CodeIssued,
    ConnectionLost,
    DeviceAuthorization,
    Endpoints,
    Flow,
    LastingFailure,
    Reply,
    Send,
    Sleep,
    Token,
)
from devicelink.client.urls import normalise_server

T = TypeVar("T")

USER_AGENT = f"devicelink/{__version__} (python-httpx)"
DEFAULT_CLIENT_ID = "devicelink-cli"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=10.0)

OnCode = Callable[[DeviceAuthorization], None]
"""Shows the user code and the link (RFC 8628 section 3.3)."""
OnWait = Callable[[float, float | None], None]
"""Called before each wait with its length and the seconds the code is still valid
(``None`` before a code exists), e.g. to draw a countdown."""
AsyncOnCode = Callable[[DeviceAuthorization], Awaitable[None] | None]
AsyncOnWait = Callable[[float, float | None], Awaitable[None] | None]


def show_code_on_stderr(authorization: DeviceAuthorization) -> None:
    """The fallback ``on_code``: the link and the code, on standard error."""
    print(
        f"To sign in, open {authorization.verification_uri} and enter the code "
        f"{authorization.user_code}",
        file=sys.stderr,
        flush=True,
    )


def _prepare(client: httpx.Client | httpx.AsyncClient, request: httpx.Request) -> None:
    # The flow builds bare requests; give them the client's default headers (User-Agent,
    # Accept-Encoding ...) the way ``build_request`` would, without overriding its own.
    for name, value in client.headers.multi_items():
        if name not in request.headers:
            request.headers[name] = value


def _transport_failure(exc: httpx.TransportError) -> ConnectionLost:
    name = type(exc).__name__
    return ConnectionLost(f"{name}: {exc}" if str(exc) else name, _lasting(exc))


_PLAIN_HTTP_ANSWERS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL", "HTTP_REQUEST"}
)
"""OpenSSL's reasons when the other end answered a TLS handshake in plain text."""


def _lasting(exc: BaseException) -> LastingFailure | None:
    """What, in the causes of a transport failure, trying again cannot mend."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx's error, httpcore's, then the socket's or ssl's
        if seen is None:
            return None
        if isinstance(seen, socket.gaierror):
            return "dns"
        if isinstance(seen, ssl.SSLCertVerificationError):
            return "certificate"
        if isinstance(seen, ssl.SSLError) and seen.reason in _PLAIN_HTTP_ANSWERS:
            return "tls"
        seen = seen.__cause__ or seen.__context__
    return None


def run_device_flow(
    flow: Flow[T],
    client: httpx.Client,
    *,
    on_code: OnCode | None = None,
    on_wait: OnWait | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``flow`` (any flow of ``devicelink.client.flow``) to its result on ``client``."""
    try:
        command = next(flow)
        while True:
            reply: Reply = None
            if isinstance(command, Send):
                _prepare(client, command.request)
                try:
                    reply = client.send(command.request)
                except httpx.TransportError as exc:
                    reply = _transport_failure(exc)
            elif isinstance(command, Sleep):
                if on_wait is not None:
                    on_wait(command.seconds, command.remaining)
                sleep(command.seconds)
            elif isinstance(command, CodeIssued):
                (on_code or show_code_on_stderr)(command.authorization)
            else:
                raise TypeError(f"unknown command {command!r}")
            command = flow.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        flow.close()


async def arun_device_flow(
    flow: Flow[T],
    client: httpx.AsyncClient,
    *,
    on_code: AsyncOnCode | None = None,
    on_wait: AsyncOnWait | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """Run ``flow`` on an async client. ``on_code`` and ``on_wait`` may be sync or async;
    under trio, pass ``sleep=trio.sleep``."""
    try:
        command = next(flow)
        while True:
            reply: Reply = None
            if isinstance(command, Send):
                _prepare(client, command.request)
                try:
                    reply = await client.send(command.request)
                except httpx.TransportError as exc:
                    reply = _transport_failure(exc)
            elif isinstance(command, Sleep):
                if on_wait is not None:
                    await _maybe_await(on_wait(command.seconds, command.remaining))
                await sleep(command.seconds)
            elif isinstance(command, CodeIssued):
                await _maybe_await((on_code or show_code_on_stderr)(command.authorization))
            else:
                raise TypeError(f"unknown command {command!r}")
            command = flow.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
    finally:
        flow.close()


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


def _scope_text(scope: str | Iterable[str] | None) -> str | None:
    if scope is None or isinstance(scope, str):
        return scope
    return " ".join(scope)


def _access_token(token: str | Token) -> str:
    return token.access_token if isinstance(token, Token) else token


class _ClientBase:
    def __init__(
        self,
        server: str,
        client_id: str | None,
        scope: str | Iterable[str] | None,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.server = normalise_server(server)
        self.client_id = client_id
        self.scope = _scope_text(scope)
        self._clock = clock
        self._wall_clock = wall_clock
        self._endpoints: Endpoints | None = None

    def _times(self) -> dict[str, Callable[[], float]]:
        return {"clock": self._clock, "wall_clock": self._wall_clock}

    def _login_flow(self) -> Flow[Token]:
        return device_flow(
            self.server,
            self.client_id,
            scope=self.scope,
            endpoints=self._endpoints,
            **self._times(),
        )

    def _discovery(self) -> Flow[Endpoints]:
        return discover(self.server, **self._times())

    def _revocation(self, token: str | Token) -> Flow[bool]:
        target = self._revocation_target(token)
        return revoke_flow(target, _access_token(token), self.client_id, **self._times())

    def _key_check(self, token: str | Token) -> Flow[dict[str, Any]]:
        return whoami_flow(self.server, _access_token(token), **self._times())

    def _revocation_target(self, token: str | Token) -> Endpoints | str:
        if isinstance(token, Token) and token.endpoints.revocation_endpoint is not None:
            return token.endpoints
        if self._endpoints is not None and self._endpoints.revocation_endpoint is not None:
            return self._endpoints
        return self.server  # discover afresh: the metadata may have changed since


def user_agent_header(product: str | None = None, *, host: str | None = None) -> str:
    """The User-Agent sent: a host CLI's product token first (``acme-cli/2.1``), then
    devicelink's, so the confirm page shows the host's CLI and the operator's logs both;
    with ``host`` (:func:`machine_name`), devicelink's comment names this computer, so
    that the key the server names after the User-Agent says where it lives (issue 16)."""
    ours = USER_AGENT if not host else f"devicelink/{__version__} (python-httpx; host {host})"
    if product is None or not product.strip():
        return ours
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in product):
        raise ValueError("a User-Agent product may not contain control characters")
    return f"{product.strip()} {ours}"


def machine_name() -> str | None:
    """This computer's host name as a User-Agent comment may carry it (printable ASCII,
    no parentheses, backslash or semicolon, at most 64 characters); None when it has
    none."""
    name = "".join(
        ch
        for ch in socket.gethostname()
        if ch.isascii() and ch.isprintable() and ch not in '()\\;"'
    )
    return name.strip()[:64] or None


def _http_options(
    timeout: float | httpx.Timeout, user_agent: str | None, host: str | None = None
) -> dict[str, Any]:
    return {
        "headers": {"User-Agent": user_agent_header(user_agent, host=host)},
        "timeout": timeout,
        "follow_redirects": False,
    }


class DeviceFlowClient(_ClientBase):
    """A device-flow client for one server (sync). Close it, or use it as a context manager.

    ``http`` lends an existing client (not closed here); otherwise one is made with
    ``timeout``, ``transport`` and a User-Agent of ``user_agent`` (the host CLI's
    product token, e.g. ``acme-cli/2.1``) followed by :data:`USER_AGENT`, whose comment
    names ``host`` when given (the commands pass :func:`machine_name`).
    """

    def __init__(
        self,
        server: str,
        client_id: str | None = DEFAULT_CLIENT_ID,
        *,
        scope: str | Iterable[str] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        user_agent: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(server, client_id, scope, clock, wall_clock)
        self._owns_http = http is None
        options = _http_options(timeout, user_agent, host)
        self.http = http or httpx.Client(transport=transport, **options)
        self._sleep = sleep

    def _run(
        self, flow: Flow[T], on_code: OnCode | None = None, on_wait: OnWait | None = None
    ) -> T:
        return run_device_flow(flow, self.http, on_code=on_code, on_wait=on_wait, sleep=self._sleep)

    def discover(self) -> Endpoints:
        """The server's RFC 8414 metadata (fetched once, then kept)."""
        if self._endpoints is None:
            self._endpoints = self._run(self._discovery())
        return self._endpoints

    def login(self, on_code: OnCode | None = None, on_wait: OnWait | None = None) -> Token:
        """Run the device flow until the user approves; raises ``DeviceFlowError``s."""
        self.discover()
        return self._run(self._login_flow(), on_code, on_wait)

    def check_authorization_request(self, url: str, redirect_uri: str) -> None:
        """Same-device sign-in: whether the server would answer the authorization request
        ``url`` at ``redirect_uri``
        (:func:`~devicelink.client.flow.authorization_check_flow`)."""
        self._run(authorization_check_flow(url, redirect_uri, **self._times()))

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> Token:
        """Same-device sign-in: redeem an authorization code with its PKCE verifier
        (:func:`~devicelink.client.flow.code_exchange_flow`) for the key."""
        flow = code_exchange_flow(
            self.discover(),
            self.client_id,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            **self._times(),
        )
        return self._run(flow)

    def revoke(self, token: str | Token) -> bool:
        """RFC 7009: revoke the key on the server (``True`` once it is unusable)."""
        return self._run(self._revocation(token))

    def whoami(self, token: str | Token) -> dict[str, Any]:
        """The key's owner from ``/api/me``; :class:`KeyRefused` when refused."""
        return self._run(self._key_check(token))

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDeviceFlowClient(_ClientBase):
    """The async twin of :class:`DeviceFlowClient`."""

    def __init__(
        self,
        server: str,
        client_id: str | None = DEFAULT_CLIENT_ID,
        *,
        scope: str | Iterable[str] | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        user_agent: str | None = None,
        host: str | None = None,
    ) -> None:
        super().__init__(server, client_id, scope, clock, wall_clock)
        self._owns_http = http is None
        options = _http_options(timeout, user_agent, host)
        self.http = http or httpx.AsyncClient(transport=transport, **options)
        self._sleep = sleep

    async def _run(
        self, flow: Flow[T], on_code: AsyncOnCode | None = None, on_wait: AsyncOnWait | None = None
    ) -> T:
        return await arun_device_flow(
            flow, self.http, on_code=on_code, on_wait=on_wait, sleep=self._sleep
        )

    async def discover(self) -> Endpoints:
        if self._endpoints is None:
            self._endpoints = await self._run(self._discovery())
        return self._endpoints

    async def login(
        self, on_code: AsyncOnCode | None = None, on_wait: AsyncOnWait | None = None
    ) -> Token:
        await self.discover()
        return await self._run(self._login_flow(), on_code, on_wait)

    async def revoke(self, token: str | Token) -> bool:
        return await self._run(self._revocation(token))

    async def whoami(self, token: str | Token) -> dict[str, Any]:
        return await self._run(self._key_check(token))

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "AsyncDeviceFlowClient",
    "AsyncOnCode",
    "AsyncOnWait",
    "DeviceFlowClient",
    "OnCode",
    "OnWait",
    "arun_device_flow",
    "machine_name",
    "run_device_flow",
    "show_code_on_stderr",
    "user_agent_header",
]
