"""Administration: what an operator does from the command line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from devicelink.core.models import ApiKey, AuditEvent, AuditKind, Client, User
from devicelink.core.ports import KeyIssuer, Store, Transaction
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import NO_EVENTS, EventSink
from devicelink.service.keys import revoke_key
from devicelink.service.revocations import IssuerRevocations


class NotFound(Exception):
    """No such user, client or key; the message says which."""


class ClientInUse(Exception):
    """The client cannot be removed yet; the message says why and what to run."""


@dataclass(frozen=True, slots=True)
class ClientListing:
    client: Client
    live_keys: int
    """Keys of the client neither revoked nor expired."""


@dataclass(frozen=True, slots=True)
class ClientRemoval:
    revoked: int
    """Keys this call revoked (``revoke_keys``)."""
    removed: bool
    """False: the client stays until the key issuer has heard of ``undelivered``
    revocations of its keys."""
    undelivered: int


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

    async def list_users(self) -> list[User]:
        async with self._store.transaction() as tx:
            return await tx.users.list()

    async def list_clients(self) -> list[ClientListing]:
        now = self._clock()
        async with self._store.transaction() as tx:
            live = await tx.api_keys.live_counts_by_client(now=now)
            return [
                ClientListing(client, live.get(client.client_id, 0))
                for client in await tx.clients.list()
            ]

    async def remove_client(
        self, client_id: str, *, revoke_keys: bool = False, actor: str = "an administrator"
    ) -> ClientRemoval:
        """Remove a registered client, and with it (the database's cascade) its pending
        device flows and authorization codes, which can then never be approved or
        redeemed, and its ended keys.

        Its live keys are never deleted unannounced (a deleted row would tell no
        server's key cache and no key issuer): without ``revoke_keys`` a client with
        live keys is refused (:class:`ClientInUse`); with it they are revoked first, as
        ``keys revoke`` does (audited, announced, queued for the issuer). The row goes
        only once no revocation of its keys waits for the issuer, since deleting a key
        deletes its place in the outbox: with an issuer at hand (the server's process)
        they are delivered at once; without one (the ``devicelink`` command) the server
        delivers them when it next drains, and ``removed`` is False until then."""
        now = self._clock()
        queued: list[int] = []
        async with self._store.transaction() as tx:
            if await tx.clients.get(client_id) is None:
                raise NotFound(f"no client {client_id!r}")
            live = [
                (key, owner)
                for key, owner in await tx.api_keys.list_for_client(client_id)
                if key.is_active(now)
            ]
            if live and not revoke_keys:
                raise ClientInUse(
                    f"client {client_id!r} has {len(live)} live key(s): revoke them with "
                    f"`devicelink clients remove {client_id} --revoke-keys` (or one by one "
                    "with `devicelink keys revoke ID`), then remove it"
                )
            for key, owner in live:
                await revoke_key(
                    tx,
                    key,
                    owner_name=owner.username,
                    now=now,
                    ip=None,
                    detail=f"revoked: its client was removed by {actor}",
                    queued=queued,
                )
            if self._revocations is None:
                return await _remove_once_delivered(tx, client_id, revoked=len(live), now=now)
        await self._deliver(queued)
        async with self._store.transaction() as tx:
            return await _remove_once_delivered(tx, client_id, revoked=len(live), now=now)

    async def audit(
        self, *, username: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        async with self._store.transaction() as tx:
            user_id = None
            if username is not None:
                user_id = (await _user_named(tx, username)).id
            return await tx.audit.recent(user_id=user_id, since=since, limit=limit)


async def _remove_once_delivered(
    tx: Transaction, client_id: str, *, revoked: int, now: datetime
) -> ClientRemoval:
    """Delete the client unless a revocation of its keys waits for the issuer, or a key
    issued since the caller looked is live (refused: it would go unannounced). The client
    is locked first, so that a key being issued for it is seen here, not deleted with it
    by the database's cascade once committed."""
    if await tx.clients.get(client_id, for_update=True) is None:
        raise NotFound(f"no client {client_id!r}")
    if any(key.is_active(now) for key, _ in await tx.api_keys.list_for_client(client_id)):
        raise ClientInUse(f"client {client_id!r} was issued a key meanwhile: run this again")
    undelivered = await tx.issuer_revocations.count_for_client(client_id)
    if undelivered:
        return ClientRemoval(revoked=revoked, removed=False, undelivered=undelivered)
    await tx.clients.remove(client_id)
    return ClientRemoval(revoked=revoked, removed=True, undelivered=0)


async def _user_named(tx: Transaction, username: str) -> User:
    user = await tx.users.get_by_username(username)
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user
