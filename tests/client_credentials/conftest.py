"""Keyring doubles for the credential store: real keyring backends, installed with
``keyring.set_keyring`` and restored afterwards."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from devicelink.client.credentials import Credential

# Defining a backend class registers it with keyring; a negative priority keeps keyring's
# own discovery from ever choosing one of these for another test.
NEVER_DISCOVERED = -10


class MemoryKeyring(KeyringBackend):
    """A keyring that works, in memory."""

    priority = NEVER_DISCOVERED

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise PasswordDeleteError("no such entry") from None


class HangingKeyring(KeyringBackend):
    """A keyring that never answers (a locked D-Bus session), until the test ends."""

    priority = NEVER_DISCOVERED

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.calls = 0

    def _hang(self) -> None:
        self.calls += 1
        self.release.wait(60)

    def get_password(self, service: str, username: str) -> str | None:
        self._hang()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self._hang()

    def delete_password(self, service: str, username: str) -> None:
        self._hang()


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test sees the runner's DEVICELINK_TOKEN, home or XDG directories."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DEVICELINK_TOKEN", raising=False)
        patch.delenv("XDG_CONFIG_HOME", raising=False)
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture
def install_keyring() -> Iterator[Callable[[KeyringBackend], None]]:
    """Installs a keyring backend for the test; the previous one comes back afterwards."""
    previous = keyring.get_keyring()
    try:
        yield keyring.set_keyring
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring(install_keyring: Callable[[KeyringBackend], None]) -> MemoryKeyring:
    backend = MemoryKeyring()
    install_keyring(backend)
    return backend


@pytest.fixture
def hanging_keyring(
    install_keyring: Callable[[KeyringBackend], None],
) -> Iterator[HangingKeyring]:
    backend = HangingKeyring()
    install_keyring(backend)
    try:
        yield backend
    finally:
        backend.release.set()  # let the abandoned worker threads finish


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def make_credential(server: str = "https://login.example.com", **overrides: object) -> Credential:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    fields: dict[str, object] = {
        "server": server,
        "access_token": "dlk_" + server.split("//")[-1].replace(".", "_") + "_secret",
        "client_id": "devicelink-cli",
        "scope": "read",
        "expires_at": now + timedelta(days=30),
        "created_at": now,
        "username": "alice",
    }
    fields.update(overrides)
    return Credential(**fields)  # type: ignore[arg-type]
