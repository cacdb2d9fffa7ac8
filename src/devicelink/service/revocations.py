"""Every revocation reaches the key issuer: the outbox of
:class:`devicelink.core.ports.IssuerRevocationRepository`, delivered.

A revocation, from any door, writes its outbox row in the transaction that marks the
key revoked (:func:`devicelink.service.keys.revoke_key`). Then:

- in the process that runs devicelink (a CLI's logout, the devices page), the service
  delivers it at once, once the revocation has committed (:meth:`IssuerRevocations.deliver`);
- the operator's commands run in a process of their own, without the host's issuer:
  their revocations wait in the outbox until the server process drains it, at start-up
  and every few seconds (:meth:`IssuerRevocations.run_periodically`, started by the
  lifespan; ``DEVICELINK_REVOCATION_DRAIN_INTERVAL``).

Delivering one is a transaction of its own: the row is claimed (deleted, a row another
process is delivering skipped), the issuer's ``revoke`` runs, and both commit together.
A failure rolls the claim back and makes the row due again later (:data:`RETRY_START`
doubling up to :data:`RETRY_CAP`); once it has committed the issuer is never called
again for that key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from devicelink.core.events import DeviceLinkEvent, EventKind
from devicelink.core.models import PendingRevocation
from devicelink.core.ports import KeyIssuer, StorageUnavailable, Store
from devicelink.service.clock import Clock, utc_now
from devicelink.service.events import NO_EVENTS, EventSink

log = logging.getLogger("devicelink.revocations")

RETRY_START = timedelta(seconds=10)
RETRY_CAP = timedelta(hours=1)
DRAIN_BATCH = 100


def retry_at(now: datetime, failed_attempts: int) -> datetime:
    """When a revocation the issuer failed ``failed_attempts`` times is due again."""
    delay: timedelta = RETRY_START * 2 ** min(failed_attempts - 1, 20)
    return now + min(delay, RETRY_CAP)


class IssuerRevocations:
    def __init__(
        self,
        store: Store,
        issuer: KeyIssuer,
        clock: Clock = utc_now,
        *,
        events: EventSink = NO_EVENTS,
    ) -> None:
        self._store = store
        self._issuer = issuer
        self._clock = clock
        self._events = events

    async def deliver(self, revocation_ids: Iterable[int]) -> int:
        """Tell the issuer of these pending revocations now; how many it took. Never
        raises: what fails stays pending for the next drain."""
        delivered = 0
        for revocation_id in revocation_ids:
            try:
                if await self._deliver_one(revocation_id):
                    delivered += 1
            except StorageUnavailable as exc:
                log.warning("revocations left pending: the database is unavailable (%s)", exc)
                break
        return delivered

    async def drain(self, *, batch: int = DRAIN_BATCH) -> int:
        """Deliver every revocation due now, batch after batch; how many the issuer took."""
        delivered = 0
        while True:
            async with self._store.transaction() as tx:
                due = await tx.issuer_revocations.due(now=self._clock(), limit=batch)
            delivered += await self.deliver(pending.id for pending in due)
            if len(due) < batch:
                return delivered

    async def run_periodically(self, interval: float) -> None:
        """Drain now, then every ``interval`` seconds, until cancelled; a failed run is
        logged and tried again at the next one."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        while True:
            try:
                delivered = await self.drain()
                if delivered:
                    log.info("told the key issuer of %d revocations", delivered)
            except Exception as exc:  # CancelledError is not an Exception: it ends the loop
                log.warning("draining revocations failed (%s); retrying", type(exc).__name__)
            await asyncio.sleep(interval)

    async def _deliver_one(self, revocation_id: int) -> bool:
        now = self._clock()
        pending: PendingRevocation | None = None
        username: str | None = None
        try:
            async with self._store.transaction() as tx:
                pending = await tx.issuer_revocations.claim(revocation_id, now=now)
                if pending is None:
                    return False  # delivered already, or being delivered elsewhere
                await self._issuer.revoke(tx, key=pending.key, now=now)
                owner = await tx.users.get(pending.key.user_id)
                username = owner.username if owner is not None else None
        except StorageUnavailable:
            raise
        except Exception as exc:  # the issuer's failure: retried later, never lost
            if pending is None:
                raise
            attempts = pending.attempts + 1
            until = retry_at(now, attempts)
            log.warning(
                "the key issuer failed to revoke key %d (%s, attempt %d); retrying at %s",
                pending.key.id,
                type(exc).__name__,
                attempts,
                until.isoformat(timespec="seconds"),
            )
            async with self._store.transaction() as tx:
                await tx.issuer_revocations.postpone(
                    revocation_id, until=until, error=f"{type(exc).__name__}: {exc}"
                )
            return False
        key = pending.key
        await self._events.emit(
            DeviceLinkEvent.about_key(
                EventKind.KEY_REVOKED, key, now=key.revoked_at or now, username=username
            )
        )
        return True
