"""The repositories a transaction holds, the transaction and the store (the general
path): every state change a compare-and-set that reports whether it happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from devicelink.core.authcode import AuthorizationCode, NewAuthorizationCode
from devicelink.core.lifecycle import FlowPolicy, PollDecision
from devicelink.core.models import (
    ApiKey,
    AuditEvent,
    BrowserSession,
    Client,
    DeviceAuthorization,
    NewApiKey,
    NewDeviceAuthorization,
    PendingRevocation,
    Status,
    User,
)


class StorageUnavailable(Exception):
    """The database could not be reached or timed out; nothing was changed."""


class DuplicateCode(Exception):
    """A freshly generated code collided with a stored one; generate another."""


class ClientRepository(Protocol):
    async def get(self, client_id: str, *, for_update: bool = False) -> Client | None:
        """The client, or None. ``for_update`` holds it until the transaction ends: a key
        being issued for it (which references it) is waited for, and one issued after
        waits in turn (PostgreSQL; SQLite's writer serialises every transaction)."""
        ...

    async def add(self, client: Client) -> None:
        """Insert a client; raises ``ValueError`` if the id is taken."""
        ...

    async def rehash_secret(
        self, client_id: str, *, old_hash: bytes, new_hash: bytes, fingerprint: str
    ) -> bool:
        """A secret's rotation: the client's secret hash becomes ``new_hash`` if it is
        still ``old_hash`` and the database's secret is the one of ``fingerprint``."""
        ...

    async def update(self, client: Client) -> bool:
        """Replace the name, scopes, key lifetime, confidentiality, secret hash,
        resource-server mark, grants and redirect URIs of the client with
        ``client.client_id`` (never its ``created_at``); False when there is no such
        client."""
        ...

    async def list(self) -> list[Client]: ...

    async def remove(self, client_id: str) -> bool:
        """Delete the client; the database deletes its device authorizations,
        authorization codes and keys with it (revoke live keys first: a deleted row
        announces nothing). False when there was no such client."""
        ...


class UserRepository(Protocol):
    async def get(self, user_id: int) -> User | None: ...

    async def get_by_username(self, username: str) -> User | None:
        """The account whose name is ``username`` up to NFKC and case folding
        (:func:`devicelink.core.names.name_key`)."""
        ...

    async def get_by_subject(self, provider: str, subject: str) -> User | None: ...

    async def add(
        self,
        username: str,
        password_hash: str | None,
        now: datetime,
        *,
        provider: str = "local",
        subject: str | None = None,
        display_name: str | None = None,
    ) -> User:
        """Insert a user; raises ``ValueError`` if the name (or upstream subject) is taken."""
        ...

    async def set_display_name(self, user_id: int, display_name: str) -> bool:
        """Keep the name an upstream or the host now gives the user; False when there is
        no such user."""
        ...

    async def set_password(self, user_id: int, password_hash: str) -> bool: ...

    async def disable(self, user_id: int, *, now: datetime) -> bool:
        """Stamp ``disabled_at`` unless already disabled; False when nothing changed."""
        ...

    async def count(self) -> int: ...

    async def list(self) -> list[User]:
        """Every account, by name."""
        ...


class BrowserSessionRepository(Protocol):
    async def add(
        self,
        token_hash: bytes,
        *,
        user_id: int | None,
        data: Mapping[str, str],
        now: datetime,
        expires_at: datetime,
    ) -> BrowserSession: ...

    async def get(self, token_hash: bytes, *, now: datetime) -> BrowserSession | None:
        """The unexpired session with this token hash, or None."""
        ...

    async def set_data(self, session_id: int, data: Mapping[str, str]) -> None: ...

    async def delete(self, session_id: int) -> None: ...

    async def delete_for_user(self, user_id: int) -> int:
        """End every session signed in as the user (expired ones too), e.g. when the
        operator changes the user's password; how many were deleted."""
        ...


POLL_CONTRACT = """What a poll (``poll(device_code_hash, client_id=..., now=..., policy=...)``)
returns and stores, in every implementation:

- None when ``client_id`` is not a registered public client: nothing changed, and the
  caller authenticates the client on the general path.
- Otherwise :func:`devicelink.core.lifecycle.decide_poll`'s decision for the code's row
  as it stood when the poll was judged (None for an unknown code). ``KeepWaiting`` and
  ``SlowDownTo`` have been recorded (``last_polled_at = now`` and the decision's
  interval), exactly when no refusal applies and the code is pending; ``Refuse`` and
  ``Issue`` changed nothing (the key's issuance is the general path's transaction).
- An implementation may also return None when the row changed under it and it could
  not judge it afresh: nothing was recorded, and the general path decides.
"""


class DeviceAuthorizationRepository(Protocol):
    async def add(self, new: NewDeviceAuthorization) -> DeviceAuthorization:
        """Insert; raises :class:`DuplicateCode` when either code hash is already stored."""
        ...

    async def get_by_device_code(self, device_code_hash: bytes) -> DeviceAuthorization | None: ...

    async def get_with_client(
        self, device_code_hash: bytes
    ) -> tuple[DeviceAuthorization, Client] | None:
        """The authorization and the client it was issued to, in one statement."""
        ...

    async def get_by_user_code(self, user_code_hash: bytes) -> DeviceAuthorization | None: ...

    async def poll(
        self, device_code_hash: bytes, *, client_id: str, now: datetime, policy: FlowPolicy
    ) -> PollDecision | None:
        """A poll of the token endpoint by a public client (one that presents no secret),
        decided and recorded: see :data:`POLL_CONTRACT`. Read the code's row, let
        :func:`devicelink.core.lifecycle.decide_poll` decide, and record a pending
        code's poll with a compare-and-set (:meth:`record_poll`)."""
        ...

    async def record_poll(
        self,
        authorization_id: int,
        *,
        previous_poll: datetime | None,
        now: datetime,
        interval: int,
    ) -> bool:
        """Set the last poll time and interval if the record is still pending and
        nobody polled since ``previous_poll``. False when another request got there first."""
        ...

    async def transition(
        self,
        authorization_id: int,
        *,
        from_status: Status,
        to_status: Status,
        now: datetime,
        user_id: int | None = None,
        reason: str | None = None,
    ) -> bool:
        """Move ``from_status`` to ``to_status`` atomically, stamping the matching time
        (and the approving or denying user; for a denial, ``reason`` as
        ``denial_reason``). False when the status was not ``from_status`` or when the
        authorization has expired (nothing moves after ``expires_at``)."""
        ...


class AuthorizationCodeRepository(Protocol):
    """Authorization codes of same-device sign-in (RFC 6749 section 4.1), by keyed hash."""

    async def add(self, new: NewAuthorizationCode) -> AuthorizationCode:
        """Insert; raises :class:`DuplicateCode` when the code hash is already stored."""
        ...

    async def get(self, code_hash: bytes) -> AuthorizationCode | None:
        """The code with this hash, redeemed or expired ones included."""
        ...

    async def redeem(self, code_id: int, *, now: datetime) -> bool:
        """Stamp ``redeemed_at`` if it is unredeemed and unexpired at ``now``: exactly
        one request redeems a code. False when nothing changed."""
        ...

    async def attach_key(self, code_id: int, api_key_id: int) -> bool:
        """Keep the key the redemption issued (a redeemed code with none yet)."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, new: NewApiKey) -> ApiKey:
        """Insert; raises ``ValueError`` when the device authorization already has a key."""
        ...

    async def get_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None: ...

    async def list_for_user(self, user_id: int) -> list[ApiKey]: ...

    async def list_all(self) -> list[tuple[ApiKey, User]]: ...

    async def list_for_client(self, client_id: str) -> list[tuple[ApiKey, User]]:
        """The client's keys (revoked and expired ones too), with their owners."""
        ...

    async def live_counts_by_client(self, *, now: datetime) -> dict[str, int]:
        """How many keys of each client are neither revoked nor expired at ``now``
        (clients with none are left out)."""
        ...

    async def get(self, key_id: int) -> ApiKey | None: ...

    async def record_use(
        self, key_id: int, *, now: datetime, ip: str | None, not_since: datetime
    ) -> bool:
        """Set last-used time and address unless the key was marked used after
        ``not_since``; at most one write per key per interval, whoever asks."""
        ...

    async def revoke(self, key_id: int, *, now: datetime) -> bool:
        """Stamp ``revoked_at`` unless already revoked; False when nothing changed."""
        ...

    async def rehash(
        self,
        key_id: int,
        *,
        old_hash: bytes,
        new_hash: bytes,
        fingerprint: str,
        used_at: datetime | None,
        ip: str | None,
    ) -> bool:
        """A secret's rotation: store ``new_hash`` for the key if it is still stored
        under ``old_hash`` and the database's secret is the one of ``fingerprint`` (a
        compare-and-set; False when another request moved it first, or this process's
        secret is not the database's). With ``used_at``, also a use of a key used
        before (as :meth:`record_use`). Announced, so no cache keeps the old hash."""
        ...

    async def live_unused_since(
        self, since: datetime, *, now: datetime
    ) -> list[tuple[ApiKey, User]]:
        """Keys that still work (not revoked, unexpired at ``now``, owner enabled)
        created before ``since`` and not used since, oldest first, with their owners."""
        ...

    async def count_for_authorization(self, device_authorization_id: int) -> int: ...

    async def list_by_external_id(self, external_id: str) -> list[ApiKey]:
        """The keys whose issuer named them ``external_id`` (revoked ones included),
        oldest first; an indexed lookup."""
        ...


class InstanceFacts(Protocol):
    """What every process of a deployment must agree on, kept by name."""

    async def claim(self, name: str, value: str) -> str:
        """The value kept under ``name``, keeping ``value`` first when there is none."""
        ...

    async def get(self, name: str) -> str | None: ...

    async def replace(self, name: str, value: str) -> None: ...


class IssuerRevocationRepository(Protocol):
    """The outbox of revocations the key issuer has yet to hear of. A row is written in
    the transaction that revokes the key (so it exists exactly when the revocation
    does), and deleted in the transaction that calls the issuer's ``revoke``: once that
    has committed, the issuer is never called again for the key."""

    async def add(self, api_key_id: int, *, now: datetime) -> int | None:
        """Queue the key's revocation, due at once; its id, or None when the key
        already has one pending."""
        ...

    async def due(self, *, now: datetime, limit: int) -> list[PendingRevocation]:
        """At most ``limit`` pending revocations due at ``now``, the longest due first."""
        ...

    async def claim(self, revocation_id: int, *, now: datetime) -> PendingRevocation | None:
        """Take the pending revocation for this transaction: deleted when it commits,
        back in place when it rolls back. None when there is none, when it is not due
        at ``now`` (another process failed it since it was listed: its retry waits), or
        when another transaction holds it (never waited for)."""
        ...

    async def postpone(self, revocation_id: int, *, until: datetime, error: str) -> bool:
        """Count a failed attempt, keep ``error`` (at most 300 characters) and make it
        due again at ``until``; False when it is no longer pending."""
        ...

    async def discard(self, api_key_id: int) -> bool:
        """Drop the key's pending revocation (its issuer already knows); False when
        there was none."""
        ...

    async def count(self) -> int:
        """How many revocations are pending."""
        ...

    async def count_for_client(self, client_id: str) -> int:
        """How many pending revocations are of keys of the client."""
        ...


class AuditLog(Protocol):
    async def record(self, event: AuditEvent) -> None: ...

    async def recent(
        self, *, user_id: int | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """Events in the order they happened, the newest ``limit`` of them."""
        ...


class Transaction(Protocol):
    """One database transaction: committed when the block ends, rolled back on error."""

    @property
    def clients(self) -> ClientRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def device_authorizations(self) -> DeviceAuthorizationRepository: ...

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def issuer_revocations(self) -> IssuerRevocationRepository: ...

    @property
    def browser_sessions(self) -> BrowserSessionRepository: ...

    @property
    def audit(self) -> AuditLog: ...

    @property
    def authorization_codes(self) -> AuthorizationCodeRepository: ...

    @property
    def instance(self) -> InstanceFacts: ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def ping(self) -> None:
        """Raise when the database cannot be reached."""
        ...
