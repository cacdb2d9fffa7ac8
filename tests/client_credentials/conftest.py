"""Fixtures of the credential store tests: the keyring doubles of ``keyrings`` installed
with ``keyring.set_keyring`` and restored afterwards, a private home, a credential."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import keyring
import pytest
from keyring.backend import KeyringBackend

from devicelink.client.credentials import Credential
from tests.client_credentials.keyrings import HangingKeyring, MemoryKeyring


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
