"""Graceful shutdown of a real ``devicelink serve`` on SIGTERM: readiness turns false
first, requests in flight finish, and the process exits 0."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import clean_env
from tests.support.raw_http import read_until_closed
from tests.support.servers import STRONG_SECRET, Launcher

pytestmark = pytest.mark.slow


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        DEVICELINK_DATABASE_URL=f"sqlite:///{workdir / 'shutdown.db'}",
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_LOG_FORMAT="json",
        **extra,
    )


def test_sigterm_turns_readiness_false_while_the_server_still_serves_then_exits_0(
    workdir: Path, launch: Launcher
) -> None:
    delay = 2.0
    server = launch(
        env=_env(workdir, DEVICELINK_SHUTDOWN_DELAY=str(delay), DEVICELINK_GRACEFUL_TIMEOUT="5"),
        cwd=workdir,
        wait_for="/readyz",
    )
    signalled = time.monotonic()
    server.signal()

    ready_statuses = []
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        deadline = signalled + 1.0
        while time.monotonic() < deadline:
            ready_statuses.append(http.get("/readyz").status_code)
            if ready_statuses[-1] == 503:
                break
            time.sleep(0.02)
        assert ready_statuses[-1] == 503, ready_statuses
        answer = http.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["error"] == "temporarily_unavailable"
        # Until the delay is over, everything else is still served: a load balancer has
        # the time to stop sending traffic, and nothing in flight is cut.
        assert http.get("/healthz").status_code == 200
        flow = http.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        assert flow.status_code == 200, flow.text
        assert time.monotonic() - signalled < delay

    assert server.wait(timeout=delay + 10) == 0, server.logs()
    stopped_after = time.monotonic() - signalled
    assert delay <= stopped_after < delay + 10
    events = [r["event"] for r in server.json_lines()]
    assert any(str(e).startswith("draining") for e in events), events
    assert "Application shutdown complete." in events


def test_a_request_in_flight_at_sigterm_is_answered_before_the_process_exits(
    workdir: Path, launch: Launcher
) -> None:
    server = launch(env=_env(workdir, DEVICELINK_GRACEFUL_TIMEOUT="10"), cwd=workdir)
    body = b"client_id=devicelink-cli"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        # A slow client: the headers and half of the body, then SIGTERM.
        conn.sendall(
            b"POST /oauth/device/authorize HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            b"X-Request-ID: in-flight\r\n\r\n" + body[:10]
        )
        time.sleep(0.5)
        server.signal()
        _wait_until_refused(server.port)  # the listener is closed: shutdown has begun
        assert server.process.poll() is None, "it exited with a request in flight"

        conn.sendall(body[10:])
        response = read_until_closed(conn)

    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:300]
    assert b"connection: close" in head.lower()
    assert "device_code" in json.loads(payload)
    assert server.wait(timeout=10) == 0, server.logs()
    (line,) = [r for r in server.access_lines() if r["request_id"] == "in-flight"]
    assert line["status"] == 200


def _wait_until_refused(port: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            return
        time.sleep(0.05)
    pytest.fail("the server still accepted connections after SIGTERM")


def test_while_draining_every_answer_closes_its_keep_alive_connection(
    workdir: Path, launch: Launcher
) -> None:
    """A proxy's pooled connection must not carry the next poll into a shutdown: nginx
    does not retry a POST whose connection was reset (a 502 for the device)."""
    server = launch(
        env=_env(workdir, DEVICELINK_SHUTDOWN_DELAY="3", DEVICELINK_GRACEFUL_TIMEOUT="5"),
        cwd=workdir,
        wait_for="/readyz",
    )
    with httpx.Client(base_url=server.base_url, timeout=5) as http:
        before = http.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        assert before.headers.get("connection", "keep-alive").lower() != "close"
        server.signal()
        deadline = time.monotonic() + 1.0
        while http.get("/readyz").status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.02)
        # The fast path (a poll) and the full stack (a page) both say so while draining.
        poll = http.post(
            "/oauth/device/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "client_id": "devicelink-cli",
                "device_code": before.json()["device_code"],
            },
        )
        assert poll.json()["error"] == "authorization_pending"
        assert poll.headers["connection"] == "close"
        assert http.get("/healthz").headers["connection"] == "close"
    assert server.wait(timeout=15) == 0, server.logs()
