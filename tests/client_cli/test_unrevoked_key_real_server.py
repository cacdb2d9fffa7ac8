"""Issue 13, security finding 6: a logout that cannot revoke the key keeps it, marked to be
revoked, instead of forgetting a key that still works on the server for 30 days.

Against a real ``devicelink serve`` on loopback: the commands run in this process (Click's
runner) and talk to it over real HTTP; the user approves the sign-in through the server's
own pages (a scripted browser over HTTP, no Chromium). "Unreachable" is the server
stopped (its port closed); "back" is the same server started again on the same port, the
same database and secret, where the key is checked with ``/api/me`` (DESIGN.md defect 10:
what matters is whether the key still works on the server, not what the client says).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner, Result

from devicelink.cli import main
from devicelink.client import ClientHooks, CredentialStore, ExitCode
from tests.client_credentials.keyrings import MemoryKeyring
from tests.support.http import CLIENT_ID, approve, run, sign_in
from tests.support.processes import clean_env, one_time_passwords
from tests.support.servers import Launcher, ServerProcess

from .conftest import Sleeps, json_lines

pytestmark = pytest.mark.slow


class RealServer:
    """A ``devicelink serve`` (embedded default, its first account ``admin``) that the
    test stops and starts again on the same port, database and secret."""

    def __init__(self, launch: Launcher, cwd: Path) -> None:
        self._launch = launch
        self.cwd = cwd
        self.env = clean_env(DEVICELINK_INTERVAL="1")
        self.process: ServerProcess = launch(env=self.env, cwd=cwd)
        (self.password,) = one_time_passwords(self.process.stderr())
        self.url = self.process.base_url
        self.devices_page = f"{self.url}/devices"
        with httpx.Client(base_url=self.url) as http:
            # The server's clock, not this process's (which a test run may move a year
            # ahead): keys expire 30 days after the server's now.
            self.now = parsedate_to_datetime(http.get("/healthz").headers["date"])

    def stop(self) -> None:
        self.process.stop()

    def start_again(self) -> None:
        self.process = self._launch(env=self.env, cwd=self.cwd, port=self.process.port)

    def me(self, key: str) -> int:
        """The status of ``/api/me`` with ``key``: 200 while the key works, 401 after."""
        with httpx.Client(base_url=self.url) as http:
            return http.get("/api/me", headers={"Authorization": f"Bearer {key}"}).status_code

    def revoke_by_hand(self, key: str) -> None:
        """What the user does on the devices page: the key stops working (RFC 7009 here)."""
        with httpx.Client(base_url=self.url) as http:
            answer = http.post("/oauth/revoke", data={"token": key, "client_id": CLIENT_ID})
        assert answer.status_code == 200

    def approve_in_browser(self, url: str) -> bool:
        """The browser the login opens: sign in as ``admin`` and approve the code."""
        (user_code,) = parse_qs(urlsplit(url).query)["user_code"]
        with httpx.Client(base_url=self.url) as http:
            run(http, sign_in("admin", self.password))
            run(http, approve(user_code))
        return True


class User:
    """The commands as the user runs them against ``server``, with a credentials file of
    their own (no keyring) and waits that do not wait."""

    def __init__(self, server: RealServer, config_dir: Path) -> None:
        self.server = server
        self.config_dir = config_dir
        self.sleeps = Sleeps()

    def __call__(self, *args: str) -> Result:
        hooks = ClientHooks(
            sleep=self.sleeps,
            browser=self.server.approve_in_browser,
            config_dir=self.config_dir,
            browser_env={"DISPLAY": ":0"},
            now=lambda: self.server.now,
        )
        return CliRunner().invoke(main, list(args), obj=hooks, prog_name="devicelink")

    def login(self, *args: str) -> str:
        """Log in with the device flow (approved in the browser); the new key."""
        result = self("login", "--server", self.server.url, "--device-code", *args)
        assert result.exit_code == 0, result.output
        key = self.key()
        assert key is not None
        assert self.server.me(key) == 200
        return key

    def store(self) -> CredentialStore:
        return CredentialStore(config_dir=self.config_dir, warn=lambda message: None)

    def key(self) -> str | None:
        """The key the commands would use (``None``: none)."""
        credential = self.store().get(self.server.url)
        return None if credential is None else credential.access_token

    def file(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.config_dir / "credentials.json").read_text())
        return document

    def keys_on_disk(self) -> list[str]:
        """Every key the credentials file still holds, whatever its state."""
        path = self.config_dir / "credentials.json"
        if not path.exists():
            return []
        text = path.read_text()
        return sorted(set(_keys_in(json.loads(text))))


def _keys_in(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "access_token" and isinstance(value, str):
                yield value
            else:
                yield from _keys_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys_in(value)


@pytest.fixture
def server(launch: Launcher, tmp_path: Path) -> RealServer:
    return RealServer(launch, tmp_path / "server")


@pytest.fixture
def user(server: RealServer, tmp_path: Path) -> User:
    return User(server, tmp_path / "config")


def assert_no_key_in(result: Result, *keys: str) -> None:
    for key in keys:
        assert key not in result.stdout
        assert key not in result.stderr


# --- the finding ---------------------------------------------------------------------------


@pytest.mark.defect(10)
@pytest.mark.rfc("7009", "2.1")
def test_logout_with_the_server_down_keeps_the_key_marked_and_the_next_logout_revokes_it(
    server: RealServer, user: User
) -> None:
    key = user.login()
    server.stop()

    failed = user("logout")
    assert failed.exit_code == ExitCode.NOT_REVOKED, failed.output
    assert_no_key_in(failed, key)
    message = " ".join(failed.stderr.split())
    assert "was not revoked" in message
    assert "still valid" in message
    assert "devicelink logout" in message  # what revokes it next
    assert server.devices_page in message  # where to revoke it by hand
    # Kept on this computer (the credentials file, 0600), marked to be revoked...
    assert user.keys_on_disk() == [key]
    assert user.store().pending_revocation(server.url)[0].access_token == key
    # ...and never handed out again.
    assert user.key() is None
    token = user("token")
    assert token.exit_code != 0
    assert token.stdout == ""
    assert_no_key_in(token, key)
    assert "marked to be revoked" in " ".join(token.stderr.split())

    server.start_again()
    assert server.me(key) == 200  # the client was right: the key still works

    done = user("logout")
    assert done.exit_code == 0, done.output
    assert server.me(key) == 401  # revoked on the server
    assert user.keys_on_disk() == []  # then forgotten
    assert user.store().pending_revocation(server.url) == []
    assert user("logout").stdout.startswith("Not logged in")


@pytest.mark.defect(10)
def test_the_next_status_revokes_a_key_marked_for_revocation_first(
    server: RealServer, user: User
) -> None:
    key = user.login()
    server.stop()
    assert user("logout").exit_code == ExitCode.NOT_REVOKED
    still_down = user("status")
    assert still_down.exit_code == ExitCode.NOT_REVOKED
    assert user.keys_on_disk() == [key]

    server.start_again()
    status = user("status")
    assert server.me(key) == 401
    assert status.exit_code == ExitCode.NOT_LOGGED_IN, status.output
    assert "revoked" in status.stderr
    assert_no_key_in(status, key)
    assert user.keys_on_disk() == []


@pytest.mark.defect(10)
def test_the_next_token_revokes_a_key_marked_for_revocation_and_prints_nothing(
    server: RealServer, user: User
) -> None:
    key = user.login()
    server.stop()
    assert user("logout").exit_code == ExitCode.NOT_REVOKED
    server.start_again()

    token = user("token")
    assert token.stdout == ""
    assert token.exit_code == ExitCode.NOT_LOGGED_IN
    assert server.me(key) == 401
    assert user.keys_on_disk() == []


@pytest.mark.defect(10)
def test_login_with_a_key_marked_for_revocation_revokes_it_before_signing_in_anew(
    server: RealServer, user: User
) -> None:
    old = user.login()
    server.stop()
    assert user("logout").exit_code == ExitCode.NOT_REVOKED
    server.start_again()

    new = user.login()
    assert new != old
    assert server.me(old) == 401
    assert user.keys_on_disk() == [new]
    assert user.store().pending_revocation(server.url) == []


@pytest.mark.defect(10)
@pytest.mark.rfc("7009", "2.2")
def test_a_key_revoked_by_hand_meanwhile_is_forgotten_by_the_next_logout(
    server: RealServer, user: User
) -> None:
    key = user.login()
    server.stop()
    assert user("logout", "--json").exit_code == ExitCode.NOT_REVOKED
    server.start_again()
    server.revoke_by_hand(key)  # on the devices page, as the message suggested

    done = user("logout", "--json")  # the server answers 200: nothing left to revoke
    assert done.exit_code == 0, done.output
    assert json_lines(done.stdout) == [{"server": server.url, "revoked": True, "removed": True}]
    assert user.keys_on_disk() == []


@pytest.mark.defect(10)
def test_logout_force_forgets_an_unrevoked_key_and_says_where_to_revoke_it(
    server: RealServer, user: User
) -> None:
    key = user.login()
    server.stop()
    user.sleeps.waited.clear()

    forced = user("logout", "--force")
    assert forced.exit_code == ExitCode.NOT_REVOKED, forced.output
    message = " ".join(forced.stderr.split())
    assert "may still be valid" in message
    assert server.devices_page in message
    assert_no_key_in(forced, key)
    assert user.keys_on_disk() == []
    assert user.store().pending_revocation(server.url) == []
    assert len(user.sleeps.waited) == 3  # one revocation, with its usual retries

    server.start_again()
    assert server.me(key) == 200  # what "may still be valid" warns about
    server.revoke_by_hand(key)
    assert server.me(key) == 401


def test_the_keyring_keeps_a_key_marked_for_revocation_out_of_the_file(
    server: RealServer, user: User, memory_keyring: MemoryKeyring
) -> None:
    backend = memory_keyring
    key = user.login()
    server.stop()
    assert user("logout").exit_code == ExitCode.NOT_REVOKED
    assert user.keys_on_disk() == []  # no key on disk
    assert any(key in secret for secret in backend.entries.values())
    server.start_again()
    assert user("logout").exit_code == 0
    assert server.me(key) == 401
    assert backend.entries == {}
