"""Fixtures of the command tests: a scripted device-flow server behind
``httpx.MockTransport``, handed to the commands through :class:`ClientHooks` (the root
context's ``obj``), a sleep that does not wait, and an environment of their own.

The client package never imports the server; neither do these tests. The end-to-end
tests (tests/e2e/test_cli_login.py) run the same commands against ``devicelink serve``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import click
import httpx
import keyring
import keyring.backends.fail
import pytest
from click.testing import CliRunner, Result

from devicelink.client import ClientHooks, Credential, CredentialStore
from tests.client_credentials.keyrings import MemoryKeyring, no_keyring

SERVER = "https://login.example.com"
USER_CODE = "WDJB-MJHT"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
"""The commands' wall clock: no test depends on the day it runs."""
EXPIRES_AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
ENVIRONMENT = (
    "DEVICELINK_TOKEN",
    "DEVICELINK_SERVER",
    "MYCLI_TOKEN",
    "MYCLI_SERVER",
    "NO_COLOR",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "SSH_CONNECTION",
    "SSH_TTY",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "BROWSER",
)


@dataclass
class FakeServer:
    """RFC 8414 metadata, device authorization, token polling, RFC 7009 revocation and
    ``/api/me``, scripted. ``token_answers`` are answered in turn: an OAuth error code, or
    ``"granted"`` (a new key). ``revoke_answers`` too: ``"unavailable"`` (503) or an OAuth
    error code (400); once they run out, revocation works. ``down`` makes every request
    fail to connect."""

    issuer: str = SERVER
    token_answers: list[str] = field(default_factory=lambda: ["authorization_pending", "granted"])
    revoke_answers: list[str] = field(default_factory=list)
    authorize_error: str | None = None
    username: str = "alice"
    down: bool = False
    keys: set[str] = field(default_factory=set)
    revoked: list[dict[str, str]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    issued: int = 0
    scope: str = "api"

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if path == "/.well-known/oauth-authorization-server":
            return httpx.Response(200, json=self.metadata())
        if path == "/oauth/device/authorize":
            if self.authorize_error:
                status = 401 if self.authorize_error == "invalid_client" else 400
                return self.error(self.authorize_error, status)
            self.scope = form.get("scope", "api")
            return httpx.Response(
                200,
                json={
                    "device_code": "device-code-" + "x" * 40,
                    "user_code": USER_CODE,
                    "verification_uri": f"{self.issuer}/oauth/device/verify",
                    "verification_uri_complete": (
                        f"{self.issuer}/oauth/device/verify?user_code={USER_CODE}"
                    ),
                    "expires_in": 600,
                    "interval": 5,
                },
            )
        if path == "/oauth/device/token":
            answer = self.token_answers.pop(0) if self.token_answers else "expired_token"
            if answer != "granted":
                return self.error(answer)
            self.issued += 1
            key = f"dlk_issued{self.issued}_check"
            self.keys.add(key)
            return httpx.Response(
                200,
                json={
                    "access_token": key,
                    "token_type": "Bearer",
                    "expires_in": 2_592_000,
                    "scope": self.scope,
                },
            )
        if path == "/oauth/revoke":
            return self.revoke(form)
        if path == "/api/me":
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            if key not in self.keys:
                return self.error("invalid_token", 401)
            return httpx.Response(
                200,
                json={
                    "sub": self.username,
                    "username": self.username,
                    "client_id": "devicelink-cli",
                    "scope": "api",
                    "key": {"id": "1", "expires_at": EXPIRES_AT.isoformat()},
                },
            )
        return httpx.Response(404, json={"error": "not_found"})

    def revoke(self, form: dict[str, str]) -> httpx.Response:
        answer = self.revoke_answers.pop(0) if self.revoke_answers else "ok"
        if answer == "unavailable":
            return httpx.Response(503, text="Service Unavailable")
        if answer != "ok":
            return self.error(answer)
        self.revoked.append(form)
        self.keys.discard(form.get("token", ""))
        return httpx.Response(200, json={})

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "device_authorization_endpoint": f"{self.issuer}/oauth/device/authorize",
            "token_endpoint": f"{self.issuer}/oauth/device/token",
            "revocation_endpoint": f"{self.issuer}/oauth/revoke",
            "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code"],
        }

    @staticmethod
    def error(code: str, status: int = 400) -> httpx.Response:
        return httpx.Response(status, json={"error": code, "error_description": f"{code}!"})


@dataclass
class Sleeps:
    """A ``sleep`` that records and returns at once (or raises, e.g. KeyboardInterrupt)."""

    waited: list[float] = field(default_factory=list)
    raise_on: int | None = None
    exception: type[BaseException] = KeyboardInterrupt

    def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)
        if self.raise_on is not None and len(self.waited) >= self.raise_on:
            raise self.exception


@dataclass
class Browser:
    """Records the URLs the commands asked to open."""

    opened: list[str] = field(default_factory=list)
    works: bool = True

    def __call__(self, url: str) -> bool:
        self.opened.append(url)
        return self.works


@dataclass
class Cli:
    """Runs a Click group with the fake server, sleep, browser and config directory."""

    server: FakeServer
    sleeps: Sleeps
    browser: Browser
    config_dir: Path | None
    browser_env: dict[str, str] = field(default_factory=dict)

    @property
    def credentials_file(self) -> Path:
        assert self.config_dir is not None
        return self.config_dir / "credentials.json"

    def hooks(self) -> ClientHooks:
        return ClientHooks(
            transport=self.server.transport(),
            sleep=self.sleeps,
            browser=self.browser,
            config_dir=self.config_dir,
            browser_env=self.browser_env,
            now=lambda: NOW,
        )

    def __call__(
        self,
        group: click.Command,
        *args: str,
        env: dict[str, str] | None = None,
        prog_name: str = "devicelink",
    ) -> Result:
        return CliRunner().invoke(group, list(args), obj=self.hooks(), env=env, prog_name=prog_name)

    def store(
        self, service: str = "devicelink", token_env: str = "DEVICELINK_TOKEN"
    ) -> CredentialStore:
        return CredentialStore(
            service=service, config_dir=self.config_dir, token_env=token_env, warn=lambda m: None
        )

    def save(
        self, key: str = "dlk_stored_check", *, valid: bool = True, **fields: Any
    ) -> Credential:
        values: dict[str, Any] = {
            "server": SERVER,
            "access_token": key,
            "client_id": "devicelink-cli",
            "scope": "api",
            "expires_at": EXPIRES_AT,
            "created_at": NOW,
            "username": "alice",
        }
        values.update(fields)
        credential = Credential(**values)
        self.store().save(credential)
        if valid:
            self.server.keys.add(key)
        return credential


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the runner's environment, home, keyring or terminal settings."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    previous = keyring.get_keyring()
    keyring.set_keyring(no_keyring())
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> MemoryKeyring:
    backend = MemoryKeyring()
    keyring.set_keyring(backend)  # `isolated` restores the previous one
    return backend


@pytest.fixture
def fake_server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def cli(fake_server: FakeServer, tmp_path: Path) -> Cli:
    return Cli(fake_server, Sleeps(), Browser(), tmp_path / "config")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as JSON (fails on a line that is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


Invoke = Callable[..., Result]
