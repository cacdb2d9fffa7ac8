"""The one place that wires settings, storage and services together for an app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.aio.strategies import RateLimiter as RateLimiter_
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.requests import Request

from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import FlowPolicy
from devicelink.core.models import Client, Identity
from devicelink.core.ports import Authenticator, HotPath, KeyIssuer, Store
from devicelink.idp.local import LocalAccounts
from devicelink.service import DeviceFlowService, KeyService, StoredKeyIssuer
from devicelink.service.clock import Clock, utc_now
from devicelink.service.sessions import BrowserSessions
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.hotpath import AsyncpgHotPath
from devicelink.storage.migrate import upgrade_engine
from devicelink.web.metrics import Metrics
from devicelink.web.settings import Settings

log = logging.getLogger("devicelink")

UserResolver = Callable[[Request], Awaitable[Identity | None]]
"""An embedding application's hook: who is signed in to the host app in this request
(an :class:`Identity` with ``provider`` and ``subject`` of the host's choosing), or None.
Users the host vouches for need not sign in to devicelink again."""

DEFAULT_CLIENT_NAME = "devicelink CLI"
DEFAULT_SCOPES = ("api",)


class RateLimiter:
    """Counters for starting flows, code entry and sign-in: in memory for one process,
    in Redis when several share the load (``DEVICELINK_REDIS_URL``).

    When Redis cannot be reached the limits still hold, counted in this process alone
    (a warning in the log, ``devicelink_rate_limit_fallbacks_total`` in the metrics),
    and Redis is tried again a few seconds later.
    """

    RETRY_SECONDS = 5.0
    TIMEOUT_SECONDS = 0.5

    def __init__(
        self,
        redis_url: str | None,
        *,
        key_prefix: str = "devicelink",
        on_fallback: Callable[[], None] | None = None,
    ) -> None:
        self._shared_storage = None
        self._shared: RateLimiter_ | None = None
        self._shared_counter: RateLimiter_ | None = None
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            self._shared_storage = storage_from_string(
                uri, key_prefix=key_prefix, wrap_exceptions=True
            )
            self._shared = MovingWindowRateLimiter(self._shared_storage)
            self._shared_counter = SlidingWindowCounterRateLimiter(self._shared_storage)
        local_storage = storage_from_string("async+memory://")
        self._local = MovingWindowRateLimiter(local_storage)
        self._local_counter = SlidingWindowCounterRateLimiter(local_storage)
        self._shared_down_until = 0.0
        self._on_fallback = on_fallback
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def serialized(self, *keys: tuple[str, ...]) -> AsyncIterator[None]:
        """Check, act and count as one step for these keys, in this process.

        Limits count failures, and a failure is only known after the lookup: without
        this, guesses sent at the same moment would all pass the check before any of
        them is counted. Across processes the overshoot is at most one attempt per
        other process. Locks are taken in a fixed order and dropped when unused."""
        ordered = sorted(set(keys))
        for key in ordered:
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        acquired: list[tuple[str, ...]] = []
        try:
            for key in ordered:
                await self._locks[key][0].acquire()
                acquired.append(key)
            yield
        finally:
            for key in reversed(acquired):
                self._locks[key][0].release()
            for key in ordered:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    async def aclose(self) -> None:
        """Close the Redis connections (``limits`` offers no close of its own)."""
        bridge = getattr(self._shared_storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    async def _limiter_call(
        self, method: str, limit: RateLimitItem, *identifiers: str, counter: bool = False
    ) -> Any:
        shared = self._shared_counter if counter else self._shared
        if shared is not None and time.monotonic() >= self._shared_down_until:
            try:
                return await asyncio.wait_for(
                    getattr(shared, method)(limit, *identifiers),
                    timeout=self.TIMEOUT_SECONDS,
                )
            except (StorageError, TimeoutError, OSError, ConnectionError) as exc:
                self._shared_down_until = time.monotonic() + self.RETRY_SECONDS
                log.warning(
                    "Redis is unreachable (%s): counting rate limits in this process alone for now",
                    type(exc).__name__,
                )
                if self._on_fallback is not None:
                    self._on_fallback()
        local = self._local_counter if counter else self._local
        return await getattr(local, method)(limit, *identifiers)

    async def hit(self, limit: RateLimitItem, *identifiers: str, counter: bool = False) -> bool:
        """Spend one of ``limit``. ``counter``: a sliding window counter (two counters
        weighted by time, constant cost) instead of the exact moving window (a list of
        every hit): for the limits that count requests in volume rather than failures."""
        return bool(await self._limiter_call("hit", limit, *identifiers, counter=counter))

    async def allows(self, limit: RateLimitItem, *identifiers: str) -> bool:
        """True when ``limit`` has room left, without spending any of it."""
        return bool(await self._limiter_call("test", limit, *identifiers))

    async def retry_after(
        self, limit: RateLimitItem, *identifiers: str, counter: bool = False
    ) -> int:
        stats = await self._limiter_call("get_window_stats", limit, *identifiers, counter=counter)
        return max(1, int(stats.reset_time - datetime.now(UTC).timestamp()) + 1)


@dataclass
class Runtime:
    """Everything a request handler needs, built once per application."""

    settings: Settings
    store: Store
    hasher: CodeHasher
    flows: DeviceFlowService
    keys: KeyService
    limiter: RateLimiter
    start_limit: RateLimitItem
    sessions: BrowserSessions
    local_accounts: Authenticator | None
    oidc: Authenticator | None
    code_entry_limits: dict[str, RateLimitItem]
    login_limit: RateLimitItem
    dispose: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    resolve_user: UserResolver | None = None
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    """Set when the server is asked to stop: /readyz answers 503 from then on."""

    @property
    def base_path(self) -> str:
        """The path of PUBLIC_URL ("" or e.g. "/auth"): where the routes are mounted."""
        return urlsplit(self.settings.issuer).path.rstrip("/")


async def build_runtime(
    settings: Settings,
    *,
    store: Store | None = None,
    key_issuer: KeyIssuer | None = None,
    resolve_user: UserResolver | None = None,
    clock: Clock = utc_now,
) -> Runtime:
    settings.check()
    hasher = CodeHasher(settings.secret_bytes())
    disposers: list[Callable[[], Awaitable[None]]] = []
    hot_path: HotPath | None = None
    if store is None:
        url = settings.effective_database_url()
        engine = create_engine_for_url(url)
        if settings.should_migrate():
            await upgrade_engine(engine)
        sql_store = SqlStore(engine)
        disposers.append(sql_store.dispose)
        store = cast(Store, sql_store)
        if settings.fast_path and engine.dialect.name == "postgresql":
            hot = await AsyncpgHotPath.connect(url, key_cache_size=settings.key_cache_size)
            sql_store.on_commit_announce(hot.changed)
            disposers.append(hot.close)
            hot_path = hot
    await ensure_default_client(store, settings, now=clock())
    policy = FlowPolicy(
        code_lifetime=settings.code_lifetime,
        interval=settings.interval,
        slow_down_step=settings.slow_down_step,
        max_interval=settings.max_interval,
    )
    issuer = key_issuer or StoredKeyIssuer()
    flows = DeviceFlowService(
        store,
        hasher,
        issuer,
        policy=policy,
        default_client_id=settings.default_client_id,
        clock=clock,
        hot_path=hot_path,
    )
    metrics = Metrics()
    limiter = RateLimiter(
        settings.redis_url,
        key_prefix=settings.redis_key_prefix,
        on_fallback=metrics.limiter_fallbacks.inc,
    )
    disposers.append(limiter.aclose)
    oidc = oidc_authenticator(settings)
    close_oidc = getattr(oidc, "aclose", None)
    if close_oidc is not None:
        disposers.append(close_oidc)
    return Runtime(
        settings=settings,
        store=store,
        hasher=hasher,
        flows=flows,
        keys=KeyService(
            store,
            hasher,
            clock,
            default_client_id=settings.default_client_id,
            key_issuer=issuer,
            hot_path=hot_path,
        ),
        limiter=limiter,
        start_limit=parse(settings.start_rate_limit),
        sessions=BrowserSessions(store, hasher, lifetime=settings.session_lifetime, clock=clock),
        local_accounts=LocalAccounts(store) if settings.local_accounts else None,
        oidc=oidc,
        code_entry_limits={
            "session": parse(settings.code_entry_limit_session),
            "ip": parse(settings.code_entry_limit_ip),
            "account": parse(settings.code_entry_limit_account),
        },
        login_limit=parse(settings.login_limit),
        dispose=disposers,
        resolve_user=resolve_user,
        metrics=metrics,
    )


def oidc_authenticator(settings: Settings) -> Authenticator | None:
    if not settings.oidc_issuer or not settings.oidc_client_id:
        return None
    from devicelink.idp.oidc import OidcAuthenticator

    secret = settings.oidc_client_secret
    return OidcAuthenticator(
        settings.oidc_issuer,
        settings.oidc_client_id,
        secret.get_secret_value() if secret else None,
        username_claims=tuple(settings.oidc_username_claims.split()),
        label=settings.oidc_label,
    )


async def ensure_default_client(store: Store, settings: Settings, *, now: datetime) -> None:
    """Create the default public client on first start, so ``devicelink login`` works
    against a fresh server without registering anything."""
    if not settings.default_client_id:
        return
    async with store.transaction() as tx:
        if await tx.clients.get(settings.default_client_id) is not None:
            return
        try:
            await tx.clients.add(
                Client(
                    client_id=settings.default_client_id,
                    name=DEFAULT_CLIENT_NAME,
                    scopes=DEFAULT_SCOPES,
                    key_lifetime=settings.key_lifetime or None,
                    created_at=now,
                )
            )
        except ValueError:
            return  # another process created it at the same moment
    log.info("created the default public client %r", settings.default_client_id)
