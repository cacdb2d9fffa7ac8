"""Protecting a resource server's own routes with devicelink's API keys.

    from devicelink.http.resource import require_api_key, IntrospectionVerifier

    # the same process runs devicelink (standalone app or DeviceLink component):
    @app.get("/things")
    async def things(who: Principal = Depends(require_api_key())): ...

    # another service: ask devicelink's introspection endpoint (RFC 7662)
    verify = IntrospectionVerifier("https://login.example.com", "billing-api", SECRET)
    @app.get("/invoices")
    async def invoices(who: Principal = Depends(require_api_key(verify))): ...

    # a key without the scope "billing" gets 403 insufficient_scope (RFC 6750 section 3.1)
    @app.post("/invoices")
    async def pay(who: Principal = Depends(require_api_key(verify, scopes=["billing"]))): ...

Answers are cached for ``cache_seconds`` (default 5). That is the staleness bound: a key
revoked (or a user disabled) elsewhere stops working here within that many seconds. A
cached "unknown key" lasts at most one second, so a fresh key is never refused long.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
from fastapi import Request
from fastapi.exceptions import HTTPException

from devicelink.core.apikeys import KeyShape, worth_a_lookup
from devicelink.core.errors import InsufficientScope, InvalidToken
from devicelink.http.context import client_ip


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request's API key belongs to."""

    username: str
    client_id: str
    scope: tuple[str, ...]
    expires_at: datetime | None


class Verifier(Protocol):
    async def verify(self, request: Request, token: str) -> Principal | None: ...


class LocalVerifier:
    """Checks keys against this process's devicelink (its database)."""

    async def verify(self, request: Request, token: str) -> Principal | None:
        runtime = request.app.state.devicelink
        try:
            owner = await runtime.keys.authenticate(token, ip=client_ip(request))
        except InvalidToken:
            return None
        key = owner.key
        return Principal(owner.user.username, key.client_id, key.scope, key.expires_at)


class IntrospectionVerifier:
    """Asks a remote devicelink's introspection endpoint (RFC 7662), authenticated as a
    confidential client marked as a resource server (``devicelink clients add NAME
    --confidential --resource-server``).

    Keys of any shape are asked about: devicelink's ``dlk_`` keys (checksum checked
    here first) and those an embedding application's issuer minted. ``key_shape``
    (e.g. ``KeyShape(prefix="acme_")``) refuses other keys without asking.
    """

    def __init__(
        self,
        server: str,
        client_id: str,
        client_secret: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
        key_shape: KeyShape | None = None,
    ) -> None:
        self.key_shape = key_shape
        self._url = server.rstrip("/") + "/oauth/introspect"
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def verify(self, request: Request, token: str) -> Principal | None:
        if not worth_a_lookup(token, self.key_shape):
            return None
        try:
            response = await self._http.post(self._url, data={"token": token}, auth=self._auth)
        except httpx.HTTPError:
            raise HTTPException(503, "the key service is unreachable") from None
        if response.status_code != 200:
            raise HTTPException(503, "the key service refused the introspection request")
        body = response.json()
        if body.get("active") is not True:
            return None
        expires = body.get("exp")
        return Principal(
            username=str(body.get("sub", "")),
            client_id=str(body.get("client_id", "")),
            scope=tuple(str(body.get("scope", "")).split()),
            expires_at=datetime.fromtimestamp(expires, UTC) if expires else None,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


DEFAULT_CACHE_SECONDS = 5.0
NEGATIVE_CACHE_SECONDS = 1.0
CACHE_ENTRIES = 10_000


class CachedVerifier:
    """A verifier's answers, kept for ``ttl`` seconds (the staleness bound)."""

    def __init__(
        self,
        inner: Verifier,
        *,
        ttl: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Principal | None]] = OrderedDict()

    async def verify(self, request: Request, token: str) -> Principal | None:
        # Keyed by a digest: the cache never holds keys in clear.
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
            if principal is None or principal.expires_at is None:
                return principal
            if principal.expires_at > datetime.now(UTC):
                return principal
        principal = await self._inner.verify(request, token)
        ttl = self._ttl if principal is not None else min(self._ttl, NEGATIVE_CACHE_SECONDS)
        self._entries[digest] = (now + ttl, principal)
        self._entries.move_to_end(digest)
        while len(self._entries) > CACHE_ENTRIES:
            self._entries.popitem(last=False)
        return principal


def _key_shape(verifier: Verifier | None, request: Request) -> KeyShape | None:
    """The shape of the keys worth checking: this process's key issuer's (checked
    locally), or the one an :class:`IntrospectionVerifier` was given."""
    if verifier is None:
        runtime = getattr(request.app.state, "devicelink", None)
        return runtime.keys.key_shape if runtime is not None else None
    shape = getattr(verifier, "key_shape", None)
    return shape if isinstance(shape, KeyShape) else None


def require_api_key(
    verifier: Verifier | None = None,
    *,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    scopes: Iterable[str] = (),
) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the :class:`Principal` of the request's bearer key, or 401
    with ``WWW-Authenticate: Bearer`` (RFC 6750 section 3). With ``scopes``, a valid key
    that lacks one of them gets 403 ``insufficient_scope``, the scopes required named in
    the challenge (section 3.1)."""
    if isinstance(scopes, str):
        raise TypeError("scopes is a collection of scope names, e.g. scopes=['billing']")
    required = tuple(sorted(set(scopes)))
    checker: Verifier = verifier or LocalVerifier()
    if cache_seconds > 0:
        checker = CachedVerifier(checker, ttl=cache_seconds)

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        principal = None
        # Keys of the issuer's shape only (devicelink's, or a host issuer's), so that
        # garbage reaches neither the cache nor the database.
        if scheme.lower() == "bearer" and worth_a_lookup(token, _key_shape(verifier, request)):
            principal = await checker.verify(request, token)
        if principal is None:
            error = InvalidToken()
            raise HTTPException(401, error.description, headers=error.headers)
        if not set(required) <= set(principal.scope):
            lacking = InsufficientScope(required)
            raise HTTPException(403, lacking.description, headers=lacking.headers)
        return principal

    return dependency
