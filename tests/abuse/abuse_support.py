"""Helpers of the abuse tests: real ``devicelink serve`` processes attacked over loopback.

Adapted from tests/e2e/e2e_support.py (``from e2e_support import`` only works from
tests/e2e): a server is started with its output in files (no pipe is ever left open),
waited for on ``/healthz`` and stopped with SIGTERM. Raw sockets send what httpx
refuses to send (100 KB headers, invalid bytes, requests that never end).

Imported by name (``from abuse_support import ...``), like the e2e helpers.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
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
STRONG_SECRET = "abuse-" + secrets.token_urlsafe(40)
PASSWORD = "correct horse battery staple"
CLIENT_ID = "devicelink-cli"
PROXY_ADDRESS = "127.0.0.3"
"""The server's one trusted proxy (DEVICELINK_TRUSTED_PROXIES): connections from it may
name any client address in X-Forwarded-For."""

RUNNING: list[ServerProcess] = []
"""Servers started and not yet stopped, for the failure report."""

# What a server must never write, whatever it was sent.
CRASH_MARKERS = ("Traceback", "Exception in ASGI application", '"level": "error"')


# --- processes -------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ``DEVICELINK_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(extra)
    return env


def server_env(workdir: Path, database_url: str, **extra: str) -> dict[str, str]:
    """A development server (loopback PUBLIC_URL) with JSON logs and a strong secret."""
    return clean_env(
        DEVICELINK_DATABASE_URL=database_url,
        DEVICELINK_DATA_DIR=str(workdir / "data"),
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_LOG_FORMAT="json",
        DEVICELINK_PURGE_INTERVAL="0",
        **extra,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(eq=False)
class ServerProcess:
    """One running ``devicelink serve``."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    database_url: str
    stdout_path: Path
    stderr_path: Path
    _stopped: bool = field(default=False, repr=False)
    _checked: int = field(default=0, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def logs(self) -> str:
        return f"--- stderr ---\n{self.stderr()}--- stdout ---\n{self.stdout()}"

    def alive(self) -> bool:
        return self.process.poll() is None

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
        """Later checks only look at what the server writes from now on."""
        self._checked = len(self.stderr())


def start_server(
    *, env: Mapping[str, str], workdir: Path, log_dir: Path, name: str = "serve"
) -> ServerProcess:
    """``devicelink serve --host 127.0.0.1 --port PORT``, once ``/healthz`` answers."""
    assert DEVICELINK.exists(), f"{DEVICELINK} is missing: install the package in this venv"
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        # The child gets its own copies of the descriptors; ours close right away.
        process = subprocess.Popen(
            [str(DEVICELINK), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    server = ServerProcess(
        process, port, workdir, env["DEVICELINK_DATABASE_URL"], stdout_path, stderr_path
    )
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


@contextmanager
def running_server(
    workdir: Path, log_dir: Path, database_url: str, name: str = "serve", **env: str
) -> Iterator[ServerProcess]:
    server = start_server(
        env=server_env(workdir, database_url, **env), workdir=workdir, log_dir=log_dir, name=name
    )
    try:
        yield server
    finally:
        server.stop()


# --- PostgreSQL ----------------------------------------------------------------------------

ADMIN_POSTGRES_URL = os.environ.get(
    "DEVICELINK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
).replace("postgresql+asyncpg://", "postgresql://")


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_POSTGRES_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, migrated (as ``devicelink db upgrade`` would); its URL.
    Dropped afterwards. PostgreSQL, as in production: many sessions writing at once is
    what these tests do, and SQLite answers that with "database is locked"."""
    from devicelink.storage import upgrade_database

    name = f"devicelink_abuse_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade_database(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pg_fetch(url: str, query: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await conn.fetch(query)
        finally:
            await conn.close()

    return asyncio.run(fetch())


# --- accounts ----------------------------------------------------------------------------


def add_users(server: ServerProcess, names: list[str], password: str = PASSWORD) -> None:
    """Local accounts in the server's database, written directly: much faster than one
    ``devicelink users add`` process each."""
    from devicelink.idp.local import hash_password
    from devicelink.service.clock import utc_now
    from devicelink.storage import SqlStore, create_engine_for_url

    password_hash = hash_password(password)

    async def add() -> None:
        store = SqlStore(create_engine_for_url(server.database_url))
        try:
            async with store.transaction() as tx:
                for name in names:
                    await tx.users.add(name, password_hash, utc_now())
        finally:
            await store.dispose()

    asyncio.run(add())


def open_sessions(server: ServerProcess, usernames: list[str]) -> list[str]:
    """Signed-in browser sessions of ``usernames`` (one each, in order): their cookie
    tokens. Made through devicelink's own session service with the server's secret, as a
    sign-in would make them, without an argon2 verification per session (tens to
    hundreds of milliseconds each): the guessing tests need dozens of sessions, and
    password guessing has its own test."""
    from devicelink.core.codes import CodeHasher
    from devicelink.core.models import Identity
    from devicelink.service.sessions import BrowserSessions
    from devicelink.storage import SqlStore, create_engine_for_url

    async def open_all() -> list[str]:
        store = SqlStore(create_engine_for_url(server.database_url))
        try:
            async with store.transaction() as tx:
                users = [await tx.users.get_by_username(name) for name in usernames]
            sessions = BrowserSessions(
                store, CodeHasher(STRONG_SECRET.encode()), lifetime=SESSION_LIFETIME
            )
            tokens = []
            for user in users:
                assert user is not None
                identity = Identity(
                    provider="local", subject=str(user.id), username=user.username, user_id=user.id
                )
                tokens.append((await sessions.sign_in(None, identity)).token)
            return tokens
        finally:
            await store.dispose()

    return asyncio.run(open_all())


SESSION_COOKIE = "devicelink_session"
SESSION_LIFETIME = 43200


# --- the browser's and the device's side, over HTTP ----------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match, f"no csrf_token on the page ({page.status_code}):\n{page.text[:500]}"
    return match.group(1)


def wrong_codes() -> Iterator[str]:
    """Well-formed user codes that belong to no flow (the chance of a hit is 1 in 2.6e10)."""
    alphabet = "BCDFGHJKLMNPQRSTVWXZ"
    while True:
        letters = "".join(secrets.choice(alphabet) for _ in range(8))
        yield f"{letters[:4]}-{letters[4:]}"


# --- raw HTTP/1.1 over a socket --------------------------------------------------------------


@dataclass(frozen=True)
class RawAnswer:
    status: int | None
    """The status code, or None when the server closed or reset without answering."""
    head: bytes
    seconds: float


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server on 127.0.0.1 from the loopback address ``source``."""
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )


def raw_request(
    port: int, data: bytes, *, source: str = "127.0.0.1", timeout: float = 10.0
) -> RawAnswer:
    """Send ``data`` as is, read until the server closes; the status line it answered."""
    started = time.monotonic()
    received = b""
    with connect(port, source, timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading all of a huge request
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if len(received) > 1 << 20:
                    break
        except (ConnectionResetError, TimeoutError, OSError):
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    return RawAnswer(
        int(match.group(1)) if match else None, received[:2048], time.monotonic() - started
    )


def request_bytes(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> bytes:
    """An HTTP/1.1 request with ``Connection: close``, headers as given (bytes, unchecked)."""
    lines = [f"{method} {path} HTTP/1.1".encode("ascii"), b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if body:
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def connection_is_open(sock: socket.socket) -> bool:
    """True when the server has neither answered nor closed ``sock`` (non-blocking check)."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)
    return False  # an answer or the end of the stream: no longer waiting


# --- figures ---------------------------------------------------------------------------------

FIGURES: dict[str, str] = {}
"""What the abuse tests measured, printed at the end of the run (``Abuse figures``) and
recorded by hand in docs/security.md."""


def figure(name: str, value: object) -> None:
    FIGURES[name] = str(value)


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def pipelined(
    port: int, requests: list[bytes], *, source: str = "127.0.0.1", timeout: float = 60.0
) -> list[RawResponse]:
    """Send ``requests`` back to back on one keep-alive connection (HTTP/1.1 pipelining)
    and read their answers in order: thousands a second, where a client library spends
    more time than the server."""
    with connect(port, source, timeout) as sock:
        sock.sendall(b"".join(requests))
        buffer = b""
        answers: list[RawResponse] = []
        while len(answers) < len(requests):
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                chunk = sock.recv(1 << 16)
                assert chunk, f"connection closed after {len(answers)} answers"
                buffer += chunk
                continue
            lines = buffer[:head_end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(buffer) < head_end + 4 + length:
                chunk = sock.recv(1 << 16)
                assert chunk, "connection closed in the middle of an answer"
                buffer += chunk
            body = buffer[head_end + 4 : head_end + 4 + length]
            buffer = buffer[head_end + 4 + length :]
            answers.append(RawResponse(int(lines[0].split()[1]), headers, body))
        return answers


def keep_alive_request(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> bytes:
    """Like :func:`request_bytes`, without ``Connection: close`` (for :func:`pipelined`)."""
    lines = [f"{method} {path} HTTP/1.1".encode("ascii"), b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
