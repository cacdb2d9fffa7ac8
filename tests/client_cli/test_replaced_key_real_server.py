"""Issue 16, item 1: a login that replaces a stored key revokes it, and two logins at once
leave no key working that nobody holds.

Against a real ``devicelink serve`` on loopback (see test_unrevoked_key_real_server.py):
what matters is whether the old key still answers ``/api/me``, and how many keys the
operator's ``keys list`` counts as active, not what the client says.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from devicelink.client import CredentialStore
from devicelink.client.file_store import LOGIN_LOCK_FILE, FileStore
from devicelink.client.http import machine_name
from tests.support.http import approve, run, sign_in
from tests.support.processes import clean_env, devicelink_command, run_devicelink

from .conftest import json_lines
from .test_unrevoked_key_real_server import RealServer, User, server, user

pytestmark = pytest.mark.slow

__all__ = ["server", "user"]  # the fixtures, shared with the logout tests

LOGIN_TIMEOUT = 60.0


def active_keys(server: RealServer) -> list[dict[str, Any]]:
    """The operator's view: every key the server still accepts."""
    listed = run_devicelink("keys", "list", "--json", env=server.env, cwd=server.cwd)
    assert listed.returncode == 0, listed.stderr
    keys: list[dict[str, Any]] = json.loads(listed.stdout)
    return keys


def test_a_login_as_another_client_revokes_the_key_it_replaces(
    server: RealServer, user: User
) -> None:
    added = run_devicelink("clients", "add", "ci-bot", env=server.env, cwd=server.cwd)
    assert added.returncode == 0, added.stderr
    ci_bot = user.login("--client-id", "ci-bot")

    result = user("login", "--server", server.url, "--device-code")

    assert result.exit_code == 0, result.output
    assert "The key it replaces was revoked on the server." in result.stdout
    new = user.key()
    assert new is not None
    assert new != ci_bot
    assert server.me(ci_bot) == 401
    assert server.me(new) == 200
    assert user.keys_on_disk() == [new]
    (live,) = active_keys(server)
    assert live["client_id"] == "devicelink-cli"
    assert f"host {machine_name()}" in live["name"]  # issue 16, item 9: which computer


def test_login_force_says_the_replaced_key_is_revoked_in_its_json(
    server: RealServer, user: User
) -> None:
    old = user.login()
    result = user("login", "--server", server.url, "--device-code", "--force", "--json")
    assert result.exit_code == 0, result.output
    (document,) = json_lines(result.stdout)
    assert document["previous_key"] == "revoked"
    assert server.me(old) == 401


def test_a_first_login_replaces_nothing(server: RealServer, user: User) -> None:
    result = user("login", "--server", server.url, "--device-code", "--json")
    assert result.exit_code == 0, result.output
    (document,) = json_lines(result.stdout)
    assert document["previous_key"] is None


def test_two_logins_at_once_leave_exactly_one_live_key(server: RealServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    config_dir = home / ".config" / "devicelink"
    command = [*devicelink_command(), "login", "--server", server.url, "--device-code", "--json"]
    # Held while both sign in: both then reach the store together, as two logins that
    # the user approved at the same moment would.
    with FileStore(config_dir).exclusive(LOGIN_LOCK_FILE):
        logins = [
            subprocess.Popen(
                command,
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            with httpx.Client(base_url=server.url) as http:
                run(http, sign_in("admin", server.password))
                for login in logins:
                    run(http, approve(_user_code(login)))
            _wait_for(lambda: len(active_keys(server)) == 2)  # both hold a key, and wait
        except BaseException:
            for login in logins:
                login.kill()
            raise
    answers = [login.communicate(timeout=LOGIN_TIMEOUT) for login in logins]
    assert [login.returncode for login in logins] == [0, 0], answers

    (live,) = active_keys(server)  # the other one was revoked by the login that replaced it
    stored = CredentialStore(config_dir=config_dir, use_keyring=False, warn=lambda m: None)
    credential = stored.get(server.url)
    assert credential is not None
    assert server.me(credential.access_token) == 200
    assert stored.pending_revocation(server.url) == []
    previous = sorted(str(json_lines(out)[0]["previous_key"]) for out, _ in answers)
    assert previous == ["None", "revoked"]
    assert live["client_id"] == "devicelink-cli"


def _user_code(login: subprocess.Popen[str]) -> str:
    """The code a ``login --json`` shows first (a JSON line on standard error)."""
    assert login.stderr is not None
    for line in login.stderr:
        event = json.loads(line)
        if event.get("event") == "code":
            return str(event["user_code"])
    raise AssertionError(f"the login ended without a code (exit {login.wait()})")


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
