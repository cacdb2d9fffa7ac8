"""Resource endpoints for a signed-in CLI, and the health probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from devicelink.core.errors import TemporarilyUnavailable
from devicelink.core.ports import StorageUnavailable
from devicelink.web.errors import NO_STORE
from devicelink.web.oauth import runtime

router = APIRouter()


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


@router.get("/api/me", tags=["api"])
async def me(request: Request) -> JSONResponse:
    """Who the bearer API key belongs to (401 for a missing, unknown, revoked or expired key)."""
    owner = await runtime(request).keys.authenticate(
        bearer_token(request), ip=request.client.host if request.client else None
    )
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


@router.get("/healthz", tags=["health"])
async def healthz() -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database answers."""
    try:
        await runtime(request).store.ping()
    except StorageUnavailable:
        raise TemporarilyUnavailable("the database is unreachable") from None
    return JSONResponse({"status": "ready"})
