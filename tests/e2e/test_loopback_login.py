"""``devicelink login`` on the same machine, end to end: a real ``devicelink serve`` on
loopback, ``devicelink login`` as a subprocess with ``$BROWSER`` set to a small script, and
that script driving Chromium (Debian's package, through Playwright) through the server's
sign-in and consent pages, as a person would in the browser ``login`` opened.

With ``$BROWSER`` set, ``login`` picks the loopback flow (authorization code + PKCE,
redirected to its listener on 127.0.0.1); with ``--device-code`` the device flow, whose
link the same script opens (sign in, Continue, Approve). Either way the key is stored and
``devicelink status`` names the user.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.processes import clean_env, devicelink_command, one_time_passwords
from tests.support.secret_scanner import REGISTRY
from tests.support.servers import Launcher

pytestmark = [pytest.mark.slow, pytest.mark.browser]

BROWSER_SCRIPT = """\
#!{python}
# $BROWSER for the test: `script URL`, as Python's webbrowser runs it. Drives Chromium
# through the pages the URL leads to and writes what it saw to $E2E_BROWSER_LOG.
import json, os, sys
from playwright.sync_api import expect, sync_playwright

url = sys.argv[1]
seen = {{"url": url}}
try:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path={chromium!r}, args={args!r})
        page = browser.new_page()
        page.goto(url)
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(os.environ["E2E_PASSWORD"])
        page.get_by_role("button", name="Sign in").click()
        if "/oauth/device/verify" in url:
            page.get_by_role("button", name="Continue").click()
            page.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("heading", name="Device approved")).to_be_visible()
        else:
            seen["consent"] = page.locator("main").inner_text()
            page.get_by_role("button", name=os.environ.get("E2E_DECISION", "Approve")).click()
            page.wait_for_url(lambda address: "/callback?" in address)
        seen["final_url"] = page.url
        seen["final_text"] = page.locator("body").inner_text()
        browser.close()
except Exception as exc:
    seen["error"] = repr(exc)
with open(os.environ["E2E_BROWSER_LOG"], "a") as log:
    log.write(json.dumps(seen) + "\\n")
"""


class Machine:
    """A desktop where ``$BROWSER`` is the script, logged in to nothing yet."""

    def __init__(self, base_url: str, password: str, home: Path, server_dir: Path) -> None:
        self.base_url = base_url
        self.server_dir = server_dir
        self.browser_log = home / "browser.jsonl"
        script = home / "browser"
        script.write_text(
            BROWSER_SCRIPT.format(python=sys.executable, chromium=CHROMIUM, args=CHROMIUM_ARGS)
        )
        script.chmod(0o755)
        self.home = home
        self.logins = 0
        self.env = clean_env(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",  # the 0600 file
            BROWSER=str(script),
            E2E_PASSWORD=password,
            E2E_BROWSER_LOG=str(self.browser_log),
        )
        for name in ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION", "SSH_TTY", "NO_COLOR"):
            self.env.pop(name, None)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*devicelink_command(), *args],
            env=self.env | env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def login(self, *args: str, **env: str) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        """``devicelink login --json ARGS``: the exit code, the result, the events."""
        done = self.run("login", "--server", self.base_url, "--json", *args, **env)
        # Kept where the secrets audit reads server output: login's output must not show
        # the authorization code its listener received (``devicelink token``'s shows a
        # key on purpose: not kept).
        self.logins += 1
        (self.home / f"login-{self.logins}.stdout").write_text(done.stdout)
        (self.home / f"login-{self.logins}.stderr").write_text(done.stderr)
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, (done.stdout, done.stderr, self.pages(wait=False))
        events = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
        return done.returncode, lines[0], events

    def pages(self, wait: bool = True) -> list[dict[str, Any]]:
        """What the browser script saw, one entry per URL it was given; the script may
        still be reading the last page when ``login`` is done: waited for (20 s at most)."""
        deadline = time.monotonic() + (20 if wait else 0)
        while not self.browser_log.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not self.browser_log.exists():
            return []
        return [json.loads(line) for line in self.browser_log.read_text().splitlines()]


@pytest.fixture
def machine(launch: Launcher, tmp_path: Path) -> Machine:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = launch(env=clean_env(DEVICELINK_INTERVAL="1"), cwd=server_dir)
    (password,) = one_time_passwords(server.stderr())
    home = tmp_path / "home"
    home.mkdir()
    return Machine(server.base_url, password, home, server_dir)


@pytest.mark.rfc("8252", "7.3")
@pytest.mark.rfc("9207", "2.4")
def test_login_with_browser_set_signs_in_on_this_machine(machine: Machine) -> None:
    returncode, result, events = machine.login()
    assert returncode == 0, (result, events, machine.pages())
    assert result["method"] == "loopback"
    assert result["user"] == "admin"
    assert result["already_logged_in"] is False
    assert result["stored_in"] == str(machine.home / ".config" / "devicelink" / "credentials.json")
    assert events[0]["event"] == "authorize"
    assert events[0]["url"].startswith(f"{machine.base_url}/oauth/authorize?")
    assert not any(event["event"] == "code" for event in events)

    (page,) = machine.pages()
    assert "error" not in page, page
    assert page["url"] == events[0]["url"]  # $BROWSER was given the link shown
    assert "an application on this computer" in page["consent"]
    assert page["final_url"].startswith(events[0]["redirect_uri"] + "?")
    (code,) = parse_qs(urlsplit(page["final_url"]).query)["code"]
    assert REGISTRY.add("authorization_code", code)  # the secrets audit looks for it
    assert "return to your terminal" in page["final_text"]

    status = machine.run("status")  # no --server: the server last logged in to
    assert status.returncode == 0, status.stderr
    assert "User:        admin" in status.stdout
    token = machine.run("token")
    assert token.returncode == 0
    assert token.stdout.startswith("dlk_")


@pytest.mark.rfc("6749", "4.1.2.1")
def test_deny_in_the_browser_exits_3(machine: Machine) -> None:
    returncode, result, _ = machine.login(E2E_DECISION="Deny")
    assert returncode == 3
    assert result["error"] == "access_denied"
    (page,) = machine.pages()
    assert "Sign-in denied" in page["final_text"]
    assert machine.run("status", "--server", machine.base_url).returncode == 6


@pytest.mark.rfc("8628", "3.3")
def test_login_device_code_runs_the_device_flow(machine: Machine) -> None:
    returncode, result, events = machine.login("--device-code")
    assert returncode == 0, (result, events, machine.pages())
    assert result["method"] == "device"
    assert result["user"] == "admin"
    code = events[0]
    assert code["event"] == "code"
    (page,) = machine.pages()
    assert "error" not in page, page
    assert page["url"] == code["verification_uri_complete"]  # $BROWSER opened the device link

    status = machine.run("status")
    assert status.returncode == 0, status.stderr
    assert "User:        admin" in status.stdout


def test_a_client_without_loopback_redirect_uris_falls_back_to_the_device_flow(
    machine: Machine,
) -> None:
    # An operator's client registered as before same-device sign-in: the device grant only.
    added = subprocess.run(
        [*devicelink_command(), "clients", "add", "mycli", "--name", "My CLI"],
        env=clean_env(),
        cwd=machine.server_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    returncode, result, events = machine.login("--client-id", "mycli")
    assert returncode == 0, (result, events, machine.pages())
    assert result["method"] == "device"
    assert result["client_id"] == "mycli"
    assert events[0]["event"] == "code"
    (note,) = [event for event in events if event["event"] == "note"]
    assert "signing in with a code instead" in note["message"]
    (page,) = machine.pages()  # the browser saw the device link, never an error page
    assert page["url"] == events[0]["verification_uri_complete"]
    assert "error" not in page, page


def test_ctrl_c_while_waiting_ends_cleanly_and_closes_the_port(machine: Machine) -> None:
    # A browser that opens nothing: the user gives up and presses Ctrl-C.
    command = [*devicelink_command(), "login", "--server", machine.base_url, "--json"]
    process = subprocess.Popen(
        command,
        env=machine.env | {"BROWSER": "/bin/true"},
        cwd=machine.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        authorize = json.loads(process.stderr.readline())
        assert authorize["event"] == "authorize"
        port = urlsplit(authorize["redirect_uri"]).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # listening while it waits
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert json.loads(stdout) == {"error": "interrupted", "message": "interrupted (Ctrl-C)"}
    assert "Traceback" not in stderr
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the port is closed
