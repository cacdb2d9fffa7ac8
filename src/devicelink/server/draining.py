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
    return _DrainingSignals(runtime, delay, previous).restore


class _DrainingSignals:
    """The stop signals while the application runs: readiness turns false at once, and
    the first SIGTERM reaches uvicorn's handler only after ``delay`` seconds."""

    def __init__(self, runtime: Runtime, delay: float, previous: dict[signal.Signals, Any]) -> None:
        self.runtime = runtime
        self.delay = delay
        self.previous = previous
        self.loop = asyncio.get_running_loop()
        self.timers: list[asyncio.TimerHandle] = []
        self.handler = self.on_signal  # one bound method, to recognise it when restoring
        for sig in previous:
            signal.signal(sig, self.handler)

    def forward(self, sig: int, frame: FrameType | None = None) -> None:
        handler = self.previous[signal.Signals(sig)]
        if callable(handler):
            handler(sig, frame)

    def announce_and_wait(self, sig: int) -> None:
        log.info("draining: /readyz answers 503; stopping after the delay", seconds=self.delay)
        self.timers.append(self.loop.call_later(self.delay, self.forward, sig))

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        first = not self.runtime.draining
        self.runtime.draining = True
        if first and sig == signal.SIGTERM and self.delay > 0:
            self.loop.call_soon_threadsafe(self.announce_and_wait, sig)
        else:
            self.forward(sig, frame)

    def restore(self) -> None:
        for timer in self.timers:
            timer.cancel()
        for sig, handler in self.previous.items():
            if signal.getsignal(sig) is self.handler:
                signal.signal(sig, handler)
