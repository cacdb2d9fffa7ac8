"""Helpers of the end-to-end tests: real ``devicelink serve`` processes over real HTTP.

A server is started with :func:`start_server` (or the ``launch`` fixture of conftest.py,
which stops every server it started when the test ends). Its stdout and stderr go to
files, so no pipe is ever left open; the logs of the servers still running when a test
fails are attached to its report (see conftest.py).

Imported by name (``from e2e_support import ...``): test files outside a package share
the module name ``conftest``, so helpers cannot be imported from there.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

DEVICELINK = Path(sys.executable).with_name("devicelink")
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
GRACEFUL_EXIT = (0, -signal.SIGTERM)
"""Exit codes of a server stopped with SIGTERM: uvicorn shuts down, then re-raises it."""

RUNNING: list[ServerProcess] = []
"""Servers started and not yet stopped, for the failure report."""


# --- processes -------------------------------------------------------------------------


def devicelink_command() -> list[str]:
    """The installed console script of the venv running the tests."""
    assert DEVICELINK.exists(), f"{DEVICELINK} is missing: install the package in this venv"
    return [str(DEVICELINK)]


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
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run one short ``devicelink`` command to completion, its output captured."""
    return subprocess.run(
        [*devicelink_command(), *args],
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
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
    cwd: Path
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

    def stop(self) -> int:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if it lingers; the exit code."""
        if not self._stopped:
            self._stopped = True
            if self in RUNNING:
                RUNNING.remove(self)
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT)
        return int(self.process.returncode)


def start_server(
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_dir: Path,
    port: int | None = None,
    name: str = "serve",
) -> ServerProcess:
    """Start ``devicelink serve --host 127.0.0.1 --port PORT`` and wait for ``/healthz``.

    Fails the test with the server's output when it exits or does not answer in time.
    The caller must :meth:`ServerProcess.stop` it (the ``launch`` fixture does).
    """
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        # The child gets its own copies of the descriptors; ours close right away.
        process = subprocess.Popen(
            [*devicelink_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    server = ServerProcess(process, port, cwd, stdout_path, stderr_path)
    RUNNING.append(server)
    try:
        _wait_until_healthy(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                pytest.fail(
                    f"devicelink serve exited with {server.process.returncode} before "
                    f"answering /healthz\n{server.logs()}",
                    pytrace=False,
                )
            try:
                response = http.get("/healthz")
            except httpx.TransportError as exc:
                last_error = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last_error = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.05)
    pytest.fail(
        f"devicelink serve did not answer /healthz within {STARTUP_TIMEOUT:.0f} s "
        f"({last_error})\n{server.logs()}",
        pytrace=False,
    )


class Launcher:
    """Starts servers and stops them all at the end (see :func:`launcher`)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._servers: list[ServerProcess] = []

    def __call__(
        self, *, env: Mapping[str, str], cwd: Path, port: int | None = None
    ) -> ServerProcess:
        name = f"serve-{len(self._servers) + 1}"
        server = start_server(env=env, cwd=cwd, log_dir=self._log_dir, port=port, name=name)
        self._servers.append(server)
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


def one_time_passwords(output: str) -> list[str]:
    """The passwords ``serve`` printed for a first local account it created."""
    return re.findall(r"^\s*password: (\S+)\s*$", output, flags=re.MULTILINE)


# --- the flow --------------------------------------------------------------------------


async def approve_through_service(
    database_url: str, secret: bytes, user_code: str, username: str = "alice"
) -> int:
    """Approve ``user_code`` as ``username`` (created when missing) through the service
    layer, against the server's own database; the user's id."""
    from devicelink.core.codes import CodeHasher
    from devicelink.service import DeviceFlowService, StoredKeyIssuer
    from devicelink.service.clock import utc_now
    from devicelink.storage import SqlStore, create_engine_for_url

    store = SqlStore(create_engine_for_url(database_url))
    try:
        hasher = CodeHasher(secret)
        flows = DeviceFlowService(store, hasher, StoredKeyIssuer())
        async with store.transaction() as tx:
            user = await tx.users.get_by_username(username)
            if user is None:
                user = await tx.users.add(username, None, utc_now())
        verdict = await flows.approve(user_code, user_id=user.id)
        assert verdict == "ok", f"approving {user_code} gave {verdict!r}"
        return user.id
    finally:
        await store.dispose()


def device_code_hash(secret: bytes, device_code: str) -> bytes:
    from devicelink.core.codes import CodeHasher

    return CodeHasher(secret).device_code(device_code)


def token_form(device_code: str, client_id: str = "devicelink-cli") -> dict[str, str]:
    return {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id}


# --- PostgreSQL ------------------------------------------------------------------------


def dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq/asyncpg DSN."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def pg_fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def pg_dump(url: str) -> str:
    """``pg_dump -h HOST -U USER DBNAME`` of the database at ``url``, as text."""
    from sqlalchemy.engine import make_url

    parsed = make_url(dsn(url))
    binary = shutil.which("pg_dump")
    assert binary, "pg_dump is not on PATH"
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    result = subprocess.run(
        [
            binary,
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "--no-password",
            str(parsed.database),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"pg_dump failed ({result.returncode}): {result.stderr}"
    return result.stdout
