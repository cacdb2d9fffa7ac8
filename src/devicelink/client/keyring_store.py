"""Keys in the OS keyring: one entry per server (service name, the normalised server URL
as user name, the credential as JSON as password).

Every keyring call runs in a worker thread with a timeout, because a backend can hang on a
locked D-Bus session. A keyring that is missing, a stand-in that stores nothing, failing
or hung is reported once to ``on_failure`` and not asked again by the same store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import keyring
import keyring.backends.chainer
import keyring.backends.fail
import keyring.backends.null
import keyring.errors
from keyring.backend import KeyringBackend

_T = TypeVar("_T")


class KeyringUnavailable(Exception):
    """This keyring call did not happen (the reason is the message); use the file."""


class KeyringStore:
    """Secrets per server in the keyring under ``service``; :class:`KeyringUnavailable`
    from every call once the keyring has failed."""

    def __init__(self, service: str, *, timeout: float, on_failure: Callable[[str], None]) -> None:
        self.service = service
        self.timeout = timeout
        self.failure: str | None = None
        self._on_failure = on_failure

    def get(self, server: str) -> str | None:
        return self._call(lambda backend: backend.get_password(self.service, server))

    def set(self, server: str, secret: str) -> None:
        self._call(lambda backend: backend.set_password(self.service, server, secret))

    def delete(self, server: str) -> bool:
        """Remove the entry for ``server``; ``False`` when there was none."""
        try:
            self._call(lambda backend: backend.delete_password(self.service, server))
        except keyring.errors.PasswordDeleteError:
            return False  # the keyring's way of saying it had no such entry
        return True

    def _call(self, operation: Callable[[KeyringBackend], _T]) -> _T:
        """Run ``operation`` on the keyring backend in a daemon thread, with a timeout.

        Raises KeyringUnavailable when the keyring has failed before or fails now;
        PasswordDeleteError passes through.
        """
        if self.failure is not None:
            raise KeyringUnavailable(self.failure)
        outcome: list[tuple[bool, Any]] = []
        done = threading.Event()

        def run() -> None:
            try:
                backend = keyring.get_keyring()
                problem = _backend_problem(backend)
                if problem is not None:
                    raise KeyringUnavailable(problem)
                outcome.append((True, operation(backend)))
            except BaseException as exc:  # handed to the calling thread
                outcome.append((False, exc))
            finally:
                done.set()

        # A daemon thread, not an executor: a hung backend must not keep the CLI from exiting.
        threading.Thread(target=run, name="devicelink-keyring", daemon=True).start()
        if not done.wait(self.timeout):
            self._failed(f"the keyring did not answer within {self.timeout:g} s")
        ok, value = outcome[0]
        if ok:
            return cast(_T, value)
        if isinstance(value, keyring.errors.PasswordDeleteError):
            raise value
        if isinstance(value, Exception):
            self._failed(_describe(value))
        raise value

    def _failed(self, reason: str) -> None:
        self.failure = reason
        self._on_failure(reason)
        raise KeyringUnavailable(reason)


def _backend_problem(backend: KeyringBackend) -> str | None:
    # These backends "work" without storing anything: fail raises, null forgets, and
    # a chainer with nothing to chain does nothing.
    if isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring):
        return "no keyring backend is available"
    if isinstance(backend, keyring.backends.chainer.ChainerBackend) and not backend.backends:
        return "no keyring backend is available"
    return None


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyringUnavailable):
        return str(exc)
    if isinstance(exc, keyring.errors.NoKeyringError):
        return "no keyring backend is available"
    first_line = (str(exc).strip().splitlines() or [""])[0][:80]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


__all__ = ["KeyringStore", "KeyringUnavailable"]
