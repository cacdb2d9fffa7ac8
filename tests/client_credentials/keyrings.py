"""Keyring doubles: real keyring backends that keep entries in memory, hang, or are
keyring's own "no keyring". The credential store and command tests install them with
``keyring.set_keyring``."""

from __future__ import annotations

import threading

import keyring.backends.fail
import keyring.backends.null
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

# Defining a backend class registers it with keyring; a negative priority keeps keyring's
# own discovery from ever choosing one of these for another test.
NEVER_DISCOVERED = -10


class MemoryKeyring(KeyringBackend):
    """A keyring that works, in memory."""

    priority = NEVER_DISCOVERED

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated in keyring
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
        super().__init__()  # type: ignore[no-untyped-call]  # unannotated in keyring
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


# keyring leaves these constructors unannotated, hence the ignores.


def no_keyring() -> KeyringBackend:
    """keyring's own backend for "no keyring available": every call raises."""
    backend: KeyringBackend = keyring.backends.fail.Keyring()  # type: ignore[no-untyped-call]
    return backend


def null_keyring() -> KeyringBackend:
    """keyring's backend that accepts everything and stores nothing."""
    backend: KeyringBackend = keyring.backends.null.Keyring()  # type: ignore[no-untyped-call]
    return backend
