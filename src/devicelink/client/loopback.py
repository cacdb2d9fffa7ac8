"""Same-device sign-in: the loopback listener that receives the browser's redirect
(RFC 8252 sections 7.3 and 8.3), and the sign-in built on it.

:class:`LoopbackReceiver` binds ``127.0.0.1`` on a port the system picks, before the
browser opens, and serves from a thread with the standard library's ``http.server``. It
accepts exactly one redirect that :func:`~devicelink.client.loopback_request.read_redirect`
says belongs to this sign-in, answers it with a short page that sends the user back to the
terminal, and turns everything else away with a 400 while it keeps waiting. Nothing it
receives is logged: the request line carries the code.

:func:`loopback_sign_in` runs the whole flow: listener, authorization URL, browser, wait
(at most :data:`SIGN_IN_LIFETIME`), code exchange. This module is imported only when the
loopback flow runs (``http.server`` is not free to import).
"""

from __future__ import annotations

import html
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self, cast

from devicelink.client.discovery import no_code_grant
from devicelink.client.errors import LoginDenied, LoginExpired, ServerRejected
from devicelink.client.http import DeviceFlowClient, OnWait
from devicelink.client.loopback_request import (
    CALLBACK_PATH,
    Approved,
    AuthorizationRequest,
    Redirect,
    Refused,
    Stray,
    authorization_request,
    read_redirect,
)
from devicelink.client.messages import Token

LOOPBACK_HOST = "127.0.0.1"
"""RFC 8252 section 8.3: the loopback IP literal, not ``localhost`` (which a resolver or a
hosts file may send elsewhere)."""
SIGN_IN_LIFETIME = 600.0
"""How long the listener waits for the browser: as long as a device-flow code lives by
default (DESIGN.md), time to sign in upstream and consent."""
WAIT_STEP = 1.0
"""The listener is checked, and ``on_wait`` called, at least this often."""
CONNECTION_TIMEOUT = 10.0
"""A connection that sends no request in this time is dropped (browsers open spare ones)."""

ReadRedirect = Callable[[str], Redirect]


# --- the pages ---------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;
padding: 0 1rem; line-height: 1.5"><h1>{title}</h1><p>{text}</p></body></html>
"""
_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the address holds the code
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def page(redirect: Redirect) -> tuple[int, str, str]:
    """The status, title and text of the answer to ``redirect``."""
    if isinstance(redirect, Approved):
        return 200, "Signed in", "You can close this tab and return to your terminal."
    if isinstance(redirect, Refused) and redirect.error == "access_denied":
        return (
            200,
            "Sign-in denied",
            "You denied the request: no key was issued. You can close this tab and return "
            "to your terminal.",
        )
    if isinstance(redirect, Refused):
        return (
            200,
            "Sign-in failed",
            f"The server refused the sign-in ({redirect.error}). Return to your terminal.",
        )
    return (
        400,
        "Not this sign-in",
        "This address does not answer the sign-in your terminal is waiting for.",
    )


# --- the listener ------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    # Each request in a thread of its own: a browser's idle preconnection cannot hold up
    # the redirect. Daemon threads: none outlives the command.
    daemon_threads = True
    receiver: LoopbackReceiver

    def server_bind(self) -> None:
        # HTTPServer.server_bind also resolves the host's name, which can stall; not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    server_version = "devicelink"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request a connection, then closed
    timeout = CONNECTION_TIMEOUT

    def do_GET(self) -> None:
        receiver = cast(_Server, self.server).receiver
        receiver.receive(self, self.path)

    def do_HEAD(self) -> None:
        self.respond(page(Stray("not a GET")), head=True)

    def do_POST(self) -> None:
        self.respond(page(Stray("not a GET")))

    def respond(self, answer: tuple[int, str, str], *, head: bool = False) -> None:
        status, title, text = answer
        body = _PAGE.format(title=html.escape(title), text=html.escape(text)).encode()
        self.send_response(status)
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: the request line holds the authorization code."""


class LoopbackReceiver:
    """A listener on ``127.0.0.1``, bound when made; :meth:`start` serves, :meth:`wait`
    returns the one redirect it accepted. Use it as a context manager: leaving it (on a
    result, a timeout or Ctrl-C) stops serving and closes the socket."""

    def __init__(self, path: str = CALLBACK_PATH) -> None:
        self.path = path
        self._server = _Server((LOOPBACK_HOST, 0), _Handler)
        self._server.receiver = self
        self._read: ReadRedirect | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._claimed = False
        self._done = threading.Event()
        self._result: Approved | Refused | None = None

    @property
    def port(self) -> int:
        return self._server.server_port

    @property
    def redirect_uri(self) -> str:
        """``http://127.0.0.1:PORT/callback`` (RFC 8252 section 7.3)."""
        return f"http://{LOOPBACK_HOST}:{self.port}{self.path}"

    def start(self, read: ReadRedirect) -> None:
        """Serve; each request's path and query is judged by ``read``."""
        self._read = read
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devicelink-loopback",
            daemon=True,
        )
        self._thread.start()

    def wait(self, timeout: float) -> Approved | Refused | None:
        """The accepted redirect, or ``None`` if none came within ``timeout`` seconds."""
        return self._result if self._done.wait(timeout) else None

    def receive(self, handler: _Handler, target: str) -> None:
        """Answer one request for ``target``; the first redirect of this sign-in is kept."""
        redirect: Redirect = Stray("not ready") if self._read is None else self._read(target)
        answer = isinstance(redirect, Approved | Refused)
        with self._lock:
            accepted = answer and not self._claimed
            self._claimed = self._claimed or accepted
        if answer and not accepted:
            redirect = Stray("this sign-in has already come back")
        try:
            handler.respond(page(redirect))
        finally:
            # Only now: the page is on its way before the command goes on (and may exit).
            if accepted and isinstance(redirect, Approved | Refused):
                self._result = redirect
                self._done.set()

    def close(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --- the sign-in -------------------------------------------------------------------------

OnLink = Callable[[AuthorizationRequest, float], None]
"""Shows the authorization URL (and how many seconds the sign-in may take) before the
browser opens."""


def loopback_sign_in(
    client: DeviceFlowClient,
    *,
    open_link: Callable[[str], object] | None = None,
    on_link: OnLink | None = None,
    on_wait: OnWait | None = None,
    lifetime: float = SIGN_IN_LIFETIME,
    clock: Callable[[], float] = time.monotonic,
) -> Token:
    """Sign in on this machine: bind the listener, check that the server accepts the
    request, show the link (``on_link``), open it (``open_link``, unless ``None``), wait
    for the redirect, redeem the code.

    Raises :class:`DiscoveryFailed` when the server does not offer it, ``LoopbackRefused``
    when it does not accept it for this client (before anything is shown),
    :class:`LoginDenied` after Deny, :class:`LoginExpired` when nothing came back within
    ``lifetime`` seconds, :class:`ServerRejected` for another error in the redirect, and
    the code exchange's errors.
    """
    endpoints = client.discover()
    grant = endpoints.code_grant
    if grant is None:
        raise no_code_grant(endpoints.issuer)
    with LoopbackReceiver() as receiver:
        request = authorization_request(
            grant, client.client_id, receiver.redirect_uri, client.scope
        )
        client.check_authorization_request(request.url, request.redirect_uri)
        receiver.start(lambda target: read_redirect(target, request, grant))
        if on_link is not None:
            on_link(request, lifetime)
        if open_link is not None:
            open_link(request.url)
        redirect = _await(receiver, lifetime, on_wait, clock)
    if isinstance(redirect, Refused):
        if redirect.error == "access_denied":
            raise LoginDenied()
        raise ServerRejected(redirect.error, redirect.description)
    return client.exchange_code(redirect.code, request.redirect_uri, request.code_verifier)


def _await(
    receiver: LoopbackReceiver,
    lifetime: float,
    on_wait: OnWait | None,
    clock: Callable[[], float],
) -> Approved | Refused:
    deadline = clock() + lifetime
    while (remaining := deadline - clock()) > 0:
        step = min(WAIT_STEP, remaining)
        if on_wait is not None:
            on_wait(step, remaining)
        redirect = receiver.wait(step)
        if redirect is not None:
            return redirect
    minutes = round(lifetime / 60)
    span = f"{minutes} minutes" if minutes >= 2 else f"{round(lifetime)} seconds"
    raise LoginExpired(
        f"the sign-in did not come back from the browser within {span}; start the login again"
    )


__all__ = [
    "CONNECTION_TIMEOUT",
    "LOOPBACK_HOST",
    "SIGN_IN_LIFETIME",
    "LoopbackReceiver",
    "OnLink",
    "loopback_sign_in",
    "page",
]
