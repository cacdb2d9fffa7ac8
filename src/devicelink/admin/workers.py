"""uvicorn for ``devicelink serve``: with several workers, a worker's death is a warning.

uvicorn's supervisor (:class:`uvicorn.supervisors.Multiprocess`) starts a new worker in
place of one that exited or stopped answering its health check, and says so at info
level (``Child process [PID] died``), which ``DEVICELINK_LOG_LEVEL=warning`` drops. A
worker that dies has crashed, been killed (out of memory) or hung: :class:`Supervisor`
is uvicorn's supervisor, and also logs each death as a warning in devicelink's log.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from devicelink.runtime.logging import get_logger


class PortUnavailable(Exception):
    """The address ``serve`` was given cannot be listened on (in use, or not allowed);
    uvicorn has logged the system's reason."""


@dataclass
class Listener:
    """uvicorn's configuration and the socket it listens on, bound before anything else
    is done for the start (the first account is created only when the port is ours)."""

    config: uvicorn.Config
    sock: socket.socket


def listen(app: str, *, workers: int, **options: Any) -> Listener:
    """Bind the address of ``options`` (:func:`uvicorn.run`'s arguments), or
    :class:`PortUnavailable`."""
    config = uvicorn.Config(app, workers=workers, **options)
    try:
        sock = config.bind_socket()
    except SystemExit as exc:  # uvicorn logs the OSError, then exits: say what to do
        raise PortUnavailable(f"{config.host}:{config.port}") from exc
    return Listener(config, sock)


def run_server(listener: Listener, *, on_serving: Callable[[], None]) -> None:
    """:func:`uvicorn.run` on the bound socket; several workers under :class:`Supervisor`.
    ``on_serving`` is called once requests are served: when the application has started
    (uvicorn's ``started``), of every worker when there are several."""
    config, sockets = listener.config, [listener.sock]
    if config.workers <= 1:
        server = _Server(config, on_serving)
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
            server.run(sockets=sockets)
        if not server.started:  # as uvicorn.run: the application failed to start
            sys.exit(STARTUP_FAILURE)
        return
    with contextlib.suppress(KeyboardInterrupt):
        Supervisor(config, sockets=sockets, on_serving=on_serving).run()


class _Server(uvicorn.Server):
    """uvicorn's server, which says when it serves."""

    def __init__(self, config: uvicorn.Config, on_serving: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_serving = on_serving

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the lifespan's start-up is done and the socket is served
            self._on_serving()


class Supervisor(Multiprocess):
    """uvicorn's supervisor, which also logs a worker's death as a warning."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        on_serving: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(config, sockets=sockets)
        self._on_serving: Callable[[], None] | None = on_serving

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        # Checked at each round of the supervisor's loop (every half second) until every
        # worker's application has started: then the server serves.
        announce = self._on_serving
        if announce is None or self.should_exit.is_set():
            return
        if all(process.is_ready(timeout=1) for process in self.processes):
            self._on_serving = None
            announce()
        for old, new in zip(before, self.processes, strict=False):
            if new is not old:  # it died (or hung and was killed) and was replaced
                get_logger("devicelink").warning(
                    "worker process died",
                    worker_pid=old.pid,
                    exit_code=old.exitcode,
                    replaced_by=new.pid,
                )
