"""Administration: what an operator does from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from devicelink.core.models import ApiKey, AuditEvent, AuditKind, User
from devicelink.core.ports import KeyIssuer, Store, Transaction
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import NO_EVENTS, EventSink
from devicelink.service.keys import revoke_key
from devicelink.service.revocations import IssuerRevocations


class NotFound(Exception):
    """No such user or key; the message says which."""


@dataclass(frozen=True, slots=True)
class KeyListing:
    key: ApiKey
    owner: User


class AdminService:
    """The operator's use cases.

    Revocations (``revoke_key``, and the keys of a disabled user) are queued for the
    key issuer in the transaction that makes them. With ``key_issuer`` (the process
    that runs devicelink) they are delivered at once; without one (the ``devicelink``
    command, a process of its own) the server process delivers them when it next
    drains the outbox (:mod:`devicelink.service.revocations`).
    """

    def __init__(
        self,
        store: Store,
        clock: Clock = utc_now,
        *,
        key_issuer: KeyIssuer | None = None,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._revocations = (
            IssuerRevocations(store, key_issuer, clock, events=events)
            if key_issuer is not None
            else None
        )

    async def _deliver(self, queued: list[int]) -> None:
        if self._revocations is not None:
            await self._revocations.deliver(queued)

    async def list_keys(self, username: str | None = None) -> list[KeyListing]:
        async with self._store.transaction() as tx:
            if username is None:
                return [KeyListing(key, owner) for key, owner in await tx.api_keys.list_all()]
            user = await _user_named(tx, username)
            return [KeyListing(key, user) for key in await tx.api_keys.list_for_user(user.id)]

    async def revoke_key(self, key_id: int, *, actor: str = "an administrator") -> bool:
        """Revoke key ``key_id``; False when it was already revoked."""
        now = self._clock()
        queued: list[int] = []
        async with self._store.transaction() as tx:
            key = await tx.api_keys.get(key_id)
            if key is None:
                raise NotFound(f"no key with id {key_id}")
            owner = await tx.users.get(key.user_id)
            if not await revoke_key(
                tx,
                key,
                owner_name=owner.username if owner else None,
                now=now,
                ip=None,
                detail=f"revoked by {actor}",
                queued=queued,
            ):
                return False
        await self._deliver(queued)
        return True

    async def change_password(self, username: str, password_hash: str) -> int:
        """Give the local account ``username`` a new password (hashed by the caller) and
        end its browser sessions in the same transaction: a browser signed in with the
        old password, or holding a stolen session cookie, must sign in again. How many
        sessions ended; :class:`NotFound` when there is no such local account."""
        async with self._store.transaction() as tx:
            user = await tx.users.get_by_username(username)
            if (
                user is None
                or user.provider != "local"
                or not await tx.users.set_password(user.id, password_hash)
            ):
                raise NotFound(f"no local account named {username!r}")
            return await tx.browser_sessions.delete_for_user(user.id)

    async def disable_user(self, username: str, *, actor: str = "an administrator") -> bool:
        """Disable an account: its keys stop working at once and are revoked (their
        issuer told, as for any revocation), its sessions end, and an approval it gave
        that no device has redeemed yet can no longer be redeemed. False when it was
        already disabled."""
        now = self._clock()
        queued: list[int] = []
        async with self._store.transaction() as tx:
            user = await _user_named(tx, username)
            if not await tx.users.disable(user.id, now=now):
                return False
            # A disabled account's sessions already read as signed out; deleting them
            # also keeps them from ever counting again.
            await tx.browser_sessions.delete_for_user(user.id)
            await tx.audit.record(
                AuditEvent(
                    kind=AuditKind.USER_DISABLED,
                    occurred_at=now,
                    user_id=user.id,
                    username=user.username,
                    detail=f"disabled by {actor}",
                )
            )
            for key in await tx.api_keys.list_for_user(user.id):
                await revoke_key(
                    tx,
                    key,
                    owner_name=user.username,
                    now=now,
                    ip=None,
                    detail=f"revoked: its owner was disabled by {actor}",
                    queued=queued,
                )
        await self._deliver(queued)
        return True

    async def audit(
        self, *, username: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        async with self._store.transaction() as tx:
            user_id = None
            if username is not None:
                user_id = (await _user_named(tx, username)).id
            return await tx.audit.recent(user_id=user_id, since=since, limit=limit)


async def _user_named(tx: Transaction, username: str) -> User:
    user = await tx.users.get_by_username(username)
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user
