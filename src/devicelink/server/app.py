"""``create_app(settings)``: the standalone server as an ASGI application."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

import devicelink
from devicelink.core.events import EventCallback
from devicelink.core.ports import KeyIssuer, Store
from devicelink.http.errors import install_error_handlers
from devicelink.http.fast_path import FastPath
from devicelink.http.middleware import (
    AccessLogMiddleware,
    LatencyMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from devicelink.runtime.logging import configure_logging
from devicelink.runtime.settings import Settings
from devicelink.server.draining import drain_on_signals
from devicelink.server.embed import DeviceLink
from devicelink.service.clock import Clock, utc_now


class DeviceLinkApp(FastAPI):
    """FastAPI with a front door: the hot requests go straight to the fast path
    (:class:`devicelink.http.fast_path.FastPath`), everything else through the whole stack."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = getattr(self.state, "devicelink", None)
        if runtime is not None and runtime.draining and scope["type"] == "http":
            send = _closing(send)
        fast = self.fast_path
        if fast is not None and scope["type"] == "http" and scope["path"] in fast.paths:
            scope["app"] = self
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def call_full_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def _closing(send: Send) -> Send:
    """While the process drains, every answer says ``Connection: close``: a client (or a
    proxy's pooled keep-alive connection) sends its next request elsewhere instead of on
    a connection about to be closed under it, where a POST is not retried."""

    async def send_closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (name, value)
                for name, value in message.get("headers", [])
                if name.lower() != b"connection"
            ]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return send_closing


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    key_issuer: KeyIssuer | None = None,
    clock: Clock = utc_now,
    on_event: EventCallback | None = None,
) -> FastAPI:
    """Build the standalone server. Nothing global: the settings, the engine and the
    services live on this app only, created when it starts and disposed when it stops.
    It is :class:`DeviceLink` mounted in an otherwise empty application."""
    component = DeviceLink(
        settings,
        store=store,
        key_issuer=key_issuer,
        clock=clock,
        embedded=False,
        on_event=on_event,
    )
    app = DeviceLinkApp(
        title="devicelink",
        version=devicelink.__version__,
        description="OAuth 2.0 Device Authorization Grant (RFC 8628) server",
        lifespan=component.lifespan,
        openapi_url="/openapi.json" if component.openapi else None,
        docs_url="/docs" if component.openapi else None,
        redoc_url=None,
        # No automatic trailing-slash redirects: Starlette builds them from the Host
        # header, and a 307 would re-send a device code or secret to that host.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.include_router(component.router, prefix=component.prefix)
    if settings.fast_path:
        prefix = component.prefix
        app.fast_path = FastPath(
            app.call_full_stack,
            token_path=f"{prefix}/oauth/device/token",
            both_grants_token_path=f"{prefix}/oauth/token",
            authorize_path=f"{prefix}/oauth/device/authorize",
            me_path=f"{prefix}/api/me",
        )
    app.add_middleware(SecurityHeadersMiddleware, exempt_prefixes=("/docs",))
    app.add_middleware(
        LatencyMiddleware,
        known_paths=frozenset(
            f"{component.prefix}{path}"
            for path in (
                "/oauth/device/authorize",
                "/oauth/device/token",
                "/oauth/token",
                "/api/me",
            )
        ),
    )
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(AccessLogMiddleware)  # outermost: sees every answer and its id
    return app


def create_app_from_environment() -> FastAPI:
    """The app ``devicelink serve`` runs in each worker (``factory=True``): settings
    from the environment (serve passes its command-line overrides there), logging
    configured in this process, readiness turned false first on SIGTERM."""
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    app = create_app(settings)
    drain_on_signals(app, delay=settings.shutdown_delay)
    return app
