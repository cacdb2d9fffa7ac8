"""Helpers of the operations tests: real ``devicelink serve`` processes over real HTTP.

Adapted from tests/e2e/e2e_support.py (start_server there takes no extra arguments,
and these tests need ``--workers`` and signals). Server output goes to files, so no
pipe is ever left open. Imported by name (``from ops_support import ...``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

DEVICELINK = Path(sys.executable).with_name("devicelink")
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
STARTUP_TIMEOUT = 40.0
STOP_TIMEOUT = 15.0
STRONG_SECRET = "ops-" + secrets.token_urlsafe(40)
PASSWORD = "correct horse battery staple"
ADMIN_POSTGRES_URL = os.environ.get(
    "DEVICELINK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DEVICELINK_TEST_REDIS", "redis://127.0.0.1:6379")

RUNNING: list[ServerProcess] = []
"""Servers started and not yet stopped, for the failure report."""


# --- processes -------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ``DEVICELINK_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_devicelink(
    *args: str, env: Mapping[str, str], cwd: Path, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one short ``devicelink`` command to completion, its output captured."""
    assert DEVICELINK.exists(), f"{DEVICELINK} is missing: install the package in this venv"
    return subprocess.run(
        [str(DEVICELINK), *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(eq=False)
class ServerProcess:
    """One running ``devicelink serve``."""

    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def logs(self) -> str:
        return f"--- stderr ---\n{self.stderr()}--- stdout ---\n{self.stdout()}"

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
        """SIGTERM (graceful shutdown), SIGKILL if it lingers; the exit code."""
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


class Launcher:
    """Starts ``devicelink serve`` processes and stops them all at the end."""

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
        """``devicelink serve --host 127.0.0.1 --port PORT *args``, once it answers
        ``wait_for`` (None: at once; then call :meth:`wait_until_answering`)."""
        port = port or free_port()
        name = f"serve-{len(self._servers) + 1}"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path = self._log_dir / f"{name}.stdout"
        stderr_path = self._log_dir / f"{name}.stderr"
        command = [str(DEVICELINK), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            # The child gets its own copies of the descriptors; ours close right away.
            process = subprocess.Popen(
                command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        server = ServerProcess(process, port, stdout_path, stderr_path)
        RUNNING.append(server)
        self._servers.append(server)
        if wait_for is not None:
            _wait_until_answering(server, wait_for)
        return server

    @staticmethod
    def wait_until_answering(server: ServerProcess, path: str = "/healthz") -> None:
        _wait_until_answering(server, path)

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


def _wait_until_answering(server: ServerProcess, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
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


def one_time_passwords(output: str) -> list[str]:
    """The passwords ``serve`` printed for a first local account it created."""
    return re.findall(r"^\s*password: (\S+)\s*$", output, flags=re.MULTILINE)


# --- the device and the browser, over HTTP ------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match, f"no csrf_token on the page ({page.status_code}):\n{page.text[:500]}"
    return match.group(1)


def start_flow(http: httpx.Client) -> dict[str, Any]:
    response = http.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def poll(http: httpx.Client, device_code: str) -> httpx.Response:
    return http.post(
        "/oauth/device/token",
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": device_code,
            "client_id": "devicelink-cli",
        },
    )


def sign_in(browser: httpx.Client, username: str, password: str) -> None:
    """Fill in the sign-in form, as a user would."""
    page = browser.get("/login")
    assert page.status_code == 200, page.text
    answer = browser.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page)},
    )
    assert answer.status_code in (302, 303), f"{answer.status_code}: {answer.text[:300]}"


def enter_code(
    browser: httpx.Client, user_code: str, page_url: str = "/oauth/device/verify"
) -> httpx.Response:
    """Type ``user_code`` on the code page and press Continue; the answer."""
    page = browser.get(page_url)
    assert page.status_code == 200, page.text
    return browser.post(
        "/oauth/device/verify", data={"user_code": user_code, "csrf_token": csrf_of(page)}
    )


def approve(browser: httpx.Client, user_code: str, page_url: str = "/oauth/device/verify") -> None:
    """Continue with ``user_code``, then Approve on the confirm page."""
    confirm = enter_code(browser, user_code, page_url)
    assert confirm.status_code == 200, confirm.text
    assert "Approve" in confirm.text
    done = browser.post(
        "/oauth/device/decide", data={"action": "approve", "csrf_token": csrf_of(confirm)}
    )
    assert done.status_code == 200, done.text
    assert "Device approved" in done.text


def add_user(env: Mapping[str, str], cwd: Path, name: str, password: str = PASSWORD) -> None:
    result = run_devicelink(
        "users", "add", name, "--password-stdin", env=env, cwd=cwd, stdin=password + "\n"
    )
    assert result.returncode == 0, result.stderr


# --- PostgreSQL ------------------------------------------------------------------------


def _admin_dsn() -> str:
    return ADMIN_POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(_admin_dsn(), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (dropped afterwards): its URL."""
    name = f"devicelink_ops_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{_admin_dsn().rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


def pg_fetch(url: str, query: str) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(url, query))
