"""Revoking stored keys (RFC 7009) without ever losing track of one that still works.

Issue 13, finding 6: a logout that could not reach the server used to forget the key,
which then kept working for the rest of its 30 days with nobody holding it to revoke. Now:

- a key is forgotten only once it is gone from the server: revoked now, or already unusable
  there (RFC 7009 section 2.2: the server answers 200 for an unknown or revoked key;
  ``invalid_token`` says so too), or past its own expiry;
- a key that could not be revoked is kept, marked to be revoked
  (:meth:`~devicelink.client.store.CredentialStore.mark_for_revocation`), and is never used
  again; every command that reaches the server first revokes the marked keys
  (:func:`revoke_pending_keys`), then forgets them;
- only ``force`` (``logout --force``) forgets a key that could not be revoked, after one try.

This module does not print, and does not resolve which server: ``api`` and ``commands`` do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from devicelink.client.credentials import Credential
from devicelink.client.errors import DeviceFlowError, ServerUnreachable
from devicelink.client.http import DeviceFlowClient
from devicelink.client.store import CredentialStore

ClientFor = Callable[[str | None], DeviceFlowClient]
"""A client of the server for a key's client id (``None``: the caller's default)."""


@dataclass(frozen=True)
class Revocation:
    """What became of one key the client tried to revoke."""

    credential: Credential
    gone: bool
    """The key no longer works on the server (revoked now, already unusable, or expired),
    and has been forgotten here."""
    error: DeviceFlowError | None = None
    """Why the server could not revoke it (also set for an expired key the server could not
    be told about)."""

    @property
    def expired(self) -> bool:
        """Forgotten because it has expired, although the server could not be told."""
        return self.gone and self.error is not None


@dataclass(frozen=True)
class LogoutResult:
    """What a logout did.

    ``revoked``: every key is gone from the server; ``removed``: none is left here. A key
    that could not be revoked (``error`` says why) is kept here, marked to be revoked
    (``pending``), unless the logout was ``forced``. ``expires_at``: until when the
    unrevoked keys work (``None``: all revoked, or one never expires).
    """

    server: str
    had_credential: bool
    revoked: bool
    removed: bool
    error: DeviceFlowError | None = None
    expires_at: datetime | None = None
    pending: tuple[Credential, ...] = ()
    forced: bool = False
    revocations: tuple[Revocation, ...] = ()

    @property
    def unrevoked(self) -> tuple[Credential, ...]:
        """The keys that may still work on the server."""
        return tuple(r.credential for r in self.revocations if not r.gone)


def revoke_keys(
    store: CredentialStore,
    keys: Iterable[Credential],
    *,
    client_for: ClientFor,
    now: datetime,
) -> list[Revocation]:
    """Revoke each key with ``client_for(its client id)`` and forget each one that is gone.

    Once the server is unreachable the other keys are not tried (each try already waited
    through the client's retries); they count as not revoked, for the same reason.
    """
    revocations: list[Revocation] = []
    unreachable: ServerUnreachable | None = None
    for key in keys:
        error: DeviceFlowError | None = unreachable
        if error is None:
            error = _revoke(client_for, key)
            if isinstance(error, ServerUnreachable):
                unreachable = error
        gone = error is None or key.is_expired(now)
        if gone:
            store.forget(key)
        revocations.append(Revocation(key, gone, error))
    return revocations


def revoke_pending_keys(
    store: CredentialStore, server: str, *, client_for: ClientFor, now: datetime
) -> list[Revocation]:
    """Revoke the keys of ``server`` marked to be revoked, forgetting each one that is
    gone; what became of each (empty when none was marked: then nothing is sent)."""
    return revoke_keys(store, store.pending_revocation(server), client_for=client_for, now=now)


def log_out(
    store: CredentialStore,
    server: str,
    *,
    client_for: ClientFor,
    now: datetime,
    force: bool = False,
) -> LogoutResult:
    """Revoke every key of ``server`` (those marked to be revoked first, then the stored
    one) and forget those that are gone; mark the others to be revoked, or, with
    ``force``, forget them anyway."""
    keys = store.pending_revocation(server)
    current = store.get(server)
    if current is not None:
        keys.append(current)
    if not keys:
        return LogoutResult(server, had_credential=False, revoked=False, removed=False)
    revocations = revoke_keys(store, keys, client_for=client_for, now=now)
    unrevoked = [r for r in revocations if not r.gone]
    pending: tuple[Credential, ...] = ()
    if unrevoked and force:
        store.delete(server)
    elif unrevoked:
        pending = tuple(store.mark_for_revocation(r.credential, since=now) for r in unrevoked)
    return LogoutResult(
        server,
        had_credential=True,
        revoked=not unrevoked,
        removed=force or not unrevoked,
        error=unrevoked[0].error if unrevoked else None,
        expires_at=latest_expiry(r.credential for r in unrevoked),
        pending=pending,
        forced=force,
        revocations=tuple(revocations),
    )


def latest_expiry(keys: Iterable[Credential]) -> datetime | None:
    """When the last of ``keys`` stops working; ``None`` when one never expires (or none)."""
    moments = [key.expires_at for key in keys]
    if not moments or any(moment is None for moment in moments):
        return None
    return max(moment for moment in moments if moment is not None)


def _revoke(client_for: ClientFor, key: Credential) -> DeviceFlowError | None:
    with client_for(key.client_id or None) as client:
        try:
            client.revoke(key.access_token)
        except DeviceFlowError as exc:
            return exc
    return None


__all__ = [
    "ClientFor",
    "LogoutResult",
    "Revocation",
    "latest_expiry",
    "log_out",
    "revoke_keys",
    "revoke_pending_keys",
]
