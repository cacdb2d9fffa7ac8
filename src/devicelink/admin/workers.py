"""uvicorn for ``devicelink serve``: with several workers, a worker's death is a warning.

uvicorn's supervisor (:class:`uvicorn.supervisors.Multiprocess`) starts a new worker in
place of one that exited or stopped answering its health check, and says so at info
level (``Child process [PID] died``), which ``DEVICELINK_LOG_LEVEL=warning`` drops. A
worker that dies has crashed, been killed (out of memory) or hung: :class:`Supervisor`
is uvicorn's supervisor, and also logs each death as a warning in devicelink's log.
"""

from __future__ import annotations

import contextlib
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from devicelink.runtime.logging import get_logger


def run_server(app: str, *, workers: int, **options: Any) -> None:
    """:func:`uvicorn.run` with the same arguments; several workers under
    :class:`Supervisor`."""
    if workers <= 1:
        uvicorn.run(app, workers=workers, **options)
        return
    config = uvicorn.Config(app, workers=workers, **options)
    sock = config.bind_socket()
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        Supervisor(config, sockets=[sock]).run()


class Supervisor(Multiprocess):
    """uvicorn's supervisor, which also logs a worker's death as a warning."""

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        for old, new in zip(before, self.processes, strict=False):
            if new is not old:  # it died (or hung and was killed) and was replaced
                get_logger("devicelink").warning(
                    "worker process died",
                    worker_pid=old.pid,
                    exit_code=old.exitcode,
                    replaced_by=new.pid,
                )
