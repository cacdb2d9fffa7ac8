"""A keyring backend that keeps its entries in a JSON file, so that a ``devicelink`` process
started by a test finds what the test stored: ``PYTHON_KEYRING_BACKEND=`` this class, and
``FILE_KEYRING_PATH`` the file (keyring builds the backend with no arguments). It stands
for the OS keyring where none runs (no Secret Service on a test machine); bench/
token_startup.py uses it too, as the cheapest keyring there is."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

PATH_ENV = "FILE_KEYRING_PATH"
BACKEND = f"{__name__}.FileKeyring"
"""The value of ``PYTHON_KEYRING_BACKEND`` that selects it (with the repository on
``PYTHONPATH``)."""


class FileKeyring(KeyringBackend):
    priority = -10  # never chosen by keyring's own discovery

    @property
    def path(self) -> Path:
        return Path(os.environ[PATH_ENV])

    def _entries(self) -> dict[str, str]:
        try:
            entries: dict[str, str] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return entries

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}\n{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        self.path.write_text(json.dumps({**self._entries(), f"{service}\n{username}": password}))

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}\n{username}", None) is None:
            raise PasswordDeleteError("no such entry")
        self.path.write_text(json.dumps(entries))
