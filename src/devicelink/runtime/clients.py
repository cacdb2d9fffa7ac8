"""Clients that exist because the code or the settings say so, not because an operator
ran ``devicelink clients add``: the default public client, and the clients a host
application registers from code (``DeviceLink(settings, clients=[ClientSpec(...)])``).

Both are written at start-up, in one transaction each: created when missing, brought
in line with the code when they differ. A client registered from code belongs to the
code: a name, scope, lifetime or resource-server mark changed with ``clients add`` or
``clients edit`` elsewhere is set back at the next start.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from weakref import WeakKeyDictionary

from devicelink.core.authcode import registrable_redirect_uri
from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import parse_scope
from devicelink.core.models import AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, Client
from devicelink.core.ports import Store
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.service.clients import supported_scopes

log = logging.getLogger("devicelink")

DEFAULT_SCOPES = ("api",)
DEFAULT_REDIRECT_URIS = ("http://127.0.0.1/callback", "http://[::1]/callback")
"""The default client's loopback redirect URIs (any port: RFC 8252 section 7.3)."""
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class ClientSpec:
    """A client a host application registers from code.

    - ``client_id``: 1 to 128 letters, digits, dots, dashes or underscores;
    - ``name``: what the confirm and devices pages show (default: the client id);
    - ``scopes``: what the client may ask for; a request without ``scope`` gets them all;
    - ``key_lifetime``: seconds its keys live; ``None`` (default) takes
      ``DEVICELINK_KEY_LIFETIME``, ``0`` means keys that never expire;
    - ``client_secret``: makes it a confidential client; only its keyed hash is stored;
    - ``resource_server``: a confidential client (it needs ``client_secret``) that may
      call the introspection endpoint, such as another service of the host's that
      checks keys (:class:`devicelink.http.resource.IntrospectionVerifier`); no other
      client may;
    - ``grant_types``: the grants it may use (default: the device grant alone); add
      ``"authorization_code"`` with ``redirect_uris`` for same-device sign-in;
    - ``redirect_uris``: its loopback redirect URIs, ``http://127.0.0.1/PATH`` or
      ``http://[::1]/PATH`` (RFC 8252 section 7.3).
    """

    client_id: str
    name: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    key_lifetime: int | None = None
    client_secret: str | None = field(default=None, repr=False)
    resource_server: bool = False
    grant_types: tuple[str, ...] = (DEVICE_CODE_GRANT,)
    redirect_uris: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        """What is wrong with this specification (empty: nothing)."""
        problems: list[str] = []
        if not _CLIENT_ID.match(self.client_id):
            problems.append(
                f"client {self.client_id!r}: a client id is 1 to 128 letters, digits, dots, "
                "dashes or underscores"
            )
        if isinstance(self.scopes, str):
            problems.append(f"client {self.client_id!r}: scopes is a tuple, not a string")
        elif not all(_is_scope_token(scope) for scope in self.scopes):
            problems.append(f"client {self.client_id!r}: scopes must be scope tokens")
        if self.key_lifetime is not None and self.key_lifetime < 0:
            problems.append(f"client {self.client_id!r}: key_lifetime must not be negative")
        if self.client_secret is not None and len(self.client_secret) < 16:
            problems.append(f"client {self.client_id!r}: client_secret is shorter than 16")
        if self.resource_server and self.client_secret is None:
            problems.append(
                f"client {self.client_id!r}: a resource server authenticates: give it a "
                "client_secret"
            )
        problems.extend(
            f"client {self.client_id!r}: {problem}"
            for problem in client_grant_problems(self.grant_types, self.redirect_uris)
        )
        return problems

    def to_client(self, settings: Settings, hasher: CodeHasher, *, now: datetime) -> Client:
        lifetime = settings.key_lifetime if self.key_lifetime is None else self.key_lifetime
        secret = self.client_secret
        return Client(
            client_id=self.client_id,
            name=self.name or self.client_id,
            scopes=parse_scope(" ".join(self.scopes)) or (),
            key_lifetime=lifetime or None,
            confidential=secret is not None,
            secret_hash=hasher.client_secret(secret) if secret is not None else None,
            created_at=now,
            resource_server=self.resource_server,
            grant_types=canonical_grants(self.grant_types),
            redirect_uris=tuple(self.redirect_uris),
        )


GRANT_NAMES = {
    "device_code": DEVICE_CODE_GRANT,
    DEVICE_CODE_GRANT: DEVICE_CODE_GRANT,
    AUTHORIZATION_CODE_GRANT: AUTHORIZATION_CODE_GRANT,
}
"""The grants a client may be given, by the names an operator may use for them."""


def canonical_grants(names: Sequence[str]) -> tuple[str, ...]:
    """Grant names (``device_code`` for short) as stored: full names, once each, sorted."""
    return tuple(sorted({GRANT_NAMES[name] for name in names}))


def client_grant_problems(grant_types: Sequence[str], redirect_uris: Sequence[str]) -> list[str]:
    """What is wrong with a client's grants and redirect URIs (empty: nothing)."""
    if isinstance(grant_types, str) or isinstance(redirect_uris, str):
        return ["grant_types and redirect_uris are tuples, not strings"]
    problems = [
        f"unknown grant {grant!r} (known: authorization_code, device_code)"
        for grant in grant_types
        if grant not in GRANT_NAMES
    ]
    if not grant_types:
        problems.append("give the client at least one grant")
    problems.extend(
        problem for uri in redirect_uris if (problem := registrable_redirect_uri(uri)) is not None
    )
    if AUTHORIZATION_CODE_GRANT in grant_types and not redirect_uris:
        problems.append("the authorization_code grant needs a redirect URI")
    return problems


def _is_scope_token(candidate: object) -> bool:
    if not isinstance(candidate, str) or not candidate or " " in candidate:
        return False
    try:
        return parse_scope(candidate) == (candidate,)
    except ValueError:
        return False


def check_client_specs(specs: Sequence[ClientSpec]) -> None:
    """Refuse malformed or repeated specifications, with what to fix."""
    problems = [problem for spec in specs for problem in spec.problems()]
    seen: set[str] = set()
    for spec in specs:
        if spec.client_id in seen:
            problems.append(f"client {spec.client_id!r} is registered twice")
        seen.add(spec.client_id)
    if problems:
        raise ConfigurationError("refusing to start:\n  - " + "\n  - ".join(problems))


async def register_clients(
    store: Store,
    specs: Sequence[ClientSpec],
    settings: Settings,
    hasher: CodeHasher,
    *,
    now: datetime,
) -> None:
    """Create or update each client of ``specs`` (checked by :func:`check_client_specs`)."""
    for spec in specs:
        await put_client(store, spec.to_client(settings, hasher, now=now))


SCOPES_FRESH_FOR = 60.0
"""Seconds a process reuses its ``scopes_supported`` before reading the clients again.
This process changes clients only at start-up (and forgets the list then); this bound is
for ``devicelink clients add/edit/remove`` run by another process. The metadata response
is cacheable for 5 minutes anyway, so a minute more is within what clients accept."""
_scopes: WeakKeyDictionary[Store, tuple[float, list[str]]] = WeakKeyDictionary()


async def scopes_supported(
    store: Store, *, monotonic: Callable[[], float] = time.monotonic
) -> list[str]:
    """RFC 8414 ``scopes_supported``: the union of the registered clients' scopes, read
    at most once per :data:`SCOPES_FRESH_FOR` per store, not at every metadata request."""
    now = monotonic()
    cached = _scopes.get(store)
    if cached is not None and now - cached[0] < SCOPES_FRESH_FOR:
        return cached[1]
    scopes = await supported_scopes(store)
    _scopes[store] = (now, scopes)
    return scopes


def forget_scopes(store: Store) -> None:
    """Have the next :func:`scopes_supported` read the clients again."""
    _scopes.pop(store, None)


async def put_client(store: Store, wanted: Client) -> None:
    """Make the stored client ``wanted.client_id`` look like ``wanted`` (its
    ``created_at`` kept); several processes starting at once all end in that state."""
    forget_scopes(store)
    async with store.transaction() as tx:
        stored = await tx.clients.get(wanted.client_id)
        if stored is None:
            try:
                await tx.clients.add(wanted)
            except ValueError:
                pass  # another process created it at the same moment: update it below
            else:
                log.info("registered the client %r", wanted.client_id)
                return
            stored = await tx.clients.get(wanted.client_id)
        if stored is not None and _differs(stored, wanted):
            await tx.clients.update(wanted)
            log.info("updated the client %r", wanted.client_id)


def _differs(stored: Client, wanted: Client) -> bool:
    return (
        stored.name,
        stored.scopes,
        stored.key_lifetime,
        stored.confidential,
        stored.secret_hash,
        stored.resource_server,
        stored.grant_types,
        stored.redirect_uris,
    ) != (
        wanted.name,
        wanted.scopes,
        wanted.key_lifetime,
        wanted.confidential,
        wanted.secret_hash,
        wanted.resource_server,
        wanted.grant_types,
        wanted.redirect_uris,
    )


async def ensure_default_client(
    store: Store,
    settings: Settings,
    *,
    now: datetime,
    registered: Sequence[ClientSpec] = (),
) -> None:
    """Create the default public client on first start, so ``devicelink login`` works
    against a fresh server without registering anything. Its name is
    ``DEVICELINK_DEFAULT_CLIENT_NAME``; set explicitly, that setting also renames an
    existing default client. A client of ``registered`` with the default id wins."""
    client_id = settings.default_client_id
    if not client_id or any(spec.client_id == client_id for spec in registered):
        return
    forget_scopes(store)
    async with store.transaction() as tx:
        stored = await tx.clients.get(client_id)
        if stored is not None:
            name = settings.default_client_name
            if "default_client_name" in settings.model_fields_set and stored.name != name:
                await tx.clients.update(replace(stored, name=name))
                log.info("renamed the default client %r to %r", client_id, name)
            return
        try:
            await tx.clients.add(
                Client(
                    client_id=client_id,
                    name=settings.default_client_name,
                    scopes=DEFAULT_SCOPES,
                    key_lifetime=settings.key_lifetime or None,
                    created_at=now,
                    grant_types=(AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT),
                    redirect_uris=DEFAULT_REDIRECT_URIS,
                )
            )
        except ValueError:
            return  # another process created it at the same moment
    log.info("created the default public client %r", client_id)
