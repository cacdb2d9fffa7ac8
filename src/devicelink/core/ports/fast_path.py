"""The fast path's store: one statement per request on the hottest paths."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from devicelink.core.lifecycle import FlowPolicy, PollDecision
from devicelink.core.models import (
    ApiKey,
    NewDeviceAuthorization,
    User,
)


class FastPathStore(Protocol):
    """What every waiting device and every signed-in CLI asks (a poll, a key check) and
    what starts and follows them (a new flow, a key's last use), each in ONE statement
    on the driver's connection, with no ORM in between.

    Each answers only the common case and returns None for anything else; the caller then
    takes the full path through the repositories. The conformance suite runs the
    repositories only; ``tests/storage/test_poll_implementations.py`` holds the poll to
    the repositories' and to :func:`devicelink.core.lifecycle.decide_poll` in every state
    a record can be in, ``tests/storage/test_fast_path_store.py`` the PostgreSQL
    implementation to the rules (a poll, a new flow to the rows the repositories write, a
    key's last use to its compare-and-set), ``tests/storage/test_key_cache.py`` its key
    lookups, and ``tests/stateful`` drives both paths against one model.
    """

    async def poll(
        self, device_code_hash: bytes, *, client_id: str, now: datetime, policy: FlowPolicy
    ) -> PollDecision | None:
        """The repositories' :meth:`DeviceAuthorizationRepository.poll` in one statement:
        see :data:`POLL_CONTRACT`."""
        ...

    async def start_flow(
        self,
        new: NewDeviceAuthorization,
        *,
        requested_scope: tuple[str, ...] | None,
    ) -> tuple[str, ...] | None:
        """Store ``new`` as a pending flow, with its ``flow_started`` audit event, if
        ``new.client_id`` is a public client that may have ``requested_scope`` (None: the
        client's own scopes), and return the scope granted (``new.scope`` is ignored).
        Otherwise, or when a code collides, store nothing and return None."""
        ...

    async def key_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        """The key and its owner, possibly as remembered from an earlier lookup: an
        implementation may remember only what it hears every change of (a revocation,
        an account disabled) before it could answer again."""
        ...

    async def rehash_key(
        self,
        key_id: int,
        *,
        old_hash: bytes,
        new_hash: bytes,
        fingerprint: str,
        now: datetime,
        ip: str | None,
    ) -> bool:
        """:meth:`ApiKeyRepository.rehash` of a key found under a previous secret as it
        is used (a use, when it had one before); once it moved, every process forgets
        what it remembers of the key."""
        ...

    async def record_use(
        self, key_id: int, *, now: datetime, ip: str | None, not_since: datetime
    ) -> bool:
        """Write the key's last use if the stored one is older than ``not_since`` (or
        absent), with the ``key_first_used`` audit event when absent; False when another
        request wrote it first. What :meth:`key_with_owner` remembers of the key is
        forgotten either way."""
        ...

    async def close(self) -> None: ...
