"""Keys in the OS keyring: one entry per server (service name, the normalised server URL
as user name, the credential as JSON as password).

Every keyring call runs in a worker thread with a timeout, because a backend can hang on a
locked D-Bus session. A keyring that is missing, a stand-in that stores nothing, failing
or hung is reported once to ``on_failure`` and not asked again by the same store.

The keyring package is imported on the first call, not with this module: importing it and
finding its backends takes longer than the rest of ``devicelink token``. A process whose
environment turns the keyring off (``PYTHON_KEYRING_BACKEND`` naming keyring's ``null`` or
``fail`` backend, as a server or a CI job may) never imports it: the answer is known.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from keyring.backend import KeyringBackend

    _T = TypeVar("_T")

NO_BACKEND = "no keyring backend is available"

_OFF_BACKENDS = frozenset({"keyring.backends.null.Keyring", "keyring.backends.fail.Keyring"})
"""Values of ``PYTHON_KEYRING_BACKEND`` with which keyring's backend stores nothing (keyring
reads the variable as it is, before its configuration file, and loads that class)."""


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
        except KeyringUnavailable:
            raise
        except Exception as exc:
            if isinstance(exc, _keyring_errors().PasswordDeleteError):
                return False  # the keyring's way of saying it had no such entry
            raise
        return True

    def _call(self, operation: Callable[[KeyringBackend], _T]) -> _T:
        """Run ``operation`` on the keyring backend in a daemon thread, with a timeout.

        Raises KeyringUnavailable when the keyring has failed before or fails now;
        PasswordDeleteError passes through.
        """
        if self.failure is not None:
            raise KeyringUnavailable(self.failure)
        if turned_off():
            self._failed(NO_BACKEND)  # what keyring's null or fail backend would lead to
        import keyring  # here, not in the worker: a slow first import is not a hung keyring

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
            from typing import cast  # keyring imported typing already

            return cast("_T", value)
        if isinstance(value, _keyring_errors().PasswordDeleteError):
            raise value
        if isinstance(value, Exception):
            self._failed(_describe(value))
        raise value

    def _failed(self, reason: str) -> None:
        self.failure = reason
        self._on_failure(reason)
        raise KeyringUnavailable(reason)


def turned_off() -> bool:
    """Whether keyring, once imported, would load a backend that stores nothing, because
    the environment says so. Only before keyring is imported: from then on it decides
    (a program may have chosen a backend with ``keyring.set_keyring``)."""
    return "keyring" not in sys.modules and (
        os.environ.get("PYTHON_KEYRING_BACKEND") in _OFF_BACKENDS
    )


def _keyring_errors() -> Any:
    import keyring.errors

    return keyring.errors


def _backend_problem(backend: KeyringBackend) -> str | None:
    import keyring.backends.chainer
    import keyring.backends.fail
    import keyring.backends.null

    # These backends "work" without storing anything: fail raises, null forgets, and
    # a chainer with nothing to chain does nothing.
    if isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring):
        return NO_BACKEND
    if isinstance(backend, keyring.backends.chainer.ChainerBackend) and not backend.backends:
        return NO_BACKEND
    return None


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyringUnavailable):
        return str(exc)
    if isinstance(exc, _keyring_errors().NoKeyringError):
        return NO_BACKEND
    first_line = (str(exc).strip().splitlines() or [""])[0][:80]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


__all__ = ["KeyringStore", "KeyringUnavailable", "turned_off"]
