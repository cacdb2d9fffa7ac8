"""``devicelink serve --workers N``: several worker processes on one port, set up once."""

from __future__ import annotations

import os
import signal
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.support.http import approve, poll, run, sign_in, start_flow
from tests.support.processes import clean_env, one_time_passwords
from tests.support.servers import Launcher, ServerProcess

pytestmark = pytest.mark.slow


def test_two_workers_serve_a_complete_flow_with_the_command_line_settings(
    tmp_path: Path, workdir: Path, launch: Launcher
) -> None:
    # --data-dir somewhere else than the working directory: the workers must get it
    # (and the public URL serve computed from --host/--port) from the parent.
    data_dir = tmp_path / "elsewhere"
    server = launch("--workers", "2", "--data-dir", str(data_dir), env=clean_env(), cwd=workdir)

    workers = _started_workers(server, expected=2)
    assert server.process.pid not in workers
    assert (data_dir / "devicelink.db").is_file()
    assert (data_dir / "secret.key").is_file()
    assert list(workdir.iterdir()) == [], "a worker used the default data directory"
    # Migrations and the first account happen once, in the parent.
    (password,) = one_time_passwords(server.stderr())

    with (
        httpx.Client(base_url=server.base_url, timeout=10) as device,
        httpx.Client(base_url=server.base_url, timeout=10) as browser,
    ):
        flow = run(device, start_flow())
        assert flow["verification_uri"] == f"{server.base_url}/oauth/device/verify"
        assert run(device, poll(flow["device_code"])).json()["error"] == "authorization_pending"
        run(browser, sign_in("admin", password))
        # The link the device shows, code pre-filled; Continue, then Approve.
        run(browser, approve(flow["user_code"], page_url=flow["verification_uri_complete"]))
        granted = run(device, poll(flow["device_code"]))
        assert granted.status_code == 200, granted.text
        key = granted.json()["access_token"]
        me = device.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "admin"
        # Whichever worker answers /metrics counts what every worker did.
        for _ in range(4):
            metrics = device.get("/metrics").text
            assert _sample(metrics, 'devicelink_flows_total{outcome="started"}') == 1
            assert _sample(metrics, 'devicelink_flows_total{outcome="approved"}') == 1
            assert _sample(metrics, 'devicelink_polls_total{answer="authorization_pending"}') == 1
            assert _sample(metrics, 'devicelink_polls_total{answer="issued"}') == 1
            assert _sample(metrics, 'devicelink_keys_total{event="issued"}') == 1

    records = server.json_lines(strict=False)
    migrations = [r for r in records if str(r["event"]).startswith("Running upgrade")]
    assert {r["pid"] for r in migrations} == {server.process.pid}
    served_by = {r["pid"] for r in server.access_lines(strict=False)}
    assert served_by <= workers

    assert server.stop() == 0, server.logs()


def test_a_worker_that_dies_is_a_warning_and_is_replaced(workdir: Path, launch: Launcher) -> None:
    """uvicorn's supervisor starts another worker in its place; the death itself is a
    warning in devicelink's log (uvicorn says it at info), with the worker and its exit
    code. /metrics names every live worker's process (and only those) and the build."""
    server = launch("--workers", "2", env=clean_env(), cwd=workdir)
    workers = _started_workers(server, expected=2)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started

    deadline = time.monotonic() + 40
    while True:
        deaths = [r for r in server.json_lines(strict=False) if r["event"] == "worker process died"]
        if deaths or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(deaths) == 1, server.logs()
    (death,) = deaths
    assert death["level"] == "warning"
    assert death["worker_pid"] == victim
    assert death["exit_code"] == -signal.SIGKILL
    assert death["pid"] == server.process.pid  # the supervisor says it

    live = _started_workers(server, expected=3) - {victim}
    assert len(live) == 2
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        metrics = http.get("/metrics").text
    for pid in live:
        assert _sample(metrics, f'process_resident_memory_bytes{{pid="{pid}"}}') > 0, metrics
    assert f'pid="{victim}"' not in metrics
    assert _sample(metrics, f'devicelink_build_info{{version="{version("devicelink")}"}}') == 1
    server.assert_healthy()
    assert server.stop() == 0, server.logs()


def _started_workers(server: ServerProcess, expected: int, timeout: float = 40) -> set[int]:
    """The process ids of the workers that completed their start-up, once ``expected``
    of them have (the first one answers /healthz while the others are still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        started = {
            r["pid"]
            for r in server.json_lines(strict=False)
            if r["event"] == "Application startup complete."
        }
        if len(started) >= expected or time.monotonic() > deadline:
            assert len(started) == expected, server.logs()
            return started
        time.sleep(0.1)


def _sample(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0
