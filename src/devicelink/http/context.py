"""What every route reads off its request: the runtime it serves with, the caller's address."""

from __future__ import annotations

from starlette.requests import Request

from devicelink.runtime.wiring import Runtime


def runtime(request: Request) -> Runtime:
    """The services of the application serving this request (set by its lifespan)."""
    served: Runtime = request.app.state.devicelink
    return served


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
