"""One place where every failure becomes an answer: RFC 6749 section 5.2 JSON for the
machine endpoints, a page for the browser's.

Every devicelink route uses :class:`DeviceLinkRoute` (or :class:`PageRoute`), which
answers its own errors and adds the security headers, so the routes behave the same
in the standalone server and mounted in a host application. The app-level handlers of
:func:`install_error_handlers` cover what happens outside the routes (404, 405)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from devicelink.core.errors import (
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

log = logging.getLogger("devicelink.http")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


_HTML_ERROR = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · devicelink</title><link rel="stylesheet" href="{base}/static/devicelink.css">
</head><body><header class="bar"><span class="brand">devicelink</span></header>
<main class="card tone-error"><div class="icon" aria-hidden="true">!</div><h1>{title}</h1>
<p class="lead">{message}</p><p><a class="button primary" href="{base}/">Start again</a></p>
</main></body></html>"""

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


def _base_path(request: Request) -> str:
    runtime = getattr(request.app.state, "devicelink", None)
    return runtime.base_path if runtime is not None else ""


def oauth_error_response(
    error: OAuthError, request: Request | None = None, *, html: bool | None = None
) -> Response:
    headers = dict(NO_STORE)
    headers.update(error.headers)
    if html is None:
        html = request is not None and _wants_html(request)
    if html:
        title, message = _HTML_MESSAGES.get(
            error.status_code,
            ("Something went wrong", "The request could not be completed. Nothing was changed."),
        )
        base = _base_path(request) if request is not None else ""
        return HTMLResponse(
            _HTML_ERROR.format(title=title, message=message, base=base),
            status_code=error.status_code,
            headers=headers,
        )
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


async def _on_oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return oauth_error_response(exc, request)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    return oauth_error_response(InvalidRequest("the request is malformed"), request)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error: OAuthError
    # An application's own routes (beside devicelink's) raise HTTPException; keep their
    # status and headers, in the same error format.
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif exc.status_code == 413:
        error = RequestTooLarge()
    elif exc.status_code == 401:
        error = InvalidToken(detail)
    elif exc.status_code == 503:
        error = TemporarilyUnavailable(detail)
    elif exc.status_code >= 500:
        error = ServerError()
    else:
        error = InvalidRequest(detail)
    response = oauth_error_response(error, request)
    response.status_code = exc.status_code
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_storage_unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "database unavailable: %s (request %s)", exc, getattr(request.state, "request_id", "-")
    )
    return oauth_error_response(TemporarilyUnavailable("the database is unavailable"), request)


async def _on_client_disconnect(request: Request, exc: Exception) -> Response:
    # The client went away mid-request: nobody reads this answer, and it is not an error.
    log.debug("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # The detail goes to the log under the request id, never to the client.
    log.error(
        "unhandled %s on %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        getattr(request.state, "request_id", "-"),
        exc_info=exc,
    )
    return oauth_error_response(ServerError(), request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OAuthError, _on_oauth_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(StorageUnavailable, _on_storage_unavailable)
    app.add_exception_handler(ClientDisconnect, _on_client_disconnect)
    app.add_exception_handler(Exception, _on_unexpected)


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
            except OAuthError as exc:
                response = oauth_error_response(exc, request, html=html)
            except StorageUnavailable as exc:
                response = await _on_storage_unavailable(request, exc)
            except RequestValidationError:
                response = oauth_error_response(
                    InvalidRequest("the request is malformed"), request, html=html
                )
            except ClientDisconnect as exc:
                response = await _on_client_disconnect(request, exc)
            except StarletteHTTPException:
                raise
            except Exception as exc:  # noqa: BLE001 - the one place that must answer anything
                response = await _on_unexpected(request, exc)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return answer


class PageRoute(DeviceLinkRoute):
    """A browser page: its errors are pages too."""

    html = True
