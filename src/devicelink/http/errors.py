"""One place where every failure becomes an answer: RFC 6749 section 5.2 JSON for the
machine endpoints, a page for the browser's (:func:`error_response`).

Every devicelink route uses :class:`DeviceLinkRoute` (or :class:`PageRoute`), which
answers its own errors and adds the security headers, so the routes behave the same
in the standalone server and mounted in a host application. The app-level handlers of
:func:`install_error_handlers` cover what happens outside the routes (404, 405), and
the fast path answers its errors with the same function."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from devicelink.core.errors import (
    InsufficientScope,
    InvalidRequest,
    InvalidToken,
    MethodNotAllowed,
    NotFound,
    OAuthError,
    RequestTooLarge,
    ServerError,
    TemporarilyUnavailable,
)
from devicelink.core.ports import StorageUnavailable
from devicelink.http.templating import render_error_page

log = logging.getLogger("devicelink.http")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The user code travels in verification_uri_complete: never leak it in a Referer.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

_HTML_MESSAGES = {
    404: ("Page not found", "There is nothing at this address."),
    503: ("Temporarily unavailable", "The service is busy or restarting. Try again shortly."),
    429: ("Too many requests", "Slow down a little, then try again."),
}


_PAGE_PREFIXES = (
    "/login",
    "/logout",
    "/devices",
    "/oauth/device/verify",
    "/oauth/device/decide",
)


def _wants_html(request: Request) -> bool:
    """The sign-in pages, and browsers navigating anywhere but the machine endpoints,
    get a page rather than JSON."""
    path = request.url.path
    if path.startswith(_PAGE_PREFIXES):
        return True
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and not path.startswith(("/oauth/", "/api/", "/.well-known/"))
    )


def _error_page(request: Request, title: str, message: str) -> str:
    """The error page in the application's brand (its templates and product name)."""
    runtime = getattr(request.app.state, "devicelink", None)
    settings = getattr(runtime, "settings", None)
    base = runtime.base_path if runtime is not None else ""
    return render_error_page(settings, title=title, message=message, base=base)


def error_response(exc: BaseException, request: Request, *, html: bool | None = None) -> Response:
    """The one answer to a failure, wherever it was caught: the application's handlers,
    :class:`DeviceLinkRoute` and the fast path all come here. ``html`` says whether to
    answer with a page or RFC 6749 section 5.2 JSON; None decides by the request."""
    if isinstance(exc, OAuthError):
        if is_logged(exc):
            # A failure answered as such (a key issuer's, say): its detail is logged
            # under the request id, never sent.
            log.error(
                "%s on %s %s: %s (request %s)",
                exc.error,
                request.method,
                request.url.path,
                type(exc.__cause__).__name__,
                _request_id(request),
                exc_info=exc.__cause__,
            )
        return _protocol_answer(exc, request, html)
    if isinstance(exc, StarletteHTTPException):
        return _http_exception_answer(exc, request, html)
    if isinstance(exc, RequestValidationError):
        return _protocol_answer(InvalidRequest("the request is malformed"), request, html)
    if isinstance(exc, StorageUnavailable):
        log.warning("database unavailable: %s (request %s)", exc, _request_id(request))
        unavailable = TemporarilyUnavailable("the database is unavailable")
        return _protocol_answer(unavailable, request, html)
    if isinstance(exc, ClientDisconnect):
        # The client went away mid-request: nobody reads this answer, and it is not an error.
        log.debug("client disconnected during %s %s", request.method, request.url.path)
        return Response(status_code=400)
    # The detail goes to the log under the request id, never to the client.
    log.error(
        "unhandled %s on %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        _request_id(request),
        exc_info=exc,
    )
    return _protocol_answer(ServerError(), request, html)


def is_logged(error: OAuthError) -> bool:
    """Whether :func:`error_response` logs this protocol error before answering it (a
    failure answered as a server error: its cause goes to the log)."""
    return isinstance(error, ServerError) and error.__cause__ is not None


def json_error_response(error: OAuthError) -> JSONResponse:
    """A protocol error's RFC 6749 section 5.2 JSON answer (never logged: see
    :func:`error_response`, which answers with this when ``html`` is false)."""
    return JSONResponse(error.body(), status_code=error.status_code, headers=_headers(error))


def _headers(error: OAuthError) -> dict[str, str]:
    return {**NO_STORE, **error.headers}


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def _protocol_answer(error: OAuthError, request: Request, html: bool | None) -> Response:
    if html is None:
        html = _wants_html(request)
    if not html:
        return json_error_response(error)
    title, message = _HTML_MESSAGES.get(
        error.status_code,
        ("Something went wrong", "The request could not be completed. Nothing was changed."),
    )
    return HTMLResponse(
        _error_page(request, title, message),
        status_code=error.status_code,
        headers=_headers(error),
    )


def _http_exception_answer(
    exc: StarletteHTTPException, request: Request, html: bool | None
) -> Response:
    # An application's own routes (beside devicelink's) raise HTTPException: they keep
    # their status and headers, in the same error format.
    detail = exc.detail if isinstance(exc.detail, str) else None
    error = _error_of_status(exc.status_code, detail, exc.headers or {})
    response = _protocol_answer(error, request, html)
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def _error_of_status(status: int, detail: str | None, headers: Mapping[str, str]) -> OAuthError:
    if status == 403 and 'error="insufficient_scope"' in headers.get("WWW-Authenticate", ""):
        return InsufficientScope((), detail)  # require_api_key(scopes=...); its headers stay
    if status == 404:
        return NotFound()
    if status == 405:
        return MethodNotAllowed()
    if status == 413:
        return RequestTooLarge()
    if status == 401:
        return InvalidToken(detail)
    if status == 503:
        return TemporarilyUnavailable(detail)
    if status >= 500:
        return ServerError()
    return InvalidRequest(detail)


async def _answer(request: Request, exc: Exception) -> Response:
    return error_response(exc, request)


def install_error_handlers(app: FastAPI) -> None:
    """What fails outside devicelink's routes (404, 405, a host's own routes) is
    answered the same way."""
    for kind in (
        OAuthError,
        RequestValidationError,
        StarletteHTTPException,
        StorageUnavailable,
        ClientDisconnect,
        Exception,
    ):
        app.add_exception_handler(kind, _answer)


class DeviceLinkRoute(APIRoute):
    """A route that answers its own errors in the protocol's format and carries the
    security headers (RFC 9700 section 4.16), wherever the router is mounted."""

    html = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        html = self.html

        async def answer(request: Request) -> Response:
            try:
                response = await handler(request)
            except StarletteHTTPException:
                raise  # the application's handlers answer it (a host's own, when mounted)
            except Exception as exc:  # the one place that must answer anything
                response = error_response(exc, request, html=html)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return answer


class PageRoute(DeviceLinkRoute):
    """A browser page: its errors are pages too."""

    html = True
