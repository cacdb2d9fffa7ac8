"""Resource endpoints for a signed-in CLI, and the health probes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Security
from starlette.responses import JSONResponse, Response

from devicelink.core.errors import InvalidToken, NotFound, TemporarilyUnavailable
from devicelink.core.models import ApiKey, User
from devicelink.core.ports import StorageUnavailable
from devicelink.http.context import client_ip, runtime
from devicelink.http.errors import NO_STORE, DeviceLinkRoute
from devicelink.http.openapi import (
    API_KEY_BEARER,
    INVALID_TOKEN_RESPONSE,
    METRICS_TOKEN_RESPONSE,
    NO_STORE_HEADER_DOC,
    UNAVAILABLE_RESPONSE,
    HealthResponse,
    KeyListResponse,
    KeyOwnerResponse,
    ReadinessResponse,
    documented_answer,
    documented_error,
)
from devicelink.http.pages.common import current_session, same_origin
from devicelink.service.keys import KeyOwner

router = APIRouter(route_class=DeviceLinkRoute)
metrics_router = APIRouter(route_class=DeviceLinkRoute)
"""``/metrics`` apart: on in the standalone server, opt-in when embedded
(``DEVICELINK_METRICS``)."""


_BEARER = [Security(API_KEY_BEARER)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


@router.get(
    "/api/me",
    tags=["api"],
    summary="The key's owner",
    dependencies=_BEARER,
    responses={
        200: documented_answer(KeyOwnerResponse, "Who the key belongs to"),
        401: INVALID_TOKEN_RESPONSE,
        503: UNAVAILABLE_RESPONSE,
    },
)
async def me(request: Request) -> JSONResponse:
    """Who the bearer API key belongs to (401 for a missing, unknown, revoked or expired key)."""
    owner = await runtime(request).keys.authenticate(bearer_token(request), ip=client_ip(request))
    return describe_owner(owner)


def describe_owner(owner: KeyOwner) -> JSONResponse:
    """``/api/me``'s answer (shared with the fast path of :mod:`devicelink.http.fast_path`)."""
    key = owner.key
    return JSONResponse(
        {
            "sub": owner.user.username,
            "username": owner.user.username,
            "client_id": key.client_id,
            "scope": " ".join(key.scope),
            "key": {
                "id": str(key.id),
                "name": key.name,
                "created_at": key.created_at.isoformat(),
                "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            },
        },
        headers=NO_STORE,
    )


@metrics_router.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format; metric names start with devicelink_",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        401: METRICS_TOKEN_RESPONSE,
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics (all worker processes added up); with
    ``DEVICELINK_METRICS_TOKEN`` set, only for a request that sends it as its Bearer token."""
    rt = runtime(request)
    expected = rt.settings.metrics_token
    if expected is not None and not holds_token(request, expected.get_secret_value()):
        raise InvalidToken("send the metrics token as a Bearer token")
    body, content_type = rt.metrics.render()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def holds_token(request: Request, expected: str) -> bool:
    """Whether the request's Bearer token is ``expected``, compared in constant time: the
    SHA-256 digests of the two are compared, so neither the token's characters nor its
    length show in the time the answer takes."""
    presented = bearer_token(request) or ""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(),
        hashlib.sha256(expected.encode()).digest(),
    )


@router.get(
    "/healthz",
    tags=["health"],
    summary="Liveness",
    responses={200: {"model": HealthResponse, "description": "The process answers"}},
)
async def healthz() -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    tags=["health"],
    summary="Readiness",
    responses={
        200: {
            "model": ReadinessResponse,
            "description": "Ready to serve (degraded: without the key-change listener or Redis)",
        },
        503: UNAVAILABLE_RESPONSE,
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers, and the server is not shutting down (else 503).
    The key-change listener and Redis, when in use, are named too: without them the
    server still serves, degraded (200). Cheap: one database round trip, and a Redis
    ``PING`` unless Redis is already known to be down."""
    rt = runtime(request)
    if rt.draining:
        raise TemporarilyUnavailable("the server is shutting down")
    try:
        await rt.store.ping()
    except StorageUnavailable:
        raise TemporarilyUnavailable("the database is unreachable") from None
    checks = {"database": "ok"}
    degraded = False
    if rt.key_changes is not None:
        listening = rt.key_changes.listening
        checks["key_changes"] = "listening" if listening else "not listening"
        degraded |= not listening
    redis = await rt.limiter.shared_reachable()
    if redis is not None:
        checks["redis"] = "ok" if redis else "unreachable"
        degraded |= not redis
    return JSONResponse({"status": "degraded" if degraded else "ready", "checks": checks})


async def _key_owner(request: Request) -> User:
    """The user behind a request: its bearer key, or its signed-in browser session
    (the latter only for same-origin requests)."""
    rt = runtime(request)
    token = bearer_token(request)
    if token is not None or "authorization" in request.headers:
        return (await rt.keys.authenticate(token, ip=client_ip(request))).user
    session = await current_session(request)
    if session is None or session.user is None or not same_origin(request, rt):
        raise InvalidToken("sign in, or send an API key as a Bearer token")
    return session.user


def _describe(key: ApiKey, now: datetime) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "client_id": key.client_id,
        "scope": " ".join(key.scope),
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "last_used_ip": key.last_used_ip,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "active": key.is_active(now),
    }


@router.get(
    "/api/keys",
    tags=["api"],
    summary="The caller's keys",
    dependencies=_BEARER,
    responses={
        200: documented_answer(
            KeyListResponse, "Every key of the key's owner (or the signed-in user)"
        ),
        401: INVALID_TOKEN_RESPONSE,
        503: UNAVAILABLE_RESPONSE,
    },
)
async def list_keys(request: Request) -> JSONResponse:
    """The caller's keys (every device they signed in), newest first."""
    rt = runtime(request)
    user = await _key_owner(request)
    now = rt.flows.now()
    keys = await rt.keys.keys_of(user.id)
    return JSONResponse({"keys": [_describe(key, now) for key in keys]}, headers=NO_STORE)


@router.delete(
    "/api/keys/{key_id}",
    tags=["api"],
    status_code=204,
    summary="Revoke one of the caller's keys",
    dependencies=_BEARER,
    responses={
        204: {"description": "Revoked (or already revoked)", "headers": NO_STORE_HEADER_DOC},
        401: INVALID_TOKEN_RESPONSE,
        404: documented_error("not_found: no key with this id among the caller's"),
        503: UNAVAILABLE_RESPONSE,
        # Declaring the 4XX range keeps FastAPI from adding its 422 validation answer
        # for the path parameter, which this route never gives.
        "4XX": documented_error("Any other client error, in the same format"),
    },
)
async def delete_key(request: Request, key_id: str) -> Response:
    """Revoke one of the caller's keys; another user's key is "not found"."""
    rt = runtime(request)
    user = await _key_owner(request)
    owned = {key.id: key for key in await rt.keys.keys_of(user.id)}
    # ASCII digits only, and few of them: str.isdigit() also accepts "²", and int()
    # refuses numbers of thousands of digits.
    wanted = int(key_id) if key_id.isascii() and key_id.isdecimal() and len(key_id) <= 19 else None
    if wanted is None or wanted not in owned:
        raise NotFound("no such key")
    if await rt.keys.revoke_own(user, [wanted], ip=client_ip(request)):
        rt.metrics.keys.labels("revoked").inc()
    return Response(status_code=204, headers=NO_STORE)
