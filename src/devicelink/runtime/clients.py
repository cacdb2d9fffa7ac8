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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import parse_scope
from devicelink.core.models import Client
from devicelink.core.ports import Store
from devicelink.runtime.settings import ConfigurationError, Settings

log = logging.getLogger("devicelink")

DEFAULT_SCOPES = ("api",)
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
      client may.
    """

    client_id: str
    name: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    key_lifetime: int | None = None
    client_secret: str | None = field(default=None, repr=False)
    resource_server: bool = False

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
        )


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


async def put_client(store: Store, wanted: Client) -> None:
    """Make the stored client ``wanted.client_id`` look like ``wanted`` (its
    ``created_at`` kept); several processes starting at once all end in that state."""
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
    ) != (
        wanted.name,
        wanted.scopes,
        wanted.key_lifetime,
        wanted.confidential,
        wanted.secret_hash,
        wanted.resource_server,
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
                )
            )
        except ValueError:
            return  # another process created it at the same moment
    log.info("created the default public client %r", client_id)
