"""Graceful shutdown of ``devicelink serve``: readiness turns false first.

On SIGTERM (or SIGINT) the runtime's ``draining`` flag is set at once, so ``/readyz``
answers 503 from then on. With ``DEVICELINK_SHUTDOWN_DELAY`` the server keeps serving
for that many seconds (a load balancer polling ``/readyz`` takes it out of rotation
meanwhile) before uvicorn's own graceful shutdown starts: the listener closes, requests
in flight get ``DEVICELINK_GRACEFUL_TIMEOUT`` seconds to finish, then the application
stops. Ctrl-C (SIGINT) skips the delay; a second SIGTERM ends it.

The hook wraps the signal handlers uvicorn installs (in each worker process) while the
application runs, and puts uvicorn's back when the application stops.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import FastAPI

from devicelink.runtime.logging import get_logger
from devicelink.runtime.wiring import Runtime

log = get_logger("devicelink.shutdown")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def drain_on_signals(app: FastAPI, *, delay: float) -> None:
    """Wrap ``app``'s lifespan so that a stop signal first turns readiness false."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            runtime: Runtime = app_.state.devicelink
            restore = _hook_signals(runtime, delay)
            try:
                yield state
            finally:
                runtime.draining = True
                restore()

    app.router.lifespan_context = lifespan


def _hook_signals(runtime: Runtime, delay: float) -> Callable[[], None]:
    """Install the handlers; the function that removes them."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    if not all(callable(handler) for handler in previous.values()):
        return lambda: None  # not under uvicorn's signal handling: leave them alone
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def forward(sig: int, frame: FrameType | None = None) -> None:
        handler = previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)

    def announce_and_wait(sig: int) -> None:
        log.info("draining: /readyz answers 503; stopping after the delay", seconds=delay)
        timers.append(loop.call_later(delay, forward, sig))

    def on_signal(sig: int, frame: FrameType | None) -> None:
        first = not runtime.draining
        runtime.draining = True
        if first and sig == signal.SIGTERM and delay > 0:
            loop.call_soon_threadsafe(announce_and_wait, sig)
        else:
            forward(sig, frame)

    for sig in _SIGNALS:
        signal.signal(sig, on_signal)

    def restore() -> None:
        for timer in timers:
            timer.cancel()
        for sig, handler in previous.items():
            if signal.getsignal(sig) is on_signal:
                signal.signal(sig, handler)

    return restore
