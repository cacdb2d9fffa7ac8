"""API keys: checking them on every request, and revoking them (devicelink's own keys
are minted by :class:`devicelink.service.issuing.StoredKeyIssuer`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from devicelink.core.apikeys import KeyShape, worth_a_lookup
from devicelink.core.codes import CodeHasher
from devicelink.core.errors import (
    InvalidClient,
    InvalidToken,
    NotAResourceServer,
    UnauthorizedClient,
)
from devicelink.core.events import DeviceLinkEvent, EventKind
from devicelink.core.models import ApiKey, AuditEvent, AuditKind, User
from devicelink.core.ports import FastPathStore, KeyIssuer, Store, Transaction
from devicelink.service.clients import ClientAuthenticator, ClientCredentials
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import NO_EVENTS, EventSink
from devicelink.service.issuing import StoredKeyIssuer
from devicelink.service.revocations import IssuerRevocations

USE_RECORD_INTERVAL = timedelta(minutes=1)
"""A key's last-used time and address are written at most this often."""


def use_record_interval(key_id: int) -> timedelta:
    """How long a key's recorded last use stands before the next use is written: at
    most a minute (:data:`USE_RECORD_INTERVAL`), less by up to 15 seconds depending on
    the key, so that keys first used together (a fleet of CLIs started at once) do not
    all fall due for a write in the same instant, ever after."""
    return _USE_RECORD_INTERVALS[key_id % len(_USE_RECORD_INTERVALS)]


_USE_RECORD_INTERVALS = tuple(USE_RECORD_INTERVAL - timedelta(seconds=s) for s in range(16))
"""use_record_interval's answers, made once (it runs on every key check)."""


async def revoke_key(
    tx: Transaction,
    key: ApiKey,
    *,
    owner_name: str | None,
    now: datetime,
    ip: str | None,
    detail: str,
    queued: list[int] | None,
) -> bool:
    """Revoke one key, in the caller's transaction: devicelink's row (a compare-and-set,
    which stops the key working at once), the revocation queued for the issuer (its id
    appended to ``queued``, to deliver once the transaction has committed: see
    :mod:`devicelink.service.revocations`; with ``queued`` None, none: the issuer
    revoked it itself), and the audit line. False when it already was."""
    if not await tx.api_keys.revoke(key.id, now=now):
        return False
    if queued is not None:
        revocation_id = await tx.issuer_revocations.add(key.id, now=now)
        if revocation_id is not None:
            queued.append(revocation_id)
    await tx.audit.record(
        AuditEvent.about_key(
            AuditKind.REVOKED, key, now=now, username=owner_name, ip=ip, detail=detail
        )
    )
    return True


def _working(found: tuple[ApiKey, User] | None, now: datetime) -> tuple[ApiKey, User]:
    """A key found by its hash, and its owner, when the key still works: else
    :class:`InvalidToken` (unknown, revoked, expired, or its owner disabled)."""
    if found is None:
        raise InvalidToken()
    key, user = found
    if user.disabled or not key.is_active(now):
        raise InvalidToken()
    return found


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """Who a presented key belongs to: the key, and its owner."""

    key: ApiKey
    user: User


class KeyService:
    def __init__(
        self,
        store: Store,
        hasher: CodeHasher,
        clock: Clock = utc_now,
        *,
        default_client_id: str | None = None,
        key_issuer: KeyIssuer | None = None,
        fast_path: FastPathStore | None = None,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._clients = ClientAuthenticator(hasher, default_client_id)
        issuer = key_issuer or StoredKeyIssuer()
        self.key_shape = KeyShape.of(issuer)
        """What the issuer's keys look like: anything else is refused without a lookup."""
        self.revocations = IssuerRevocations(store, issuer, clock, events=events)
        self._events = events
        self._fast_path = fast_path

    async def revoke(
        self, creds: ClientCredentials, presented: str, *, ip: str | None = None
    ) -> bool:
        """RFC 7009 section 2.1: revoke a key on behalf of the client it was issued to.

        An unknown, malformed or already revoked key is not an error (section 2.2: the
        answer is the same, so revocation is no oracle for which keys exist). True when
        this call revoked a key. The issuer hears of it before this returns.
        """
        queued: list[int] = []
        async with self._clients.transaction(self._store) as tx:
            client = await self._clients.authenticate(tx, creds)
            found = await self._lookup(tx, presented)
            if found is None:
                return False
            key, owner = found
            if key.client_id != client.client_id:
                # Section 2.1: the server verifies the token was issued to this client.
                raise UnauthorizedClient("this key was issued to another client")
            revoked = await revoke_key(
                tx,
                key,
                owner_name=owner.username,
                now=self._clock(),
                ip=ip,
                detail="revoked by the client (RFC 7009)",
                queued=queued,
            )
        await self.revocations.deliver(queued)
        return revoked

    async def _lookup(self, tx: Transaction, presented: str) -> tuple[ApiKey, User] | None:
        """The key presented to a client's request, with its owner; None when it is
        unknown or not worth a lookup (its shape is not the issuer's)."""
        if not worth_a_lookup(presented, self.key_shape):
            return None
        key_hash = self._hasher.api_key(presented)
        found = await tx.api_keys.get_with_owner(key_hash)
        if found is None and self._hasher.previous:
            found = await self._under_previous(tx, presented, key_hash, used_at=None, ip=None)
        return found

    async def _under_previous(
        self,
        tx: Transaction,
        presented: str,
        key_hash: bytes,
        *,
        used_at: datetime | None,
        ip: str | None,
    ) -> tuple[ApiKey, User] | None:
        """A rotation in progress (DEVICELINK_SECRET_KEY_FALLBACKS): the key as stored
        under a previous secret's hash, rewritten to ``key_hash`` when it still works
        (:meth:`ApiKeyRepository.rehash <devicelink.core.ports.ApiKeyRepository.rehash>`:
        by the database's secret only, and once, however many requests race)."""
        for previous in self._hasher.previous:
            old_hash = previous.api_key(presented)
            found = await tx.api_keys.get_with_owner(old_hash)
            if found is None:
                continue
            key, user = found
            if not user.disabled and key.is_active(self._clock()):
                await tx.api_keys.rehash(
                    key.id,
                    old_hash=old_hash,
                    new_hash=key_hash,
                    fingerprint=self._hasher.fingerprint,
                    used_at=used_at,
                    ip=ip,
                )
            return found
        return None

    async def _under_previous_fast(
        self, fast_path: FastPathStore, presented: str, key_hash: bytes, *, ip: str | None
    ) -> tuple[ApiKey, User] | None:
        """:meth:`_under_previous` on the fast path: one statement per previous secret,
        and one more when the key is found and still works."""
        now = self._clock()
        for previous in self._hasher.previous:
            old_hash = previous.api_key(presented)
            found = await fast_path.key_with_owner(old_hash)
            if found is None:
                continue
            key, user = found
            if not user.disabled and key.is_active(now):
                await fast_path.rehash_key(
                    key.id,
                    old_hash=old_hash,
                    new_hash=key_hash,
                    fingerprint=self._hasher.fingerprint,
                    now=now,
                    ip=ip,
                )
            return found
        return None

    async def keys_of(self, user_id: int) -> list[ApiKey]:
        """The user's keys, newest first, revoked and expired ones included."""
        async with self._store.transaction() as tx:
            keys = await tx.api_keys.list_for_user(user_id)
        return sorted(keys, key=lambda key: key.id, reverse=True)

    async def revoke_own(
        self, user: User, key_ids: list[int] | None, *, ip: str | None = None
    ) -> int:
        """Revoke the user's keys ``key_ids`` (all of them when None); keys of other
        users are left alone. The number revoked; the issuer hears of them before this
        returns."""
        now = self._clock()
        revoked = 0
        queued: list[int] = []
        async with self._store.transaction() as tx:
            for key in await tx.api_keys.list_for_user(user.id):
                if key_ids is not None and key.id not in key_ids:
                    continue
                if await revoke_key(
                    tx,
                    key,
                    owner_name=user.username,
                    now=now,
                    ip=ip,
                    detail="revoked by its owner",
                    queued=queued,
                ):
                    revoked += 1
        await self.revocations.deliver(queued)
        return revoked

    async def revoked_by_issuer(self, external_id: str) -> int:
        """The issuer (the host application) revoked the key it calls ``external_id``
        itself: stop it working here too, without calling the issuer back (any
        revocation of it still queued for the issuer is dropped). The number of keys
        this revoked (0 when unknown or already revoked)."""
        now = self._clock()
        revoked: list[tuple[ApiKey, str | None]] = []
        async with self._store.transaction() as tx:
            for key in await tx.api_keys.list_by_external_id(external_id):
                await tx.issuer_revocations.discard(key.id)
                owner = await tx.users.get(key.user_id)
                name = owner.username if owner is not None else None
                if await revoke_key(
                    tx,
                    key,
                    owner_name=name,
                    now=now,
                    ip=None,
                    detail="revoked by the key issuer (the host application)",
                    queued=None,
                ):
                    revoked.append((key, name))
        for key, name in revoked:
            await self._events.emit(
                DeviceLinkEvent.about_key(
                    EventKind.KEY_REVOKED,
                    key,
                    now=now,
                    username=name,
                    detail="revoked by the host application",
                )
            )
        return len(revoked)

    async def introspect(self, creds: ClientCredentials, presented: str) -> KeyOwner | None:
        """RFC 7662: the owner of an active key, for an authenticated resource server.

        Only confidential clients may introspect (section 2.1: the endpoint must be
        protected against token scanning); anything else is ``invalid_client``. Of
        those, only the ones an operator marked as resource servers (section 4: callers
        specifically authorised); the others, once authenticated, get
        :class:`NotAResourceServer`.
        """
        async with self._clients.transaction(self._store) as tx:
            client = await self._clients.authenticate(tx, creds)
            if not client.confidential:
                raise InvalidClient("introspection needs a confidential client's credentials")
            if not client.resource_server:
                raise NotAResourceServer()
            found = await self._lookup(tx, presented)
        if found is None:
            return None
        key, user = found
        if user.disabled or not key.is_active(self._clock()):
            return None
        return KeyOwner(key=key, user=user)

    async def authenticate(self, presented: str | None, *, ip: str | None = None) -> KeyOwner:
        """The owner of a presented key, or :class:`InvalidToken` (RFC 6750 section 3.1).

        The key's shape is checked first (:func:`worth_a_lookup`: a ``dlk_`` key's
        checksum, the issuer's declared shape for others), so malformed keys cost no
        database lookup. The key's last use is written at most once a minute
        (:func:`use_record_interval`), not on every request; the first use ever is also
        an audit event.
        """
        if not presented or not worth_a_lookup(presented, self.key_shape):
            raise InvalidToken()
        now = self._clock()
        key_hash = self._hasher.api_key(presented)
        if self._fast_path is not None:
            # One statement, or none when the fast path remembers the key; the general
            # path below is for stores without a fast path.
            found = await self._fast_path.key_with_owner(key_hash)
            if found is None and self._hasher.previous:
                found = await self._under_previous_fast(self._fast_path, presented, key_hash, ip=ip)
            key, user = _working(found, now)
            interval = use_record_interval(key.id)
            if key.last_used_at is None or now - key.last_used_at >= interval:
                # Due a write: on the fast path too (one statement, shared by the keys
                # due at the same moment).
                await self._fast_path.record_use(key.id, now=now, ip=ip, not_since=now - interval)
            return KeyOwner(key=key, user=user)
        async with self._store.transaction() as tx:
            found = await tx.api_keys.get_with_owner(key_hash)
            if found is None and self._hasher.previous:
                found = await self._under_previous(tx, presented, key_hash, used_at=now, ip=ip)
            key, user = _working(found, now)
            last = key.last_used_at
            interval = use_record_interval(key.id)
            if last is None or now - last >= interval:
                recorded = await tx.api_keys.record_use(
                    key.id, now=now, ip=ip, not_since=now - interval
                )
                if recorded and last is None:
                    await tx.audit.record(
                        AuditEvent.about_key(
                            AuditKind.KEY_FIRST_USED, key, now=now, username=user.username, ip=ip
                        )
                    )
        return KeyOwner(key=key, user=user)
