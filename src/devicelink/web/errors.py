"""One place where every failure becomes an RFC 6749 section 5.2 JSON answer."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from devicelink.core.errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    OAuthError,
    RequestTooLarge,
    ServerError,
    TemporarilyUnavailable,
)
from devicelink.core.ports import StorageUnavailable

log = logging.getLogger("devicelink.web")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


_HTML_ERROR = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · devicelink</title><link rel="stylesheet" href="/static/devicelink.css"></head>
<body><header class="bar"><span class="brand">devicelink</span></header>
<main class="card tone-error"><div class="icon" aria-hidden="true">!</div><h1>{title}</h1>
<p class="lead">{message}</p><p><a class="button primary" href="/">Start again</a></p></main>
</body></html>"""

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


def oauth_error_response(error: OAuthError, request: Request | None = None) -> Response:
    headers = dict(NO_STORE)
    headers.update(error.headers)
    if request is not None and _wants_html(request):
        title, message = _HTML_MESSAGES.get(
            error.status_code,
            ("Something went wrong", "The request could not be completed. Nothing was changed."),
        )
        return HTMLResponse(
            _HTML_ERROR.format(title=title, message=message),
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
    if exc.status_code == 404:
        error = NotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif exc.status_code == 413:
        error = RequestTooLarge()
    elif exc.status_code >= 500:
        error = ServerError()
    else:
        error = InvalidRequest()
    response = oauth_error_response(error, request)
    if exc.status_code == 405 and exc.headers:
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
