"""Maintenance: purge what has ended (DESIGN.md defect 7: rows were never purged).

What goes, each after its retention (settings):

- device authorizations expired more than ``code_retention`` ago (default a day: until
  then an expired device code still answers ``expired_token`` rather than
  ``invalid_grant``);
- same-device sign-in authorization codes expired more than ``code_retention`` ago,
  redeemed or not: a redeemed code's row is how a replay of it is recognised and the
  key it issued revoked (RFC 6749 section 4.1.2), so it is kept at least through the
  code's own lifetime, and a retention on top (an unknown code is ``invalid_grant`` all
  the same, but revokes nothing);
- API keys revoked or expired more than ``key_retention`` ago (default 30 days: the
  connected-devices page and ``devicelink keys list --all`` show them until then);
- browser sessions expired more than ``session_retention`` ago (default: at once);
- audit events older than ``audit_retention`` (default 90 days).

Each kind goes in batches of ``batch_size`` rows, each batch its own short transaction,
with a ``pause`` between batches so that requests always get the database in between:
a purge of a million rows never stalls a poll for longer than one batch.

Several processes: the periodic task first tries the purger's exclusive lock (a
PostgreSQL advisory lock, tried without waiting), so one process purges and the others
skip that run; and the batches themselves take rows ``FOR UPDATE SKIP LOCKED``, so a
purge that runs beside another (``devicelink purge`` during a periodic run) never waits
for it and never deletes a row twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from devicelink.core.ports import PURGE_KINDS, PurgeKind, Purger
from devicelink.service.clock import Clock, utc_now

log = logging.getLogger("devicelink.maintenance")

DEFAULT_CODE_RETENTION = timedelta(days=1)
DEFAULT_KEY_RETENTION = timedelta(days=30)
DEFAULT_SESSION_RETENTION = timedelta(0)
DEFAULT_AUDIT_RETENTION = timedelta(days=90)


@dataclass
class PurgeReport:
    """What one purge deleted (or, for a dry run, would delete), per kind."""

    deleted: dict[PurgeKind, int] = field(default_factory=lambda: dict.fromkeys(PURGE_KINDS, 0))
    batches: int = 0
    complete: bool = True
    """False when ``max_batches`` stopped the run before every kind was done."""

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def __add__(self, other: PurgeReport) -> PurgeReport:
        return PurgeReport(
            deleted={k: self.deleted[k] + other.deleted[k] for k in PURGE_KINDS},
            batches=self.batches + other.batches,
            complete=self.complete and other.complete,
        )


class Maintenance:
    def __init__(
        self,
        purger: Purger,
        clock: Clock = utc_now,
        *,
        code_retention: timedelta = DEFAULT_CODE_RETENTION,
        key_retention: timedelta = DEFAULT_KEY_RETENTION,
        session_retention: timedelta = DEFAULT_SESSION_RETENTION,
        audit_retention: timedelta = DEFAULT_AUDIT_RETENTION,
        batch_size: int = 500,
        pause: float = 0.01,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for name, retention in (
            ("code_retention", code_retention),
            ("key_retention", key_retention),
            ("session_retention", session_retention),
            ("audit_retention", audit_retention),
        ):
            if retention < timedelta(0):
                raise ValueError(f"{name} must not be negative")
        self._purger = purger
        self._clock = clock
        self._retention: dict[PurgeKind, timedelta] = {
            "device_authorizations": code_retention,
            "authorization_codes": code_retention,
            "api_keys": key_retention,
            "browser_sessions": session_retention,
            "audit_events": audit_retention,
        }
        self.batch_size = batch_size
        self.pause = pause

    def cutoffs(self, now: datetime) -> dict[PurgeKind, datetime]:
        """Per kind, the moment before which a row has ended long enough to go."""
        return {kind: now - self._retention[kind] for kind in PURGE_KINDS}

    async def purge_all(self, *, max_batches: int | None = None) -> PurgeReport:
        """Delete everything past its retention, batch after batch, until a batch comes
        back short; at most ``max_batches`` batches of each kind when given."""
        report = PurgeReport()
        for kind, before in self.cutoffs(self._clock()).items():
            batches = 0
            while True:
                if batches:
                    await asyncio.sleep(self.pause)  # let requests have the database
                deleted = await self._purger.purge_batch(kind, before=before, limit=self.batch_size)
                batches += 1
                report.deleted[kind] += deleted
                if deleted < self.batch_size:
                    break
                if max_batches is not None and batches >= max_batches:
                    report.complete = False
                    break
            report.batches += batches
        return report

    async def pending(self) -> PurgeReport:
        """What :meth:`purge_all` would delete now, deleting nothing (a dry run)."""
        report = PurgeReport()
        for kind, before in self.cutoffs(self._clock()).items():
            report.deleted[kind] = await self._purger.count(kind, before=before)
        return report

    async def run_once(self, *, max_batches: int | None = None) -> PurgeReport | None:
        """One periodic run: purge if this process gets the purge lock, else None."""
        async with self._purger.exclusive() as acquired:
            if not acquired:
                log.debug("purge skipped: another process is purging")
                return None
            report = await self.purge_all(max_batches=max_batches)
        if report.total:
            log.info(
                "purged %d rows (%s)",
                report.total,
                ", ".join(f"{kind} {n}" for kind, n in report.deleted.items() if n),
            )
        return report

    async def run_periodically(
        self, interval: float, *, jitter: float = 0.2, max_batches: int | None = None
    ) -> None:
        """Purge every ``interval`` seconds (give or take ``jitter`` of it, so processes
        started together drift apart), until cancelled. A failed run is logged, without
        its details (no statement parameters, no secrets), and tried again next time."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        while True:
            await asyncio.sleep(interval * random.uniform(1 - jitter, 1 + jitter))  # noqa: S311
            try:
                await self.run_once(max_batches=max_batches)
            except Exception as exc:  # CancelledError is not an Exception: it ends the loop
                log.warning(
                    "purge failed (%s); retrying in about %g s", type(exc).__name__, interval
                )
