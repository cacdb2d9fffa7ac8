"""The periodic purge each server process runs: an asyncio task started by the lifespan
(:meth:`devicelink.server.embed.DeviceLink.lifespan`) and cancelled when the application
stops; a failed run is logged and tried again at the next interval, never raised into
the server. ``DEVICELINK_PURGE_INTERVAL=0`` turns it off (then run ``devicelink purge``
from cron).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from devicelink.core.ports import Purger
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.service.clock import Clock, utc_now
from devicelink.service.maintenance import Maintenance
from devicelink.storage import SqlStore
from devicelink.storage.purge import SqlPurger


def build_maintenance(settings: Settings, purger: Purger, clock: Clock = utc_now) -> Maintenance:
    """The purge the settings describe (retentions and batch size)."""
    return Maintenance(
        purger,
        clock,
        code_retention=timedelta(seconds=settings.code_retention),
        key_retention=timedelta(seconds=settings.key_retention),
        audit_retention=timedelta(seconds=settings.audit_retention),
        batch_size=settings.purge_batch_size,
    )


def start_periodic_purge(runtime: Runtime, clock: Clock = utc_now) -> asyncio.Task[None] | None:
    """Start the periodic purge of this process; None when it is turned off or the
    store is not devicelink's SQL store (an embedding application's own)."""
    settings = runtime.settings
    store = runtime.store
    if settings.purge_interval <= 0 or not isinstance(store, SqlStore):
        return None
    maintenance = build_maintenance(settings, SqlPurger(store.engine), clock)
    return asyncio.create_task(
        maintenance.run_periodically(settings.purge_interval), name="devicelink-purge"
    )


async def stop_periodic_purge(task: asyncio.Task[None] | None) -> None:
    """Cancel the task and wait until it has stopped (a batch in flight rolls back),
    before the engine it uses is disposed of."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: run_periodically only ends by cancellation
