"""devicelink inside an existing FastAPI application.

    from devicelink.server import DeviceLink, Settings

    devicelink = DeviceLink(
        Settings(public_url="https://app.example.com/auth", database_url=...),
        key_issuer=MyKeyIssuer(),      # mint keys in the host's own API key system
        resolve_user=current_user,     # the host's signed-in user: no second sign-in
    )
    app = FastAPI(lifespan=devicelink.lifespan)
    app.include_router(devicelink.router, prefix=devicelink.prefix)

The routes answer their own errors and carry their own security headers, so they need
nothing from the host application; the host's own routes are left alone. ``prefix`` is
the path of ``PUBLIC_URL`` ("/auth" above): the endpoints, the pages and the links
between them all live under it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI

from devicelink.core.ports import KeyIssuer, Store
from devicelink.http import api, oauth, pages
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime, UserResolver, build_runtime
from devicelink.server.purging import start_periodic_purge, stop_periodic_purge
from devicelink.service.clock import Clock, utc_now


class DeviceLink:
    """The device flow as a component: a router and the lifespan that runs it."""

    def __init__(
        self,
        settings: Settings,
        *,
        key_issuer: KeyIssuer | None = None,
        resolve_user: UserResolver | None = None,
        store: Store | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self._key_issuer = key_issuer
        self._resolve_user = resolve_user
        self._store = store
        self._clock = clock
        self.router = APIRouter()
        self.router.include_router(oauth.router)
        self.router.include_router(api.router)
        self.router.include_router(pages.router)

    @property
    def prefix(self) -> str:
        """Where to include :attr:`router`: the path of ``PUBLIC_URL``."""
        return urlsplit(self.settings.public_url or "").path.rstrip("/")

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Build the services when the application starts, dispose of them when it
        stops. A host with a lifespan of its own enters this one inside it."""
        runtime = await build_runtime(
            self.settings,
            store=self._store,
            key_issuer=self._key_issuer,
            resolve_user=self._resolve_user,
            clock=self._clock,
        )
        app.state.devicelink = runtime
        purging = start_periodic_purge(runtime, self._clock)
        try:
            yield
        finally:
            await stop_periodic_purge(purging)
            for dispose in runtime.dispose:
                await dispose()

    @staticmethod
    def runtime_of(app: FastAPI) -> Runtime:
        runtime: Runtime = app.state.devicelink
        return runtime
