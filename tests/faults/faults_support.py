"""Helpers of the fault tests: a private PostgreSQL server the tests may stop and start,
``devicelink serve`` processes over real HTTP, and the browser's side of a flow.

The machine's shared PostgreSQL (``DEVICELINK_TEST_POSTGRES``) is never stopped: every
outage here happens to a server of our own, made with ``initdb`` in a fresh directory,
listening on a free loopback port and on a Unix socket in that directory, and removed
when the test session ends. PostgreSQL refuses to run as root, so when the tests run as root the
binaries run as the ``postgres`` account (``runuser -u postgres``) in a directory it owns.

The server helpers are adapted from tests/e2e/e2e_support.py (importable by name only
from tests/e2e). Every process writes its output to files, so no pipe is left open.
Imported by name (``from faults_support import ...``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
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
PG_BIN = Path(os.environ.get("DEVICELINK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PG_TIMEOUT = 60.0
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')

RUNNING: list[ServerProcess] = []
"""Servers started and not yet stopped, for the failure report."""


# --- a private PostgreSQL --------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_pg_user(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run ``command`` as the postgres account."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and runuser is missing: cannot start PostgreSQL")
    return [runuser, "-u", PG_OS_USER, "--", *command]


class PrivatePostgres:
    """A PostgreSQL server of the fault tests alone, which they may stop and start.

    ``initdb`` (trust authentication, superuser ``postgres``, no fsync) into a fresh
    directory under the system's temporary directory (pytest's ``tmp_path`` is private to
    root, which the postgres account cannot enter), then ``pg_ctl start`` on a free
    loopback port. The output of every ``pg_ctl`` call and the server's log go to files
    in that directory.
    """

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL binaries in {PG_BIN} (set DEVICELINK_TEST_PG_BIN)")
        self.root = Path(tempfile.mkdtemp(prefix="dl-faults-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.commands_log = self.root / "pg_ctl.out"
        self.port = free_port()
        self.running = False
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_OS_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._pg(
            "initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8"
        )

    def _pg(self, program: str, *args: str) -> None:
        with open(self.commands_log, "ab") as out:
            out.write(f"$ {program} {' '.join(args)}\n".encode())
            out.flush()
            result = subprocess.run(
                _as_pg_user([str(PG_BIN / program), *args]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.root,
                timeout=PG_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{self.logs()}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=16MB -c fsync=off"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "start"
        )
        self.running = True

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """``pg_ctl stop -m MODE``; without ``wait``, return while it shuts down (a smart
        shutdown waits for every session to end, refusing new ones meanwhile)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop")
        if wait:
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """``createdb NAME``: the new database's URL."""
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        if template is not None:
            args += ["-T", template]
        self._pg("createdb", *args, name)
        return self.url(name)

    def logs(self) -> str:
        parts = []
        for path in (self.commands_log, self.log_path):
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def destroy(self) -> None:
        """Stop the server at once (whatever state it is in) and remove its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            self.running = False
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


async def pg_fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


# --- devicelink processes ----------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ``DEVICELINK_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(extra)
    return env


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

    def stop(self) -> int:
        """SIGTERM (graceful shutdown), SIGKILL if it lingers; the exit code."""
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


def launch_server(*, env: Mapping[str, str], cwd: Path, log_dir: Path, name: str) -> ServerProcess:
    """Start ``devicelink serve --host 127.0.0.1 --port PORT`` (not waiting for it)."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        # The child gets its own copies of the descriptors; ours close right away.
        process = subprocess.Popen(
            [str(DEVICELINK), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    server = ServerProcess(process, port, stdout_path, stderr_path)
    RUNNING.append(server)
    return server


def _wait_until_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    with httpx.Client(base_url=server.base_url, timeout=2.0) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                server.stop()
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
    server.stop()
    pytest.fail(
        f"devicelink serve did not answer /healthz within {STARTUP_TIMEOUT:.0f} s "
        f"({last_error})\n{server.logs()}",
        pytrace=False,
    )


def wait_until_ready(server: ServerProcess, within: float = STARTUP_TIMEOUT) -> None:
    """Wait until ``/readyz`` answers 200 (after PostgreSQL came back, the first
    requests may find the connections of the pool dead)."""
    deadline = time.monotonic() + within
    with httpx.Client(base_url=server.base_url, timeout=5.0) as http:
        while True:
            try:
                status: int | str = http.get("/readyz").status_code
            except httpx.TransportError as exc:
                status = repr(exc)
            if status == 200:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"/readyz still answers {status}\n{server.logs()}", pytrace=False)
            time.sleep(0.1)


# --- the device and the browser, over HTTP ------------------------------------------------


def csrf_of(page: httpx.Response) -> str:
    match = _CSRF.search(page.text)
    assert match, f"no csrf_token on the page ({page.status_code}):\n{page.text[:500]}"
    return match.group(1)


def token_form(device_code: str) -> dict[str, str]:
    return {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": device_code,
        "client_id": "devicelink-cli",
    }


async def start_flow(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def poll(http: httpx.AsyncClient, device_code: str) -> httpx.Response:
    return await http.post("/oauth/device/token", data=token_form(device_code))


async def sign_in(browser: httpx.AsyncClient, username: str, password: str = PASSWORD) -> None:
    """Fill in the sign-in form, as a user would."""
    page = await browser.get("/login")
    assert page.status_code == 200, page.text
    answer = await browser.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page)},
    )
    assert answer.status_code in (302, 303), f"{answer.status_code}: {answer.text[:300]}"


async def confirm_page(browser: httpx.AsyncClient, user_code: str) -> httpx.Response:
    """Type ``user_code`` on the code page and press Continue: the confirm page."""
    page = await browser.get("/oauth/device/verify")
    assert page.status_code == 200, page.text
    confirm = await browser.post(
        "/oauth/device/verify", data={"user_code": user_code, "csrf_token": csrf_of(page)}
    )
    assert confirm.status_code == 200, confirm.text
    assert "Approve" in confirm.text
    return confirm


async def press(browser: httpx.AsyncClient, confirm: httpx.Response, action: str) -> httpx.Response:
    """Press Approve or Deny on a confirm page."""
    return await browser.post(
        "/oauth/device/decide", data={"action": action, "csrf_token": csrf_of(confirm)}
    )


async def approve(browser: httpx.AsyncClient, user_code: str) -> None:
    done = await press(browser, await confirm_page(browser, user_code), "approve")
    assert done.status_code == 200, done.text
    assert "Device approved" in done.text


def add_user(env: Mapping[str, str], cwd: Path, name: str, password: str = PASSWORD) -> None:
    result = run_devicelink(
        "users", "add", name, "--password-stdin", env=env, cwd=cwd, stdin=password + "\n"
    )
    assert result.returncode == 0, result.stderr


def assert_friendly_page(response: httpx.Response, status: int = 503) -> None:
    """An HTML error page for a person: the status, no stack trace, no driver detail."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html"), response.headers
    text = response.text
    assert "<h1>" in text
    for leak in ("Traceback", "asyncpg", "sqlalchemy", "OperationalError", 'File "'):
        assert leak not in text, f"{leak!r} leaked into the page:\n{text[:1000]}"


def assert_temporarily_unavailable(response: httpx.Response) -> None:
    """RFC 6749 section 5.2 JSON, 503 ``temporarily_unavailable``, with Retry-After."""
    assert response.status_code == 503, f"{response.status_code}: {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["error"] == "temporarily_unavailable", body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, response.headers
    assert response.headers.get("cache-control") == "no-store", response.headers


# --- a whole deployment: private PostgreSQL, migrated, an account, a server ---------------

TEMPLATE_DATABASE = "devicelink_template"


class Cluster:
    """A :class:`PrivatePostgres` with a template database migrated by ``devicelink db
    upgrade``: each test or deployment gets a copy (``createdb -T``), which costs a
    fraction of a second where running the command again costs seconds."""

    def __init__(self, postgres: PrivatePostgres, workdir: Path) -> None:
        self.postgres = postgres
        self.workdir = workdir
        self._count = 0
        env = clean_env(DEVICELINK_DATABASE_URL=postgres.url(TEMPLATE_DATABASE))
        postgres.create_database(TEMPLATE_DATABASE)
        upgrade = run_devicelink("db", "upgrade", env=env, cwd=workdir)
        assert upgrade.returncode == 0, f"db upgrade failed:\n{upgrade.stderr}"
        assert "up to date" in upgrade.stdout, upgrade.stdout

    def ensure_running(self) -> None:
        """Start PostgreSQL again if a test left it stopped."""
        if not self.postgres.running:
            self.postgres.start()

    def new_database(self) -> str:
        """A fresh copy of the template."""
        self.ensure_running()
        self._count += 1
        name = f"devicelink_{self._count}"
        self.postgres.create_database(name, template=TEMPLATE_DATABASE)
        return self.postgres.url(name)


@dataclass
class Deployment:
    """One ``devicelink serve`` on a database of the private PostgreSQL."""

    postgres: PrivatePostgres
    database_url: str
    secret: str
    server: ServerProcess

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def hasher(self) -> Any:
        from devicelink.core.codes import CodeHasher

        return CodeHasher(self.secret.encode("utf-8"))

    def logs(self) -> str:
        return f"{self.server.logs()}\n{self.postgres.logs()}"


@contextmanager
def deployments(
    cluster: Cluster, workdir: Path, variants: Mapping[str, Mapping[str, str]]
) -> Iterator[dict[str, Deployment]]:
    """One ``devicelink serve`` per variant, all on one new database (and one secret),
    started side by side, and the local account ``alice`` made by ``devicelink users
    add``; every server stopped when the block ends.

    Polling is fast (interval 1 s, slow_down adds 1 s up to 2 s) so a test need not wait
    the default 5 s between polls; a variant's settings add or override ``DEVICELINK_*``
    ones (``{"fast_path": "false"}``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    url = cluster.new_database()
    secret = secrets.token_urlsafe(48)
    started: dict[str, Deployment] = {}
    try:
        for variant, settings in variants.items():
            env = clean_env(
                DEVICELINK_DATABASE_URL=url,
                DEVICELINK_SECRET_KEY=secret,
                DEVICELINK_INTERVAL="1",
                DEVICELINK_SLOW_DOWN_STEP="1",
                DEVICELINK_MAX_INTERVAL="2",
                DEVICELINK_START_RATE_LIMIT="1000/minute",
                DEVICELINK_LOG_FORMAT="json",
                **{f"DEVICELINK_{name.upper()}": value for name, value in settings.items()},
            )
            server = launch_server(env=env, cwd=workdir, log_dir=workdir / "logs", name=variant)
            started[variant] = Deployment(cluster.postgres, url, secret, server)
        # While the servers start: the local account, with the operator's command.
        add_user(clean_env(DEVICELINK_DATABASE_URL=url), workdir, "alice")
        for dep in started.values():
            _wait_until_healthy(dep.server)
        yield started
    finally:
        for dep in started.values():
            dep.server.stop()


# --- answers kept for later assertions ---------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange as the client saw it: the answer, or the transport error."""

    label: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    transport_error: str | None = None

    @classmethod
    def of(cls, label: str, response: httpx.Response) -> Answer:
        return cls(label, response.status_code, dict(response.headers), response.text)

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> str | None:
        """The OAuth ``error`` of a JSON answer."""
        try:
            body = self.json()
        except ValueError:
            return None
        return body.get("error") if isinstance(body, dict) else None

    def __str__(self) -> str:
        if self.transport_error is not None:
            return f"{self.label}: no answer ({self.transport_error})"
        return f"{self.label}: {self.status} {self.text[:200]!r}"


async def observe(label: str, request: Any) -> Answer:
    """Await ``request`` (an httpx call); its answer, or the transport error it raised."""
    try:
        response = await request
    except httpx.TransportError as exc:
        return Answer(label, None, transport_error=repr(exc))
    return Answer.of(label, response)


def response_of(answer: Answer) -> httpx.Response:
    """An :class:`Answer` as an httpx response again, for the shared assertions."""
    assert answer.status is not None, str(answer)
    return httpx.Response(
        answer.status, headers=answer.headers, content=answer.text.encode("utf-8")
    )
