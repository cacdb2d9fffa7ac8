"""Delivering the key revocations the operator's commands queued (and any the key
issuer failed to take): an asyncio task of each server process, started by the
lifespan (:meth:`devicelink.server.embed.DeviceLink.lifespan`) beside the periodic
purge and cancelled when the application stops. It drains at once, then every
``DEVICELINK_REVOCATION_DRAIN_INTERVAL`` seconds (0: at start-up only). Several
processes may drain together: each revocation is delivered by one of them, once (see
:mod:`devicelink.service.revocations`).
"""

from __future__ import annotations

import asyncio
import logging

from devicelink.runtime.wiring import Runtime
from devicelink.service.revocations import IssuerRevocations

log = logging.getLogger("devicelink.revocations")


def start_revocation_drain(runtime: Runtime) -> asyncio.Task[None]:
    revocations = runtime.keys.revocations
    interval = runtime.settings.revocation_drain_interval
    work = revocations.run_periodically(interval) if interval > 0 else _drain_once(revocations)
    return asyncio.create_task(work, name="devicelink-revocations")


async def _drain_once(revocations: IssuerRevocations) -> None:
    try:
        await revocations.drain()
    except Exception as exc:  # logged; the next start drains again
        log.warning("draining revocations at start-up failed (%s)", type(exc).__name__)


async def stop_revocation_drain(task: asyncio.Task[None]) -> None:
    """Cancel the task and wait until it has stopped (a delivery in flight rolls back
    and stays pending), before the engine it uses is disposed of."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: the drain only ends by cancellation, or at once
