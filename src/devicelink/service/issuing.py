"""Issuing keys: devicelink's own key issuer (:class:`StoredKeyIssuer`, the default),
and the end of a device flow with any issuer: its ``issue`` at the poll that consumes the
approval, its optional ``check`` at the approval, and what happens when it refuses or
fails (RFC 8628 section 3.5; DESIGN.md defect 3).

- A refusal (:class:`devicelink.core.errors.KeyIssueRefused`) is a decision: the
  authorization becomes denied, with the reason kept and written to the audit log, and
  the device is answered ``access_denied`` with that reason.
- Any other failure of ``issue`` is :class:`devicelink.core.errors.KeyIssueFailed`
  (``server_error``): the poll's transaction rolls back whole (no key, no consumption,
  no audit line), and the device stops polling at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from devicelink.core.apikeys import API_KEY_PREFIX, new_api_key
from devicelink.core.codes import CodeHasher
from devicelink.core.errors import InvalidGrant, KeyIssueFailed, KeyIssueRefused, OAuthError
from devicelink.core.events import DeviceLinkEvent, EventKind
from devicelink.core.models import (
    ApiKey,
    AuditEvent,
    AuditKind,
    Client,
    DeviceAuthorization,
    IssuedKey,
    NewApiKey,
    Status,
    User,
)
from devicelink.core.ports import KeyIssuer, StorageUnavailable, Store, Transaction

_NAME_LIMIT = 300


def key_name(client: Client, authorization: DeviceAuthorization) -> str:
    """A key is named after the client and the device that asked for it, so a user who
    signed in several devices can tell their keys apart."""
    device = (authorization.user_agent or "unknown device").strip() or "unknown device"
    where = f" from {authorization.request_ip}" if authorization.request_ip else ""
    return f"{client.name} on {device}{where}"[:_NAME_LIMIT]


class StoredKeyIssuer:
    """The default :class:`devicelink.core.ports.KeyIssuer`: devicelink's own ``dlk_``
    keys. The clear key exists once, in the token response; the device flow stores only
    its keyed hash, whoever mints the key."""

    key_prefix = API_KEY_PREFIX
    """Only ``dlk_`` keys are worth a lookup (their checksum is checked too)."""

    async def issue(
        self,
        tx: Transaction,
        *,
        user: User,
        client: Client,
        authorization: DeviceAuthorization,
        now: datetime,
    ) -> IssuedKey:
        expires_at = (
            now + timedelta(seconds=client.key_lifetime)
            if client.key_lifetime is not None
            else None
        )
        return IssuedKey(access_token=new_api_key(), expires_at=expires_at)

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None:
        """Nothing beyond devicelink's own row, which the caller marks revoked."""


@dataclass(frozen=True, slots=True)
class Minted:
    """A key minted and stored by the poll that consumed its authorization."""

    issued: IssuedKey
    key: ApiKey
    user: User

    def event(self, now: datetime) -> DeviceLinkEvent:
        return DeviceLinkEvent.about_key(
            EventKind.KEY_ISSUED, self.key, now=now, username=self.user.username
        )


class Minting:
    """The key issuer, seen from the device flow."""

    def __init__(self, store: Store, hasher: CodeHasher, issuer: KeyIssuer) -> None:
        self._store = store
        self._hasher = hasher
        self._issuer = issuer

    async def consume_and_issue(
        self,
        tx: Transaction,
        client: Client,
        authorization: DeviceAuthorization,
        now: datetime,
        ip: str | None,
    ) -> Minted:
        """Consume the approved authorization and mint its key, in the poll's
        transaction. Raises ``KeyIssueRefused`` (the caller denies the authorization once
        this transaction has rolled back) or ``KeyIssueFailed``."""
        # The compare-and-set decides which poll gets the key; every other poll,
        # concurrent or later, finds the authorization consumed (DESIGN.md defects 1, 9).
        consumed = await tx.device_authorizations.transition(
            authorization.id, from_status=Status.APPROVED, to_status=Status.CONSUMED, now=now
        )
        if not consumed:
            raise InvalidGrant()
        user = await tx.users.get(authorization.user_id) if authorization.user_id else None
        if user is None or user.disabled:
            raise InvalidGrant("the approving account can no longer sign in")
        # Issued in the same transaction: if minting fails, the consumption rolls back
        # and the authorization stays approved (DESIGN.md defect 3); the device is told
        # at once (server_error) rather than left polling until the code expires.
        return await self.mint(tx, client, user, authorization, now, ip, from_device_flow=True)

    async def mint(
        self,
        tx: Transaction,
        client: Client,
        user: User,
        authorization: DeviceAuthorization,
        now: datetime,
        ip: str | None,
        *,
        from_device_flow: bool,
    ) -> Minted:
        """Mint a key for ``user`` and store its keyed hash with the ``key_issued`` audit
        line, in the caller's transaction, once the caller has consumed what it was
        granted for: a device authorization, or (``from_device_flow`` False) an
        authorization code, which ``authorization`` then describes for the issuer.
        Raises ``KeyIssueRefused`` or ``KeyIssueFailed``."""
        try:
            issued = await self._issuer.issue(
                tx, user=user, client=client, authorization=authorization, now=now
            )
        except (KeyIssueRefused, OAuthError, StorageUnavailable):
            raise
        except Exception as exc:  # the issuer's own failure, whatever it is
            raise KeyIssueFailed() from exc
        stored = await tx.api_keys.add(
            NewApiKey(
                key_hash=self._hasher.api_key(issued.access_token),
                name=key_name(client, authorization),
                user_id=user.id,
                client_id=client.client_id,
                device_authorization_id=authorization.id if from_device_flow else None,
                scope=authorization.scope,
                created_at=now,
                expires_at=issued.expires_at,
                external_id=issued.external_id,
            )
        )
        await tx.audit.record(
            AuditEvent.about_key(
                AuditKind.KEY_ISSUED, stored, now=now, username=user.username, ip=ip
            )
        )
        return Minted(issued=issued, key=stored, user=user)

    async def record_refusal(
        self,
        authorization: DeviceAuthorization,
        refusal: KeyIssueRefused,
        now: datetime,
        ip: str | None,
    ) -> bool:
        """The issuer refused at the poll: deny the approved authorization (a
        compare-and-set), keeping the reason, with its audit line, in a transaction of
        its own. False when it was no longer approved."""
        async with self._store.transaction() as tx:
            denied = await tx.device_authorizations.transition(
                authorization.id,
                from_status=Status.APPROVED,
                to_status=Status.DENIED,
                now=now,
                user_id=authorization.user_id,
                reason=refusal.reason,
            )
            if denied:
                user = await tx.users.get(authorization.user_id) if authorization.user_id else None
                await tx.audit.record(
                    AuditEvent(
                        kind=AuditKind.KEY_REFUSED,
                        occurred_at=now,
                        user_id=authorization.user_id,
                        username=user.username if user is not None else None,
                        client_id=authorization.client_id,
                        device_authorization_id=authorization.id,
                        ip=ip,
                        detail=refusal.reason,
                    )
                )
        return denied

    async def pre_check(
        self, tx: Transaction, authorization: DeviceAuthorization, user_id: int, now: datetime
    ) -> KeyIssueRefused | None:
        """The issuer's optional ``check`` when the user approves: its refusal, or None."""
        if getattr(self._issuer, "check", None) is None:
            return None
        user = await tx.users.get(user_id)
        client = await tx.clients.get(authorization.client_id)
        if user is None or client is None:
            return None
        return await self.check(tx, client, user, now)

    async def check(
        self, tx: Transaction, client: Client, user: User, now: datetime
    ) -> KeyIssueRefused | None:
        """The issuer's optional ``check`` before a user's approval: its refusal, or None."""
        check = getattr(self._issuer, "check", None)
        if check is None:
            return None
        try:
            await check(tx, user=user, client=client, now=now)
        except KeyIssueRefused as refusal:
            return refusal
        return None
