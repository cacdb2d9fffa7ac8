"""Issue 17, "Must show", end to end over real HTTP between real processes: the example
host app (examples/host_app, run by ``uvicorn --factory`` as its docstring says) on the
host's PostgreSQL database, where the host keeps its own ``users`` table and devicelink
its tables in a schema of its own; ``acme``, the host's CLI built with
``make_auth_group``; a resource server of the host's that checks keys by introspection;
the operator's ``devicelink`` commands; and a browser played with httpx.

The device receives the host's own ``host_...`` key; ``status`` names the user,
``/api/me`` and the resource server take the key; ``logout``, the devices page and
``devicelink keys revoke`` each revoke it in the host's store (the host's own route
refuses it afterwards); a visitor signed in nowhere is sent to the host's sign-in and
back; two host users with one name are two accounts; the host's ``users`` is untouched.
The issuer that refuses or fails is covered in process (test_issuer_refusal.py).
"""

from __future__ import annotations

import asyncio
import html
import json
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.embedding.host_process import (
    ACME_CLIENT_ID,
    ACME_USER_AGENT,
    REPO,
    start_uvicorn,
)
from tests.support.databases import fresh_postgres_database, pg_fetch_now, pg_script
from tests.support.http import csrf_of, decision
from tests.support.processes import clean_env, free_port, run_devicelink
from tests.support.secret_scanner import record_secrets
from tests.support.secrets_audit import snapshot_postgres
from tests.support.servers import CRASH_MARKERS, STRONG_SECRET, ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SCHEMA = "devicelink"
HOST_USERS = {"101": "alice", "102": "bob", "103": "carol", "202": "sam", "303": "sam"}
"""The host's users, id to display name: two of them are called "sam"."""
HOST_TABLES = """
CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE);
INSERT INTO users VALUES
    (101, 'alice', 'alice@acme.example'), (102, 'bob', 'bob@acme.example'),
    (103, 'carol', 'carol@acme.example'), (202, 'sam', 'sam@acme.example'),
    (303, 'sam', 'sam.other@acme.example');
"""
DRAIN_INTERVAL = 1
"""DEVICELINK_REVOCATION_DRAIN_INTERVAL of the host: seconds before an operator's
revocation reaches the host's store."""
WAIT = 10.0
"""The longest any condition below is waited for."""


# --- the processes -----------------------------------------------------------------------


@dataclass
class Host:
    origin: str
    """The host app (devicelink under ``/auth``)."""
    things: str
    """The host's resource server."""
    database: str
    admin_env: dict[str, str]
    workdir: Path
    process: ServerProcess
    users_before: list[tuple[Any, ...]]
    """The host's ``users`` rows before devicelink was installed."""

    @property
    def auth(self) -> str:
        return f"{self.origin}/auth"

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator's ``devicelink`` command, on the host's database and schema."""
        return run_devicelink(*args, env=self.admin_env, cwd=self.workdir)

    def whoami(self, key: str) -> httpx.Response:
        """The host's own route, which checks only the host's key store."""
        return httpx.get(f"{self.origin}/host/whoami", headers=bearer(key))

    def me(self, key: str) -> httpx.Response:
        return httpx.get(f"{self.auth}/api/me", headers=bearer(key))

    def thing(self, key: str) -> httpx.Response:
        return httpx.get(f"{self.things}/things", headers=bearer(key))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def host_users(url: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in pg_fetch_now(url, "SELECT * FROM public.users ORDER BY id")]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """The host's PostgreSQL database, holding the host's ``users`` before devicelink."""
    with fresh_postgres_database("devicelink_host_e2e", migrate=False) as url:
        asyncio.run(pg_script(url, HOST_TABLES))
        try:
            yield url
        finally:
            snapshot_postgres(url, "the host's database (test_host_end_to_end)")


def run_ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def host(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """The host app as its docstring runs it, devicelink migrated and its clients added
    by the operator first; the resource server beside it."""
    workdir = tmp_path_factory.mktemp("host")
    users_before = host_users(database)
    port = free_port()
    env = clean_env(
        DEVICELINK_DATABASE_URL=database,
        DEVICELINK_DATABASE_SCHEMA=SCHEMA,
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_DATA_DIR=str(workdir / "data"),
        DEVICELINK_INTERVAL="1",
        DEVICELINK_REVOCATION_DRAIN_INTERVAL=str(DRAIN_INTERVAL),
        DEVICELINK_LOG_FORMAT="json",
    )

    def operator(*args: str) -> str:
        return run_ok(run_devicelink(*args, env=env, cwd=workdir))

    operator("db", "upgrade")  # PostgreSQL: the operator migrates before starting
    operator("clients", "add", ACME_CLIENT_ID, "--name", "Acme CLI")
    added = operator("clients", "add", "things-api", "--confidential", "--resource-server")
    secret = re.search(r"client_secret: (\S+)", added)
    assert secret, added
    logs = workdir / "logs"
    app = start_uvicorn(
        "examples.host_app.app:create",
        port=port,
        env={**env, "HOST_APP_PORT": str(port)},
        log_dir=logs,
        name="host",
        ready="/auth/readyz",
    )
    try:
        things = start_uvicorn(
            "tests.embedding.host_process:resource_server",
            port=free_port(),
            env=clean_env(
                THINGS_ISSUER=f"{app.base_url}/auth",
                THINGS_CLIENT_ID="things-api",
                THINGS_CLIENT_SECRET=secret.group(1),
            ),
            log_dir=logs,
            name="things",
            ready="/healthz",
        )
        try:
            yield Host(app.base_url, things.base_url, database, env, workdir, app, users_before)
        finally:
            things.stop()
    finally:
        app.stop()


# --- a user's terminal and browser -------------------------------------------------------


class Command:
    """An ``acme`` command running in the background; its standard error read as it
    comes (``login --json`` writes the code there first)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def event(self, kind: str) -> dict[str, Any]:
        """The next ``{"event": kind, ...}`` line of its standard error."""
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.stderr.append(line)
            if line.startswith("{") and json.loads(line).get("event") == kind:
                document: dict[str, Any] = json.loads(line)
                return document
        self.finish(kill=True)
        pytest.fail(f"no {kind!r} event from acme:\n{''.join(self.stderr)}", pytrace=False)

    def finish(self, *, kill: bool = False) -> tuple[int, str]:
        """Its exit code and standard output, once it has exited (killed first when
        ``kill``, or when it runs longer than :data:`WAIT`)."""
        if kill:
            self.process.kill()
        try:
            code = self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        stdout, stderr = self.process.stdout, self.process.stderr
        assert stdout is not None
        assert stderr is not None
        with stdout:
            output = stdout.read()
        self._reader.join(WAIT)
        stderr.close()
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.stderr.append(line)
        return code, output


@dataclass
class Terminal:
    """One user's computer: a home of its own, where ``acme`` keeps its key in a file
    (no keyring here), pointed at the host by ``ACME_SERVER``."""

    home: Path
    server: str

    def env(self) -> dict[str, str]:
        env = clean_env(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            ACME_SERVER=self.server,
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
            NO_COLOR="1",
        )
        env.pop("ACME_TOKEN", None)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.embedding.host_process", *args]

    def acme(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=REPO,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )

    def acme_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        """``acme ARGS --json``: its exit code and its JSON answer (or error)."""
        result = self.acme(*args, "--json")
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        assert lines, f"{result.stdout}\n{result.stderr}"
        document: dict[str, Any] = json.loads(lines[-1])
        return result.returncode, document

    def start(self, *args: str) -> Command:
        process = subprocess.Popen(
            self.command(*args),
            cwd=REPO,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return Command(process)

    def key(self) -> str:
        """The stored key, as ``acme auth token`` prints it for scripts."""
        key = run_ok(self.acme("auth", "token")).strip()
        record_secrets({"access_token": key})  # for the session's secrets audit
        return key


class Browser:
    """A browser with a cookie jar, on the host."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.http = httpx.Client(base_url=origin, timeout=10)

    def close(self) -> None:
        self.http.close()

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def post(self, url: str, data: dict[str, str]) -> httpx.Response:
        return self.http.post(url, data=data, headers={"Origin": self.origin})

    def sign_in_at_host(self, user_id: str) -> None:
        signed_in = self.post("/host/login", {"username": HOST_USERS[user_id], "user_id": user_id})
        assert signed_in.json() == {"signed_in": HOST_USERS[user_id]}

    def approve(self, code_page: httpx.Response, flow: dict[str, Any]) -> str:
        """From the code page (the code pre-filled by the link): confirm, then Approve;
        the confirm page's text."""
        assert code_page.status_code == 200, code_page.headers.get("location")
        confirm = self.post(
            "/auth/oauth/device/verify",
            {"user_code": flow["user_code"], "csrf_token": csrf_of(code_page)},
        )
        assert "Is this your device?" in confirm.text
        approved = self.post("/auth/oauth/device/decide", decision(confirm, "approve"))
        assert "Device approved" in approved.text
        return html.unescape(confirm.text)


@pytest.fixture
def browsers(host: Host) -> Iterator[Callable[[], Browser]]:
    opened: list[Browser] = []

    def open_browser() -> Browser:
        opened.append(Browser(host.origin))
        return opened[-1]

    yield open_browser
    for browser in opened:
        browser.close()


def log_in(terminal: Terminal, browser: Browser, *options: str) -> tuple[str, dict[str, Any]]:
    """``acme auth login --no-browser --json OPTIONS``, approved in ``browser`` (signed in
    at the host already): the key stored, and the login's answer."""
    login = terminal.start("auth", "login", "--no-browser", "--json", *options)
    flow = login.event("code")
    record_secrets(flow)
    browser.approve(browser.get(flow["verification_uri_complete"]), flow)
    code, output = login.finish()
    assert code == 0, "".join(login.stderr)
    return terminal.key(), json.loads(output.splitlines()[-1])


def eventually(condition: Callable[[], bool], what: str) -> float:
    """Seconds until ``condition`` held (polled; fails after :data:`WAIT`)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < WAIT, f"not within {WAIT} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


# --- the story -----------------------------------------------------------------------------


def test_login_through_the_hosts_sign_in_gets_the_hosts_key_and_logout_revokes_it(
    host: Host, browsers: Callable[[], Browser], tmp_path: Path
) -> None:
    terminal, browser = Terminal(tmp_path / "alice", host.auth), browsers()
    login = terminal.start("auth", "login", "--no-browser", "--json")
    flow = login.event("code")
    record_secrets(flow)
    assert flow["verification_uri_complete"].startswith(f"{host.auth}/oauth/device/verify?")

    # Signed in nowhere: the link leads to the host's sign-in page, and back.
    to_sign_in = browser.get(flow["verification_uri_complete"])
    assert to_sign_in.status_code == 303
    assert urlsplit(to_sign_in.headers["location"]).path == "/host/login"
    sign_in_page = browser.get(to_sign_in.headers["location"])
    assert "Sign in to Acme" in sign_in_page.text
    back_to = re.search(r'name="next" value="([^"]*)"', sign_in_page.text)
    assert back_to
    next_path = html.unescape(back_to.group(1))
    assert next_path.startswith("/auth/oauth/device/verify?")
    signed_in = browser.post(
        "/host/login", {"username": "alice", "user_id": "101", "next": next_path}
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == next_path
    back = browser.get(next_path)
    assert parse_qs(urlsplit(next_path).query)["user_code"] == [flow["user_code"]]
    confirm = browser.approve(back, flow)
    assert flow["user_code"] in confirm
    assert "Acme CLI" in confirm  # the client's name
    assert f"{ACME_USER_AGENT} devicelink/" in confirm  # the device's software
    assert "alice" in confirm
    assert 'href="/host/logout"' in back.text  # "Sign out" is the host's

    code, output = login.finish()
    assert code == 0, "".join(login.stderr)
    result = json.loads(output.splitlines()[-1])
    assert result["user"] == "alice"
    assert result["client_id"] == ACME_CLIENT_ID
    assert Path(result["stored_in"]).is_relative_to(terminal.home)  # a file: no keyring here
    key = terminal.key()
    assert key.startswith("host_")  # minted by the host's own key store

    status, answer = terminal.acme_json("auth", "status")
    assert (status, answer["user"], answer["logged_in"]) == (0, "alice", True)
    me = host.me(key)
    assert me.status_code == 200, me.text
    assert (me.json()["sub"], me.json()["client_id"]) == ("alice", ACME_CLIENT_ID)
    assert host.whoami(key).json() == {"user": "101"}  # the host's user id
    assert host.thing(key).json() == {"user": "alice", "client": ACME_CLIENT_ID}
    assert host.thing("host_" + "x" * 32).status_code == 401

    code, answer = terminal.acme_json("auth", "logout")
    assert (code, answer["revoked"], answer["removed"]) == (0, True, True)
    assert host.whoami(key).status_code == 401  # revoked in the host's store at once
    assert host.me(key).status_code == 401
    eventually(lambda: host.thing(key).status_code == 401, "the resource server refuses it")
    assert terminal.acme_json("auth", "status")[0] == 6  # not logged in


def test_revoking_on_the_devices_page_revokes_in_the_hosts_store(
    host: Host, browsers: Callable[[], Browser], tmp_path: Path
) -> None:
    terminal, browser = Terminal(tmp_path / "bob", host.auth), browsers()
    browser.sign_in_at_host("102")
    first_key, result = log_in(terminal, browser)
    assert result["user"] == "bob"
    # Logging in again replaces the key, and the one it replaced stops working.
    key, _ = log_in(terminal, browser, "--force")
    assert host.whoami(first_key).status_code == 401
    assert host.whoami(key).json() == {"user": "102"}

    devices = browser.get("/auth/devices")
    assert "Acme CLI" in devices.text
    revoke_buttons = re.findall(r'name="revoke" value="(\d+)"', devices.text)  # active ones
    assert revoke_buttons == [host.me(key).json()["key"]["id"]]
    revoked = browser.post(
        "/auth/devices", {"revoke": revoke_buttons[0], "csrf_token": csrf_of(devices)}
    )
    assert "Revoked 1 device" in revoked.text
    assert host.whoami(key).status_code == 401
    assert host.me(key).status_code == 401
    code, answer = terminal.acme_json("auth", "status")
    assert (code, answer["error"]) == (7, "invalid_token")  # "no longer accepts the key"


def test_the_operators_keys_revoke_reaches_the_hosts_store_at_the_next_drain(
    host: Host, browsers: Callable[[], Browser], tmp_path: Path
) -> None:
    terminal, browser = Terminal(tmp_path / "carol", host.auth), browsers()
    browser.sign_in_at_host("103")
    key, _ = log_in(terminal, browser)
    key_id = host.me(key).json()["key"]["id"]

    assert run_ok(host.admin("keys", "revoke", key_id)).strip() == f"revoked key {key_id}"
    eventually(lambda: host.me(key).status_code == 401, "devicelink refuses the key")
    waited = eventually(
        lambda: host.whoami(key).status_code == 401, "the host's store has revoked it"
    )
    assert waited < DRAIN_INTERVAL + 2
    assert terminal.acme_json("auth", "status")[0] == 7


def test_two_host_users_with_one_name_are_two_accounts(
    host: Host, browsers: Callable[[], Browser], tmp_path: Path
) -> None:
    owners: dict[str, dict[str, Any]] = {}
    for user_id in ("202", "303"):
        terminal, browser = Terminal(tmp_path / user_id, host.auth), browsers()
        browser.sign_in_at_host(user_id)
        key, _ = log_in(terminal, browser)
        assert host.whoami(key).json() == {"user": user_id}
        me = host.me(key).json()
        status, answer = terminal.acme_json("auth", "status")
        assert (status, answer["user"]) == (0, me["sub"])
        owners[user_id] = me
    # The first keeps the name; the second gets it with a suffix of its own.
    assert owners["202"]["sub"] == "sam"
    assert re.fullmatch(r"sam~[0-9a-f]{8}", owners["303"]["sub"]), owners["303"]


def test_the_hosts_own_tables_are_untouched_and_it_logged_no_error(host: Host) -> None:
    assert host_users(host.database) == host.users_before
    assert [row[0] for row in host.users_before] == [int(user_id) for user_id in HOST_USERS]
    tables = pg_fetch_now(
        host.database,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    by_schema: dict[str, set[str]] = {}
    for row in tables:
        by_schema.setdefault(row["table_schema"], set()).add(row["table_name"])
    assert by_schema["public"] == {"users"}
    assert {"users", "api_keys", "alembic_version"} <= by_schema[SCHEMA]
    assert host.process.alive()
    output = host.process.stderr() + host.process.stdout()
    for marker in CRASH_MARKERS:
        assert marker not in output, output
