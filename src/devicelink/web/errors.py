"""One place where every failure becomes an RFC 6749 section 5.2 JSON answer."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

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


def oauth_error_response(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    headers.update(error.headers)
    return JSONResponse(error.body(), status_code=error.status_code, headers=headers)


async def _on_oauth_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    return oauth_error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    return oauth_error_response(InvalidRequest("the request is malformed"))


async def _on_http_error(_request: Request, exc: Exception) -> Response:
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
    response = oauth_error_response(error)
    if exc.status_code == 405 and exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_storage_unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "database unavailable: %s (request %s)", exc, getattr(request.state, "request_id", "-")
    )
    return oauth_error_response(TemporarilyUnavailable("the database is unavailable"))


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
    return oauth_error_response(ServerError())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OAuthError, _on_oauth_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(StorageUnavailable, _on_storage_unavailable)
    app.add_exception_handler(Exception, _on_unexpected)
