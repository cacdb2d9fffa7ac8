"""Maintenance: purging what has ended (DESIGN.md defect 7)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Literal, Protocol

PurgeKind = Literal[
    "device_authorizations", "authorization_codes", "api_keys", "browser_sessions", "audit_events"
]
PURGE_KINDS: tuple[PurgeKind, ...] = (
    "device_authorizations",
    "authorization_codes",
    "api_keys",
    "browser_sessions",
    "audit_events",
)


class Purger(Protocol):
    """Deletes rows that have ended, a small batch at a time.

    What ended "before ``before``" means per kind: device authorizations, authorization
    codes (redeemed or not) and browser sessions whose ``expires_at`` is earlier; API
    keys revoked or expired earlier; audit events that occurred earlier. The caller
    chooses ``before`` (the retention).
    """

    async def purge_batch(self, kind: PurgeKind, *, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` such rows in one short transaction of its own and
        return how many went. Rows another transaction holds (another purger, a poll)
        are skipped, never waited for, so concurrent purgers never delete a row twice."""
        ...

    async def count(self, kind: PurgeKind, *, before: datetime) -> int:
        """How many rows a purge with this ``before`` would delete (nothing is deleted)."""
        ...

    def exclusive(self) -> AbstractAsyncContextManager[bool]:
        """Try, without waiting, to become the one process purging: yields True when
        this process holds the purge lock until the block ends, False when another does."""
        ...
