"""``devicelink serving`` is logged once the application answers on the bound port, and
never by a start that cannot listen (issue 16)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.support.processes import clean_env, free_port, one_time_passwords
from tests.support.servers import Launcher, ServerProcess

SERVING = "devicelink serving"


def test_a_port_in_use_is_a_clear_error_and_never_logs_serving(
    workdir: Path, launch: Launcher
) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()  # another server of this test's own, on the port
        server = launch(port=port, env=clean_env(), cwd=workdir, wait_for=None)
        code = server.wait()
    assert code == 2, server.logs()
    assert f"devicelink: cannot listen on 127.0.0.1:{port}" in server.stderr()
    assert "choose another with --port" in server.stderr()
    assert SERVING not in server.logs()
    assert "Traceback" not in server.logs()
    # Nothing was made for a start that never served: no first account, no password shown.
    assert one_time_passwords(server.stderr()) == []


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_serving_is_logged_after_the_application_started(
    workers: int, workdir: Path, launch: Launcher
) -> None:
    server = launch("--workers", str(workers), env=clean_env(), cwd=workdir)
    records = _records_until_serving(server)
    started = [n for n, r in enumerate(records) if r["event"] == "Application startup complete."]
    (serving,) = [n for n, r in enumerate(records) if r["event"] == SERVING]
    assert len(started) == workers, server.logs()
    assert max(started) < serving, server.logs()
    assert records[serving]["pid"] == server.process.pid
    assert records[serving]["workers"] == workers
    assert server.stop() == 0, server.logs()


def _records_until_serving(server: ServerProcess, timeout: float = 40) -> list[dict[str, object]]:
    """The log once it says ``devicelink serving`` (the supervisor says it up to half a
    second after the workers have started)."""
    deadline = time.monotonic() + timeout
    while True:
        records = server.json_lines(strict=False)
        if any(r["event"] == SERVING for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)
