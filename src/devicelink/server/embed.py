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
between them all live under it. Embedded, an empty prefix is refused (devicelink would
take the host's ``/``, ``/login`` and ``/logout``), and ``/metrics`` and devicelink's
entries in the host's OpenAPI schema are opt-in (``DEVICELINK_METRICS``,
``DEVICELINK_OPENAPI``). The whole contract: docs/embedding.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI

from devicelink.core.events import EventCallback
from devicelink.core.ports import KeyIssuer, Store
from devicelink.http import api, authorize, oauth, pages, upstream
from devicelink.runtime.clients import ClientSpec, check_client_specs
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.runtime.wiring import Runtime, UserResolver, build_runtime
from devicelink.server.purging import start_periodic_purge, stop_periodic_purge
from devicelink.server.revocation_drain import start_revocation_drain, stop_revocation_drain
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
        clients: Sequence[ClientSpec] = (),
        embedded: bool = True,
        on_event: EventCallback | None = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._runtime: Runtime | None = None
        self.embedded = embedded
        if embedded:
            refuse_root_prefix(settings)
        check_client_specs(clients)
        self._clients = tuple(clients)
        self._key_issuer = key_issuer
        self._resolve_user = resolve_user
        self._store = store
        self._clock = clock
        self.router = APIRouter()
        self.router.include_router(oauth.router, include_in_schema=self.openapi)
        self.router.include_router(api.router, include_in_schema=self.openapi)
        if self.metrics:
            self.router.include_router(api.metrics_router, include_in_schema=self.openapi)
        self.router.include_router(pages.router)
        self.router.include_router(authorize.router, include_in_schema=self.openapi)
        if settings.oidc_backchannel_logout != "off":
            self.router.include_router(upstream.router, include_in_schema=self.openapi)

    @property
    def openapi(self) -> bool:
        """devicelink's routes are in the OpenAPI schema (``DEVICELINK_OPENAPI``; default:
        standalone yes, embedded no, so a host's schema lists only its own routes)."""
        chosen = self.settings.openapi
        return chosen if chosen is not None else not self.embedded

    @property
    def metrics(self) -> bool:
        """``/metrics`` is served (``DEVICELINK_METRICS``; default: standalone yes,
        embedded no: a host decides what it exposes)."""
        chosen = self.settings.metrics
        return chosen if chosen is not None else not self.embedded

    @property
    def prefix(self) -> str:
        """Where to include :attr:`router`: the path of ``PUBLIC_URL``."""
        return urlsplit(self.settings.public_url or "").path.rstrip("/")

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Build the services when the application starts, dispose of them when it
        stops. A host with a lifespan of its own enters this one inside it."""
        if self.settings.embedded:  # the SQLite default's file goes in the data directory
            self.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        runtime = await build_runtime(
            self.settings,
            store=self._store,
            key_issuer=self._key_issuer,
            resolve_user=self._resolve_user,
            clock=self._clock,
            clients=self._clients,
            on_event=self._on_event,
        )
        app.state.devicelink = runtime
        self._runtime = runtime
        purging = start_periodic_purge(runtime, self._clock)
        draining = start_revocation_drain(runtime)
        try:
            yield
        finally:
            self._runtime = None
            await stop_revocation_drain(draining)
            await stop_periodic_purge(purging)
            for dispose in runtime.dispose:
                await dispose()

    async def key_revoked_by_host(self, external_id: str) -> int:
        """Tell devicelink that the host revoked, in its own key system, the key its
        issuer named ``external_id`` (``IssuedKey.external_id``): devicelink stops
        accepting it at once and lists the device as revoked, without calling the
        issuer's ``revoke`` back. Returns how many keys this revoked (0 when the id is
        unknown or the key was already revoked). Call it while the app is running."""
        if self._runtime is None:
            raise RuntimeError("DeviceLink is not running: call this inside its lifespan")
        return await self._runtime.keys.revoked_by_issuer(external_id)

    @staticmethod
    def runtime_of(app: FastAPI) -> Runtime:
        runtime: Runtime = app.state.devicelink
        return runtime


def refuse_root_prefix(settings: Settings) -> None:
    """Embedded, devicelink lives under a path of its own: with ``PUBLIC_URL`` at the
    host's root its pages (``/``, ``/login``, ``/logout``, ``/devices``) and endpoints
    (``/api/me``, ``/healthz`` ...) would take over the host's."""
    if urlsplit(settings.public_url or "").path.rstrip("/"):
        return
    shown = settings.public_url or "https://app.example.com"
    raise ConfigurationError(
        f"DEVICELINK_PUBLIC_URL ({settings.public_url or 'not set'}) has no path: "
        "mounted in a host application, devicelink needs a path of its own so that its "
        "pages (/, /login, /logout) and endpoints never take over the host's routes; "
        f"set it to e.g. {shown}/auth and include DeviceLink.router at DeviceLink.prefix"
    )
