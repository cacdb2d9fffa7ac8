"""``devicelink serve`` processes over real HTTP on loopback.

A server starts on a free port and is waited for until it answers; its stdout and stderr
go to files, so no pipe is ever left open; it stops on SIGTERM (SIGKILL if it lingers).
:data:`RUNNING` lists the servers not yet stopped: tests/conftest.py attaches their
output to the report of a failed test.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import devicelink_command, free_port

STRONG_SECRET = "test-" + secrets.token_urlsafe(40)
"""A DEVICELINK_SECRET_KEY strong enough outside development."""
STARTUP_TIMEOUT = 40.0
STOP_TIMEOUT = 15.0
GRACEFUL_EXIT = (0, -signal.SIGTERM)
"""Exit codes of a server stopped with SIGTERM: uvicorn shuts down, then re-raises it."""
CRASH_MARKERS = ("Traceback", "Exception in ASGI application", '"level": "error"')
"""What a healthy server never writes, whatever it was sent."""

_ALARMING = re.compile(r'"level": "(warning|error|critical)"')

RUNNING: list[ServerProcess] = []


@dataclass(eq=False)
class ServerProcess:
    """One running ``devicelink serve``."""

    process: subprocess.Popen[bytes]
    port: int
    cwd: Path
    env: Mapping[str, str]
    stdout_path: Path
    stderr_path: Path
    _stopped: bool = field(default=False, repr=False)
    _checked: int = field(default=0, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """Its ``DEVICELINK_DATABASE_URL`` (a KeyError for the embedded default)."""
        return self.env["DEVICELINK_DATABASE_URL"]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def logs(self) -> str:
        return f"--- stderr ---\n{self.stderr()}--- stdout ---\n{self.stdout()}"

    def log_excerpt(self, tail: int = 60) -> str:
        """Its output for a failed test's report: whole, or when long (a fuzz run's) its
        warnings and errors, then its last lines."""
        lines = self.stderr().splitlines()
        if len(lines) <= 3 * tail:
            return self.logs()
        alarming = [line for line in lines if _ALARMING.search(line)]
        return "\n".join(
            [
                f"--- {len(alarming)} warnings and errors (the last {tail}) ---",
                *alarming[-tail:],
                f"--- the last {tail} of {len(lines)} lines of stderr ---",
                *lines[-tail:],
            ]
        )

    def json_lines(self, *, strict: bool = True) -> list[dict[str, Any]]:
        """Every line of standard error, parsed: each one must be a JSON object (not
        strict: lines that do not start with ``{``, such as the first account's
        password notice in development, are skipped)."""
        records = []
        for line in self.stderr().splitlines():
            if line.strip() and (strict or line.startswith("{")):
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pytest.fail(f"a log line is not JSON: {line!r}", pytrace=False)
        return records

    def access_lines(self, *, strict: bool = True) -> list[dict[str, Any]]:
        return [r for r in self.json_lines(strict=strict) if r.get("logger") == "devicelink.access"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def assert_healthy(self) -> None:
        """Still running, answering, and it wrote no traceback or error line since the
        last check."""
        assert self.alive(), f"devicelink serve died\n{self.logs()}"
        with httpx.Client(base_url=self.base_url, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
        output = self.stderr()
        fresh, self._checked = output[self._checked :], len(output)
        for marker in CRASH_MARKERS:
            assert marker not in fresh, f"{marker!r} in the server's output\n{fresh}"

    def forget_output(self) -> None:
        """Later health checks only look at what the server writes from now on."""
        self._checked = len(self.stderr())

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit code, once the process has exited (killed if it takes longer)."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"devicelink serve still ran after {timeout} s\n{self.logs()}")
        self._forget()
        return int(self.process.returncode)

    def stop(self) -> int:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it lingers; the exit code."""
        if not self._stopped:
            self._forget()
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT)
        return int(self.process.returncode)

    def _forget(self) -> None:
        self._stopped = True
        if self in RUNNING:
            RUNNING.remove(self)


def start_server(
    *args: str,
    env: Mapping[str, str],
    cwd: Path,
    log_dir: Path,
    port: int | None = None,
    name: str = "serve",
    wait_for: str | None = "/healthz",
) -> ServerProcess:
    """``devicelink serve --host 127.0.0.1 --port PORT *args``, once it answers
    ``wait_for`` (None: at once; then call :func:`wait_until_answering`). The caller
    stops it (a :class:`Launcher` does)."""
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    command = [*devicelink_command(), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        # The child gets its own copies of the descriptors; ours close right away.
        process = subprocess.Popen(
            command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    server = ServerProcess(process, port, cwd, dict(env), stdout_path, stderr_path)
    RUNNING.append(server)
    if wait_for is not None:
        wait_until_answering(server, wait_for)
    return server


def wait_until_answering(server: ServerProcess, path: str = "/healthz") -> None:
    """Wait until ``path`` answers 200; stop the server and fail the test with its
    output when it exits first or does not answer in time."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not server.alive():
                server.stop()
                pytest.fail(
                    f"devicelink serve exited with {server.process.returncode} before "
                    f"answering {path}\n{server.logs()}",
                    pytrace=False,
                )
            try:
                response = http.get(path)
            except httpx.TransportError as exc:
                last_error = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last_error = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.05)
    server.stop()
    pytest.fail(
        f"devicelink serve did not answer {path} within {STARTUP_TIMEOUT:.0f} s "
        f"({last_error})\n{server.logs()}",
        pytrace=False,
    )


class Launcher:
    """Starts servers, their logs named ``serve-1``, ``serve-2``...; stops them all at
    the end (see :func:`launcher`)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._servers: list[ServerProcess] = []

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str],
        cwd: Path,
        port: int | None = None,
        wait_for: str | None = "/healthz",
    ) -> ServerProcess:
        """See :func:`start_server`."""
        name = f"serve-{len(self._servers) + 1}"
        server = start_server(
            *args, env=env, cwd=cwd, log_dir=self._log_dir, port=port, name=name, wait_for=None
        )
        self._servers.append(server)
        if wait_for is not None:
            wait_until_answering(server, wait_for)
        return server

    def stop_all(self) -> None:
        for server in reversed(self._servers):
            server.stop()


@contextmanager
def launcher(log_dir: Path) -> Iterator[Launcher]:
    launch = Launcher(log_dir)
    try:
        yield launch
    finally:
        launch.stop_all()


def attach_logs(report: pytest.TestReport) -> None:
    """Add the output of every server still running to a failed test's report."""
    if report.failed:
        for server in list(RUNNING):
            report.sections.append(
                (f"devicelink serve on port {server.port} ({report.when})", server.log_excerpt())
            )
