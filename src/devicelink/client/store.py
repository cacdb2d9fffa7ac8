"""Where the client keeps its API keys: the OS keyring (``keyring_store``), or a private
file (``file_store``) where none works, with a one-line warning, shown once (the config
directory remembers it was shown, for the reason it gave).

A key that a logout could not revoke stays where it is, marked to be revoked
(:meth:`CredentialStore.mark_for_revocation`): it is no longer handed out, and it is never
lost, not even when a later login replaces it (it then moves aside, still marked, to the
keyring entry ``SERVER#revocation-pending`` or the file's ``revocation_pending`` section).

This module does not own the HTTP calls (login, revocation) nor the commands.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import platformdirs

from devicelink.client.credentials import DEFAULT_TOKEN_ENV, Credential, CredentialStoreError
from devicelink.client.file_store import LOGIN_LOCK_FILE, FileStore
from devicelink.client.keyring_store import KeyringStore, KeyringUnavailable
from devicelink.client.urls import normalise_server, other_spellings

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Final, TypeVar

    T = TypeVar("T")

SUPERSEDED_ENTRY: Final = "#revocation-pending"
"""Added to a server's URL, the keyring user name of its keys marked to be revoked that a
later login replaced (a normalised server URL never holds a ``#``)."""

KEYRING: Final = "keyring"
"""What :meth:`CredentialStore.save` returns when the key went to the OS keyring."""

# The fallback warning is printed once per process for each credentials file.
_warned_paths: set[str] = set()
_warned_lock = threading.Lock()


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr)


def _display_path(path: Path) -> str:
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError):
        return str(path)


class CredentialStore:
    """API keys per server: the OS keyring where one works, else a private file.

    ``service`` names the keyring entries and the default config directory, so a host CLI
    keeps its keys apart from devicelink's. A CLI should create one store per process: a
    keyring that failed or timed out is not asked again by the same store.
    """

    def __init__(
        self,
        *,
        service: str = "devicelink",
        config_dir: Path | None = None,
        keyring_timeout: float = 3.0,
        use_keyring: bool = True,
        warn: Callable[[str], None] | None = _print_warning,
        token_env: str = DEFAULT_TOKEN_ENV,
    ) -> None:
        self.service = service
        self.config_dir = (
            Path(config_dir)
            if config_dir is not None
            else Path(platformdirs.user_config_dir(service, appauthor=False))
        )
        self.keyring_timeout = keyring_timeout
        self.use_keyring = use_keyring
        self.token_env = token_env
        self._warn = warn
        self._file = FileStore(self.config_dir)
        self._keyring = KeyringStore(
            service, timeout=keyring_timeout, on_failure=self._keyring_failed
        )

    @property
    def credentials_path(self) -> Path:
        return self._file.credentials_path

    @property
    def state_path(self) -> Path:
        return self._file.state_path

    @property
    def keyring_failure(self) -> str | None:
        """Why this store stopped using the keyring, or None while it has not."""
        return self._keyring.failure

    def get(self, server: str) -> Credential | None:
        """The key to use for ``server`` (any URL form), or None. A key marked to be
        revoked is never returned (it is in :meth:`pending_revocation`).

        The keyring is asked first, then the file; if both hold one (a keyring that came
        back after a fallback), the more recently created wins.
        """
        current = self._current(normalise_server(server))
        return None if current is None or current.revocation_pending else current

    def pending_revocation(self, server: str) -> list[Credential]:
        """The keys of ``server`` marked to be revoked, the oldest mark first: the stored
        key once a logout could not revoke it, and marked keys that a later login moved
        aside. Each is to be revoked, then :meth:`forget`-ed."""
        server = normalise_server(server)
        current = self._current(server)
        found = [current] if current is not None and current.revocation_pending else []
        unique: dict[str, Credential] = {}
        for credential in [*found, *self._read_superseded(server)]:
            unique.setdefault(credential.access_token, credential)
        return sorted(unique.values(), key=_marked_at)

    def save(self, credential: Credential) -> str:
        """Store ``credential`` (replacing any for its server) and make its server the
        default. Returns :data:`KEYRING` or the path of the file it went to.

        A stored key marked to be revoked is not lost: it moves aside, still marked, until
        it is revoked (a login may succeed while revocation fails).
        """
        current = self._current(credential.server)
        if (
            current is not None
            and current.revocation_pending
            and current.access_token != credential.access_token
        ):
            self._add_superseded(current)  # first: never a moment where it is nowhere
        return self._store_current(credential)

    def replace(self, credential: Credential, *, since: datetime) -> tuple[str, Credential | None]:
        """What a login does with its new key: store it, as :meth:`save`, and mark the key
        it replaces (if any) to be revoked, in that order, holding the login lock from
        reading the old key to storing the new one, so that two logins at once each see
        the other's key and none is forgotten unrevoked. Returns where the new key went
        and the replaced key, marked (the caller revokes it, then :meth:`forget`-s it)."""
        with self._file.exclusive(LOGIN_LOCK_FILE):
            previous = self.get(credential.server)
            replaced = None
            if previous is not None and previous.access_token != credential.access_token:
                # Marked before it is replaced: an interrupted login cannot lose it.
                replaced = self.mark_for_revocation(previous, since=since)
            return self.save(credential), replaced

    def mark_for_revocation(self, credential: Credential, *, since: datetime) -> Credential:
        """Mark ``credential`` to be revoked (a logout could not revoke it): where it is
        kept, in one write, so it is never used again and never lost. Its server stays
        the default, so that the next command revokes it. Returns the marked credential."""
        marked = credential.marked_for_revocation(since)
        current = self._current(credential.server)
        if current is not None and current.access_token == credential.access_token:
            self._store_current(marked)
        else:
            self._add_superseded(marked)
        return marked

    def forget(self, credential: Credential) -> bool:
        """Forget this one key of its server (once revoked, or unusable on the server),
        wherever it is kept; True if it was kept. The server is forgotten as the default
        only when it holds no other key."""
        server = credential.server
        removed = False
        current = self._current(server)
        if current is not None and current.access_token == credential.access_token:
            removed = self._delete_current(server)
            current = None
        superseded = self._read_superseded(server)
        remaining = [c for c in superseded if c.access_token != credential.access_token]
        if len(remaining) != len(superseded):
            self._write_superseded(server, remaining)
            removed = True
        if current is None and not remaining and self.config_dir.exists():
            with self._file.locked():
                self._file.forget(server)
        return removed

    def delete(self, server: str) -> bool:
        """Forget every key for ``server`` everywhere, those marked to be revoked too;
        True if there was one."""
        server = normalise_server(server)
        removed = self._delete_current(server)
        removed = self._delete_from_keyring(server + SUPERSEDED_ENTRY) or removed
        if not self.config_dir.exists():
            return removed
        with self._file.locked():
            superseded = self._file.read_superseded()
            if superseded.pop(server, None) is not None:
                self._file.write_superseded(superseded)
                removed = True
            self._file.forget(server)
        return removed

    def _current(self, server: str) -> Credential | None:
        """The credential stored for ``server`` (normalised), marked or not."""
        found: list[Credential] = []
        secret = self._from_keyring(server) or self._migrated(server)
        if secret is not None:
            found.append(self._parse_keyring_entry(server, secret))
        in_file = self._file.read_credentials().get(server)
        if in_file is not None:
            found.append(in_file)
        # Two copies of one key (a keyring that failed while it was marked, then came
        # back): the marked copy wins, so that a marked key is never handed out.
        return max(found, key=lambda c: (c.created_at, c.revocation_pending), default=None)

    def _migrated(self, server: str, suffix: str = "") -> str | None:
        """The keyring entry of ``server`` under a name an older version gave it
        (``http://localhost:8000`` for ``http://127.0.0.1:8000``), moved to its name now;
        None when there is none. Asked only when the entry is not under its name."""
        for name in other_spellings(server):
            secret = self._from_keyring(name + suffix)
            if secret is not None:
                if self._to_keyring(server + suffix, secret):
                    self._delete_from_keyring(name + suffix)
                return secret
        return None

    def _store_current(self, credential: Credential) -> str:
        server = credential.server
        in_keyring = self._to_keyring(
            server, json.dumps(credential.to_dict(), separators=(",", ":"))
        )
        with self._file.locked():
            entries = self._file.read_credentials()
            if in_keyring:
                # One source of truth: drop a copy left in the file by an earlier fallback.
                if entries.pop(server, None) is not None:
                    self._file.write_credentials(entries)
                self._file.remember_warning(None)  # should it fail again, say so again
            else:
                self._file.write_credentials({**entries, server: credential})
            self._file.remember(server)
        return KEYRING if in_keyring else str(self.credentials_path)

    def _delete_current(self, server: str) -> bool:
        """Remove the stored credential of ``server`` (keyring and file), leaving the
        superseded keys and the state alone; True if there was one."""
        removed = self._delete_from_keyring(server)
        if not self.config_dir.exists():
            return removed
        with self._file.locked():
            entries = self._file.read_credentials()
            if entries.pop(server, None) is not None:
                self._file.write_credentials(entries)
                removed = True
        return removed

    # --- keys marked to be revoked that a later login replaced -----------------------------

    def _read_superseded(self, server: str) -> list[Credential]:
        found: list[Credential] = []
        secret = self._from_keyring(server + SUPERSEDED_ENTRY) or self._migrated(
            server, SUPERSEDED_ENTRY
        )
        if secret is not None:
            found.extend(self._parse_superseded_entry(server, secret))
        found.extend(self._file.read_superseded().get(server, []))
        unique: dict[str, Credential] = {}
        for credential in found:
            unique.setdefault(credential.access_token, credential)
        return list(unique.values())

    def _add_superseded(self, credential: Credential) -> None:
        keys = self._read_superseded(credential.server)
        if all(key.access_token != credential.access_token for key in keys):
            self._write_superseded(credential.server, [*keys, credential])

    def _write_superseded(self, server: str, keys: list[Credential]) -> None:
        """Keep ``keys`` as the superseded keys of ``server``: in the keyring where it
        works (like the stored key), else in the file."""
        entry = server + SUPERSEDED_ENTRY
        if keys:
            secret = json.dumps([key.to_dict() for key in keys], separators=(",", ":"))
            in_keyring = self._to_keyring(entry, secret)
        else:
            self._delete_from_keyring(entry)
            in_keyring = False
        if in_keyring and not self.config_dir.exists():
            return
        with self._file.locked():
            superseded = self._file.read_superseded()
            if in_keyring or not keys:
                if superseded.pop(server, None) is not None:
                    self._file.write_superseded(superseded)
            else:
                self._file.write_superseded({**superseded, server: keys})

    def servers(self) -> list[str]:
        """The servers with a stored credential, sorted. Does not ask the keyring (which
        cannot list entries): keyring servers come from ``state.json``."""
        in_file = set(self._file.read_credentials()) | set(self._file.read_superseded())
        return sorted(set(self._file.servers()) | in_file)

    def make_default(self, server: str) -> None:
        """Make ``server`` the default (``switch``): the server commands talk to when
        neither ``--server`` nor the environment names one."""
        with self._file.locked():
            self._file.remember(normalise_server(server))

    def default_server(self) -> str | None:
        """The server last logged in to (and not logged out of since), or None."""
        remembered = self._file.servers()
        if remembered:
            return remembered[-1]
        in_file = self._file.read_credentials().values()
        newest = max(in_file, key=lambda c: c.created_at, default=None)
        return None if newest is None else newest.server

    def stored_in(self, server: str) -> str:
        """Where ``server``'s credential is: the file's path if the file holds it, else
        :data:`KEYRING`."""
        try:
            in_file = normalise_server(server) in self._file.read_credentials()
        except CredentialStoreError:
            in_file = False
        return str(self.credentials_path) if in_file else KEYRING

    def from_environment(self, server: str) -> Credential | None:
        """A credential made from the ``token_env`` variable (``DEVICELINK_TOKEN``), which
        overrides whatever is stored; None when it is unset or empty. Its ``client_id``
        is empty and it carries no expiry, scope or user name."""
        token = os.environ.get(self.token_env, "").strip()
        if not token:
            return None
        return Credential(server=server, access_token=token, client_id="")

    def resolve(self, server: str) -> Credential | None:
        """The key to use for ``server``: the environment's if set, else the stored one."""
        return self.from_environment(server) or self.get(server)

    # --- the keyring, when there is one --------------------------------------------------

    def _in_keyring(self, call: Callable[[KeyringStore], T], otherwise: T) -> T:
        """``call`` on the keyring; ``otherwise`` when it is not used or unavailable."""
        if not self.use_keyring:
            return otherwise
        try:
            return call(self._keyring)
        except KeyringUnavailable:
            return otherwise

    def _from_keyring(self, server: str) -> str | None:
        return self._in_keyring(lambda keyring: keyring.get(server), None)

    def _to_keyring(self, server: str, secret: str) -> bool:
        def store(keyring: KeyringStore) -> bool:
            keyring.set(server, secret)
            return True

        return self._in_keyring(store, False)

    def _delete_from_keyring(self, server: str) -> bool:
        return self._in_keyring(lambda keyring: keyring.delete(server), False)

    def _keyring_failed(self, reason: str) -> None:
        """Warn, once, that keys go to the file: once per process, and once at all for
        one reason (the config directory remembers it was shown). A store made with
        ``warn=None`` shows nothing, and so does not count it as shown."""
        path = self.credentials_path
        if self._warn is None:
            return
        with _warned_lock:
            first = str(path) not in _warned_paths
            _warned_paths.add(str(path))
        if first and not self._file.warned_of(reason):
            message = (
                f"{self.service}: no usable keyring ({reason}); "
                f"keeping keys in {_display_path(path)} (mode 0600)"
            )
            self._warn(" ".join(message.split()))
            self._file.remember_warning(reason)

    def _parse_keyring_entry(self, server: str, secret: str) -> Credential:
        try:
            credential = Credential.from_dict(json.loads(secret))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise CredentialStoreError(
                f"the keyring entry {self.service!r} / {server!r} is not a {self.service} "
                f"credential ({exc}); log out of {server} and log in again"
            ) from None
        if credential.server != server:
            raise CredentialStoreError(
                f"the keyring entry for {server} holds a credential for {credential.server}; "
                f"log out of {server} and log in again"
            )
        return credential

    def _parse_superseded_entry(self, server: str, secret: str) -> list[Credential]:
        try:
            entries = json.loads(secret)
            if not isinstance(entries, list):
                raise ValueError("not a list")
            keys = [Credential.from_dict(entry) for entry in entries]
        except ValueError as exc:
            raise CredentialStoreError(
                f"the keyring entry {self.service!r} / {server + SUPERSEDED_ENTRY!r} is not a "
                f"list of {self.service} credentials ({exc}); revoke the keys of {server} on "
                f"its devices page, then run logout --force"
            ) from None
        if any(key.server != server for key in keys):
            raise CredentialStoreError(
                f"the keyring entry for {server + SUPERSEDED_ENTRY} holds a key of another "
                "server; revoke its keys on the server's devices page, then run logout --force"
            )
        return keys


def _marked_at(credential: Credential) -> datetime:
    return credential.revocation_pending_since or credential.created_at


__all__ = ["KEYRING", "SUPERSEDED_ENTRY", "CredentialStore"]
