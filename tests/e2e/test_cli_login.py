"""The ``devicelink`` client commands as a user runs them: real processes, real HTTP.

A ``devicelink serve`` runs on loopback (the ``launch`` fixture); ``devicelink login`` runs
as a subprocess with a configuration directory of its own and no keyring (Python keyring's
fail backend), so the key goes to the 0600 file; the user approves or denies in Chromium
(Debian's package, driven by Playwright), signing in with the first account's one-time
password. Then ``status``, ``token`` and ``logout`` (which revokes the key on the server).

The last test runs ``login`` in a real pseudo-terminal (tmux), captures the screen while
it waits and once it succeeds, and saves it as docs/login-session.txt.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.support.processes import (
    clean_env,
    devicelink_command,
    one_time_passwords,
    run_devicelink,
)
from tests.support.servers import Launcher

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
SESSION_FILE = ROOT / "docs" / "login-session.txt"
MYCLI = ROOT / "examples" / "mycli" / "mycli.py"
USER_CODE = re.compile(r"\b[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\b")
COUNTDOWN = re.compile(r"Waiting for approval in the browser: (\d+):(\d\d) left")


def steady(screen: str) -> str:
    """The capture with what differs between runs fixed: the code, the spinner's frame,
    the seconds left and the key's expiry date."""
    screen = USER_CODE.sub("WDJB-MJHT", screen)
    screen = re.sub(r"^[\u2800-\u28ff] ", "⠋ ", screen, flags=re.MULTILINE)
    screen = COUNTDOWN.sub("Waiting for approval in the browser: 9:59 left", screen)
    return re.sub(r"expires \d{4}-\d\d-\d\d \d\d:\d\d UTC", "expires 2027-01-03 13:50 UTC", screen)


# --- fixtures ------------------------------------------------------------------------------


class Setup:
    """A running server, its first account's password, and a client environment."""

    def __init__(self, base_url: str, password: str, home: Path) -> None:
        self.base_url = base_url
        self.password = password
        self.home = home
        self.config_dir = home / ".config" / "devicelink"
        self.env = clean_env(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",  # "no keyring available"
        )
        for name in ("NO_COLOR", "FORCE_COLOR", "DISPLAY", "WAYLAND_DISPLAY", "MYCLI_TOKEN"):
            self.env.pop(name, None)
        self.processes: list[subprocess.Popen[str]] = []

    def stop_processes(self) -> None:
        """Stop the logins a failed test left running, and close their pipes."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    @property
    def credentials(self) -> Path:
        return self.config_dir / "credentials.json"

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run_devicelink(*args, env={**self.env, **extra_env}, cwd=self.home)


@pytest.fixture
def setup(launch: Launcher, tmp_path: Path) -> Iterator[Setup]:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    # One-second polling keeps the tests short; everything else is the embedded default.
    server = launch(env=clean_env(DEVICELINK_INTERVAL="1"), cwd=server_dir)
    passwords = one_time_passwords(server.stderr())
    assert len(passwords) == 1, server.stderr()
    home = tmp_path / "home"
    home.mkdir()
    client = Setup(server.base_url, passwords[0], home)
    try:
        yield client
    finally:
        client.stop_processes()


def decide_in_chromium(chromium: Browser, setup: Setup, link: str, code: str, action: str) -> None:
    """Open the link, sign in as admin, check the code, then Approve or Deny."""
    context = chromium.new_context(viewport={"width": 420, "height": 860})
    page = context.new_page()
    try:
        page.goto(link)
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(setup.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_label("Code")).to_have_value(code)
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_label("Code to compare")).to_have_text(code)
        page.get_by_role("button", name=action).click()
        heading = "Device approved" if action == "Approve" else "Request denied"
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    finally:
        context.close()


def start_login(setup: Setup, *args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``devicelink login --no-browser --json`` in the background; its code event."""
    command = [*devicelink_command(), "login", "--no-browser", "--json", *args]
    process = subprocess.Popen(
        command, env=setup.env, cwd=setup.home, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, text=True
    )
    setup.processes.append(process)
    assert process.stderr is not None
    seen = []
    while line := process.stderr.readline():  # the code comes first, as one JSON line
        seen.append(line)
        event = json.loads(line)
        if event.get("event") == "code":
            return process, event
    process.wait(timeout=10)
    pytest.fail(f"login exited with {process.returncode} before a code: {''.join(seen)}")


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """The exit code, the one stdout object and the remaining stderr events."""
    # Read through the same text streams start_login read from (their buffers may hold
    # lines already); the output is a few lines, far below a pipe's capacity.
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    stdout, stderr = process.stdout.read(), process.stderr.read()
    (document,) = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    events = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    return process.returncode, document, events


def me(base_url: str, key: str) -> httpx.Response:
    return httpx.get(f"{base_url}/api/me", headers={"Authorization": f"Bearer {key}"})


# --- login, status, token, logout ------------------------------------------------------------


@pytest.mark.rfc("8628", "3.3")
@pytest.mark.defect(10)
def test_login_approve_status_token_logout(chromium: Browser, setup: Setup) -> None:
    process, code = start_login(setup, "--server", setup.base_url)
    assert code["server"] == setup.base_url
    assert USER_CODE.fullmatch(code["user_code"])
    assert code["verification_uri"] == f"{setup.base_url}/oauth/device/verify"
    link = code["verification_uri_complete"]
    assert link == f"{setup.base_url}/oauth/device/verify?user_code={code['user_code']}"

    decide_in_chromium(chromium, setup, link, code["user_code"], "Approve")
    returncode, result, events = finish(process)
    assert returncode == 0, (result, events)
    assert result["server"] == setup.base_url
    assert result["user"] == "admin"
    assert result["scope"] == "api"
    assert result["expires_at"] is not None
    assert result["stored_in"] == str(setup.credentials)
    assert result["already_logged_in"] is False
    assert [e["event"] for e in events] == ["warning"]  # no keyring: the file, and why

    # No keyring: the key is in a file only its owner can read (created so, never chmod-ed).
    assert stat.S_IMODE(setup.credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(setup.config_dir.stat().st_mode) == 0o700

    status = setup.run("status")  # no --server: the server last logged in to
    assert status.returncode == 0, status.stderr
    assert "User:        admin" in status.stdout
    assert setup.base_url in status.stdout
    assert json.loads(setup.run("status", "--json").stdout)["user"] == "admin"

    again = setup.run("login", "--no-browser")
    assert again.returncode == 0, again.stderr
    assert f"Already logged in to {setup.base_url} as admin" in again.stdout

    token = setup.run("token")
    assert token.returncode == 0, token.stderr
    key = token.stdout.strip()
    assert token.stdout == key + "\n"
    assert key.startswith("dlk_")
    assert token.stderr == ""
    assert me(setup.base_url, key).json()["username"] == "admin"

    # The example CLI's own command uses a key given in its environment.
    whoami = subprocess.run(
        [sys.executable, str(MYCLI), "whoami"],
        env={**setup.env, "MYCLI_SERVER": setup.base_url, "MYCLI_TOKEN": key},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout.startswith(f"You are admin on {setup.base_url}")

    logout = setup.run("logout")
    assert logout.returncode == 0, logout.stderr
    assert "revoked on the server" in logout.stdout
    assert me(setup.base_url, key).status_code == 401  # revoked, not only forgotten
    assert not setup.credentials.exists()
    after = setup.run("token", "--server", setup.base_url)
    assert after.returncode == 6
    assert after.stdout == ""
    assert setup.run("status", "--server", setup.base_url).returncode == 6


@pytest.mark.rfc("8628", "3.5")
def test_login_denied_in_chromium_exits_3(chromium: Browser, setup: Setup) -> None:
    process, code = start_login(setup, "--server", setup.base_url)
    decide_in_chromium(
        chromium, setup, code["verification_uri_complete"], code["user_code"], "Deny"
    )
    returncode, result, _ = finish(process)
    assert returncode == 3
    assert result["error"] == "access_denied"
    assert "denied" in result["message"]
    assert not setup.credentials.exists()
    assert setup.run("status", "--server", setup.base_url).returncode == 6


# --- what a person sees --------------------------------------------------------------------


class Tmux:
    """A tmux server of this test's own (its own socket), one 100x30 window."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        binary = shutil.which("tmux")
        assert binary, "tmux is missing: install Debian's tmux package (apt-get install tmux)"
        self.base = [binary, "-S", str(socket)]
        self.env = env

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*self.base, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def screen(self) -> str:
        # -J: lines the terminal wrapped come back whole (a link stays one line)
        return "\n".join(
            line.rstrip()
            for line in self.run("capture-pane", "-p", "-J", "-t", "login").split("\n")
        )

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.1)
        pytest.fail(f"{pattern!r} did not appear on the screen:\n{screen}")

    def kill(self) -> None:
        subprocess.run(
            [*self.base, "kill-server"], env=self.env, capture_output=True, timeout=10, check=False
        )


@pytest.fixture
def tmux(setup: Setup, tmp_path: Path) -> Iterator[Tmux]:
    env = {**setup.env, "TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    session = Tmux(tmp_path / "tmux.sock", env)
    try:
        yield session
    finally:
        session.kill()


@pytest.mark.rfc("8628", "3.3")
def test_what_a_person_sees_during_login(chromium: Browser, setup: Setup, tmux: Tmux) -> None:
    command = f"devicelink login --no-browser --server {setup.base_url}"
    script = (
        f"printf '$ %s\\n' '{command}'; "
        f"{devicelink_command()[0]} login --no-browser --server {setup.base_url}; "
        'echo "[exit status $?]"; sleep 600'
    )
    tmux.run("new-session", "-d", "-s", "login", "-x", "100", "-y", "30", script)

    waiting = tmux.wait_for(COUNTDOWN)
    code = USER_CODE.search(waiting)
    assert code, waiting
    link = f"{setup.base_url}/oauth/device/verify?user_code={code.group()}"
    assert link in waiting
    assert f"{setup.base_url}/oauth/device/verify and type the code" in waiting
    # The code and the link come before anything else, the countdown last.
    assert waiting.index(link) < waiting.index("no usable keyring") < waiting.index("Waiting")
    assert "(Ctrl-C to cancel)" in waiting
    time.sleep(1.2)  # the countdown is live: it moves while nothing else happens
    later = tmux.screen()
    first, second = COUNTDOWN.search(waiting), COUNTDOWN.search(later)
    assert first
    assert second
    assert int(second[1]) * 60 + int(second[2]) < int(first[1]) * 60 + int(first[2])

    decide_in_chromium(chromium, setup, link, code.group(), "Approve")
    done = tmux.wait_for(r"\[exit status \d+\]")
    assert "[exit status 0]" in done, done
    assert f"Logged in to {setup.base_url} as admin." in done
    assert "The key expires" in done
    assert "~/.config/devicelink/credentials.json" in done
    assert link in done
    assert "Waiting for approval" not in done  # the countdown is gone
    assert "dlk_" not in waiting + done  # the key itself is never shown

    port = setup.base_url.rsplit(":", 1)[1]
    screens = [
        ("while it waits for approval", later),
        ("after Approve in the browser", done),
    ]
    text = "".join(
        f"--- {title} (tmux 100x30) ---\n{screen.rstrip()}\n\n" for title, screen in screens
    )
    captured = (
        "What `devicelink login` shows in a terminal, captured by "
        "tests/e2e/test_cli_login.py\n(the server's port is shown as 8000).\n\n"
        + steady(text.replace(f"127.0.0.1:{port}", "127.0.0.1:8000")).rstrip()
        + "\n"
    )
    # The document changes only when what a person sees changes, not with each run's code.
    if not SESSION_FILE.exists() or SESSION_FILE.read_text() != captured:
        SESSION_FILE.write_text(captured)
    assert SESSION_FILE.read_text() == captured
