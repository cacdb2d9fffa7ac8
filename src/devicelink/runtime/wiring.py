"""The one place that wires settings, storage and services together for an app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from starlette.requests import Request

from devicelink.core.addresses import limit_subject
from devicelink.core.codes import CodeHasher
from devicelink.core.events import EventCallback
from devicelink.core.lifecycle import FlowPolicy
from devicelink.core.models import Identity
from devicelink.core.ports import Authenticator, FastPathStore, KeyIssuer, Store
from devicelink.idp.local import LocalAccounts
from devicelink.runtime.checks import fallback_problems
from devicelink.runtime.clients import (
    ClientSpec,
    check_client_specs,
    ensure_default_client,
    register_clients,
)
from devicelink.runtime.limits import RateLimiter
from devicelink.runtime.metrics import Metrics
from devicelink.runtime.sealing import Sealer
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.runtime.upstream_logout import UpstreamLogoutReceiver, upstream_logout_receiver
from devicelink.service import DeviceFlowService, KeyService, StoredKeyIssuer
from devicelink.service.authorization_codes import AuthorizationCodeService
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import EventSink
from devicelink.service.instance import SecretMismatch, check_secret
from devicelink.service.revocations import IssuerRevocations
from devicelink.service.sessions import BrowserSessions
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.fast_path import AsyncpgFastPath
from devicelink.storage.fast_path.listener import KeyChangeListener
from devicelink.storage.migrate import SchemaOutOfDate, check_schema, upgrade_engine
from devicelink.storage.sqlite_fast_path import SqliteFastPath
from devicelink.storage.sqlite_writer import SqliteWriter

log = logging.getLogger("devicelink")

UserResolver = Callable[[Request], Awaitable[Identity | None]]
"""An embedding application's hook: who is signed in to the host app in this request
(an :class:`Identity` with ``provider`` and ``subject`` of the host's choosing), or None.
Users the host vouches for need not sign in to devicelink again."""


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
    login_account_limit: RateLimitItem
    sealer: Sealer
    """Seals what a browser keeps for the upstream sign-in (state, nonce, PKCE verifier)."""
    codes: AuthorizationCodeService
    """Same-device sign-in: the authorization code grant with PKCE."""
    consent_sealer: Sealer
    """Seals the authorization request the consent form carries to its decision."""
    dispose: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    resolve_user: UserResolver | None = None
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    """Set when the server is asked to stop: /readyz answers 503 from then on."""
    key_changes: KeyChangeListener | None = None
    """What keeps the fast path's key cache live, when there is one: /readyz reports it."""
    upstream_logout: UpstreamLogoutReceiver | None = None
    """The upstream's back-channel logout, when ``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT``
    asks for it (:mod:`devicelink.runtime.upstream_logout`)."""

    def limit_subject(self, ip: str | None) -> str:
        """Under which name per-address limits count ``ip`` (IPv6 per prefix)."""
        return limit_subject(ip, self.settings.ipv6_limit_prefix)

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
    clients: Sequence[ClientSpec] = (),
    on_event: EventCallback | None = None,
) -> Runtime:
    settings.check(resolves_users=resolve_user is not None)
    check_client_specs(clients)
    secret = settings.secret_bytes()
    hasher = code_hasher(settings)
    disposers: list[Callable[[], Awaitable[None]]] = []
    fast_path: FastPathStore | None = None
    key_changes: KeyChangeListener | None = None
    if store is None:
        url = settings.effective_database_url()
        schema = settings.database_schema
        engine = create_engine_for_url(
            url,
            schema=schema,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        try:
            if settings.should_migrate():
                await upgrade_engine(engine, schema=schema)
            else:
                await check_schema(engine, schema=schema)
        except SchemaOutOfDate as exc:
            await engine.dispose()
            raise ConfigurationError(str(exc)) from None
        except BaseException:
            await engine.dispose()  # a failed start leaves no connection open
            raise
        sql_store = SqlStore(engine)
        disposers.append(sql_store.dispose)
        store = cast(Store, sql_store)
        if settings.fast_path and engine.dialect.name == "postgresql":
            hot = await AsyncpgFastPath.connect(
                url,
                max_size=settings.fast_path_pool_size,
                key_cache_size=settings.key_cache_size,
                schema=schema,
            )
            sql_store.on_commit_announce(hot.changed)
            disposers.append(hot.close)
            fast_path = hot
            if settings.key_cache_size > 0:
                key_changes = hot.listener
        fast_path = fast_path or sqlite_fast_path(settings, sql_store, url, disposers)
    try:
        await check_secret(store, hasher, now=clock())
    except SecretMismatch as exc:
        for dispose in reversed(disposers):
            await dispose()
        raise ConfigurationError(str(exc)) from None
    await register_clients(store, clients, settings, hasher, now=clock())
    await ensure_default_client(store, settings, now=clock(), registered=clients)
    policy = FlowPolicy(
        code_lifetime=settings.code_lifetime,
        interval=settings.interval,
        slow_down_step=settings.slow_down_step,
        max_interval=settings.max_interval,
    )
    issuer = key_issuer or StoredKeyIssuer()
    events = EventSink(on_event)
    flows = DeviceFlowService(
        store,
        hasher,
        issuer,
        policy=policy,
        default_client_id=settings.default_client_id,
        clock=clock,
        fast_path=fast_path,
        events=events,
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
            fast_path=fast_path,
            events=events,
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
        login_account_limit=parse(settings.login_account_limit),
        codes=AuthorizationCodeService(
            store,
            hasher,
            issuer,
            revocations=IssuerRevocations(store, issuer, clock, events=events),
            clock=clock,
            events=events,
        ),
        consent_sealer=Sealer(secret, "consent", previous=settings.fallback_secrets(), clock=clock),
        sealer=Sealer(
            secret, "upstream-sign-in", previous=settings.fallback_secrets(), clock=clock
        ),
        dispose=disposers,
        resolve_user=resolve_user,
        metrics=metrics,
        key_changes=key_changes,
        upstream_logout=upstream_logout_receiver(
            settings, store, oidc, IssuerRevocations(store, issuer, clock, events=events), clock
        ),
    )


def code_hasher(settings: Settings) -> CodeHasher:
    """The hasher of DEVICELINK_SECRET_KEY, trying those of the fallbacks (a rotation
    in progress, newest first) where a lookup misses. Raises :class:`ConfigurationError`
    for a fallback too short to key a hash (the message never quotes it)."""
    problems = fallback_problems(settings)
    if problems:
        raise ConfigurationError("; ".join(problems))
    previous = tuple(CodeHasher(fallback) for fallback in settings.fallback_secrets())
    return CodeHasher(settings.secret_bytes(), previous=previous)


def sqlite_fast_path(
    settings: Settings,
    store: SqlStore,
    url: str,
    disposers: list[Callable[[], Awaitable[None]]],
) -> SqliteFastPath | None:
    """On SQLite (the embedded default), the fast path through its one writer: the
    writes that arrive together committed together, in the write turn the store's
    transactions take too, and reads beside it."""
    if not settings.fast_path or store.write_lock is None:
        return None
    embedded = SqliteFastPath(store, SqliteWriter(url, lock=store.write_lock))
    disposers.append(embedded.close)
    return embedded


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
        require_https=not settings.is_development(),
    )
