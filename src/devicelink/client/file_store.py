"""Keys in a private file, where no keyring works: ``credentials.json`` in the config
directory, and ``state.json`` (not secret) with the servers logged in to, most recent last.
``credentials.json`` also keeps, in its ``revocation_pending`` section, keys marked to be
revoked that a later login replaced (``devicelink.client.store`` says when).

The file is private from its first byte (DESIGN.md, defect 10: the original wrote the key
file first and chmod-ed it afterwards): every write goes to a new temporary file opened
with ``O_CREAT | O_EXCL`` and mode 0600 (a umask can only narrow it), is fsync-ed and
renamed over the target. Nothing is ever chmod-ed. A lock file serialises read-modify-write,
so two logins to different servers keep each other's entries.

Like ssh with a private key, a credentials file that other users can read, or that the
user does not own, is refused (:class:`InsecureCredentialsFileError`): its keys may have
leaked, and silently using or rewriting it would hide that. The message says how to fix it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from devicelink.client import token_cache
from devicelink.client.credentials import (
    Credential,
    CredentialStoreError,
    InsecureCredentialsFileError,
)
from devicelink.client.private_files import (
    CREDENTIALS_FILE,
    O_CLOEXEC,
    O_NOFOLLOW,
    POSIX,
    STATE_FILE,
    privacy_problem,
)
from devicelink.client.urls import normalise_server

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Final

LOCK_FILE: Final = "credentials.lock"
WARNED_FILE: Final = "keyring-warning"
"""Holds the keyring failure the user was last warned of (not secret): the warning that
keys go to the file is shown once, not at every login (issue 16), and again when the
keyring fails otherwise, or fails anew after it worked."""
LOGIN_LOCK_FILE: Final = "login.lock"
"""Held by a login from reading the key it replaces to storing its own (issue 16): two
logins at once then replace one another in turn, and neither key is lost unrevoked. A
file of its own, as ``credentials.lock`` is taken (and released) inside that span."""
FILE_FORMAT_VERSION: Final = 1
SUPERSEDED_SECTION: Final = "revocation_pending"
"""The section of keys marked to be revoked that a later login replaced; version 1 files
without it (all those written before it existed) read as having none."""


class FileStore:
    """The credentials file and the state file of one config directory."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir

    @property
    def credentials_path(self) -> Path:
        return self.config_dir / CREDENTIALS_FILE

    @property
    def state_path(self) -> Path:
        return self.config_dir / STATE_FILE

    def read_credentials(self) -> dict[str, Credential]:
        """The credentials in the file by server; empty when there is no file."""
        return self._read()[0]

    def read_superseded(self) -> dict[str, list[Credential]]:
        """Keys marked to be revoked that a later login replaced, by server (the section
        ``revocation_pending``, absent from files written before it existed)."""
        return self._read()[1]

    def write_credentials(self, entries: Mapping[str, Credential]) -> None:
        """Replace the file's credentials by ``entries`` (the superseded keys stay); no
        entries at all, no file. Call it holding :meth:`locked`."""
        self._write(entries, self.read_superseded())

    def write_superseded(self, entries: Mapping[str, list[Credential]]) -> None:
        """Replace the file's superseded keys by ``entries`` (the credentials stay). Call it
        holding :meth:`locked`."""
        self._write(self.read_credentials(), entries)

    def _read(self) -> tuple[dict[str, Credential], dict[str, list[Credential]]]:
        data = _read_private_json(self.credentials_path)
        if data is None:
            return {}, {}
        try:
            if data.get("version") != FILE_FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version')!r}")
            raw = data["credentials"]
            if not isinstance(raw, dict):
                raise ValueError("'credentials' is not an object")
            credentials = [Credential.from_dict(entry) for entry in raw.values()]
            superseded = _superseded(data.get(SUPERSEDED_SECTION, {}))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CredentialStoreError(
                f"{self.credentials_path} is not a valid credentials file ({exc}); "
                "move it away and log in again"
            ) from None
        return _one_per_server(credentials, superseded)

    def _write(
        self, credentials: Mapping[str, Credential], superseded: Mapping[str, list[Credential]]
    ) -> None:
        token_cache.drop(self.config_dir)  # first: a key logged out of is never left there
        superseded = {server: keys for server, keys in superseded.items() if keys}
        if not credentials and not superseded:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.credentials_path)
            return
        document: dict[str, Any] = {
            "version": FILE_FORMAT_VERSION,
            "credentials": {
                server: credentials[server].to_dict() for server in sorted(credentials)
            },
        }
        if superseded:
            document[SUPERSEDED_SECTION] = {
                server: [key.to_dict() for key in superseded[server]]
                for server in sorted(superseded)
            }
        write_private_file(self.credentials_path, _json_bytes(document))

    def servers(self) -> list[str]:
        """Servers logged in to, most recent last. The state is a convenience, not a
        secret: a missing or damaged file reads as empty."""
        try:
            data = json.loads(self.state_path.read_bytes())
            servers = [normalise_server(s) for s in data["servers"] if isinstance(s, str)]
        except (OSError, ValueError, KeyError, TypeError):
            return []
        # Two spellings of one server (localhost, 127.0.0.1) are one: its latest place.
        return list(reversed(dict.fromkeys(reversed(servers))))

    def remember(self, server: str) -> None:
        """Make ``server`` the most recent one."""
        self._write_state([s for s in self.servers() if s != server] + [server])

    def forget(self, server: str) -> None:
        servers = self.servers()
        if server in servers:
            self._write_state([s for s in servers if s != server])

    def warned_of(self, reason: str) -> bool:
        """Whether the user was already warned that the keyring fails for ``reason``."""
        try:
            return (self.config_dir / WARNED_FILE).read_text(encoding="utf-8") == reason
        except (OSError, UnicodeError):
            return False

    def remember_warning(self, reason: str | None) -> None:
        """Remember the keyring failure just shown (``None``: the keyring works again)."""
        path = self.config_dir / WARNED_FILE
        if reason is None:
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        with contextlib.suppress(CredentialStoreError):  # at worst, it is shown again
            write_private_file(path, reason.encode())

    def _write_state(self, servers: list[str]) -> None:
        token_cache.drop(self.config_dir)
        document = {"version": FILE_FORMAT_VERSION, "servers": servers}
        write_private_file(self.state_path, _json_bytes(document))

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on the config directory's lock file, across processes."""
        return self.exclusive(LOCK_FILE)

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """An exclusive lock on the lock file ``name`` of the config directory, across
        processes (not re-entrant: one name is never taken twice by one process)."""
        _make_private_dir(self.config_dir)
        lock_path = self.config_dir / name
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise CredentialStoreError(f"cannot open {lock_path}: {exc.strerror or exc}") from None
        try:
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _one_per_server(
    credentials: list[Credential], superseded: dict[str, list[Credential]]
) -> tuple[dict[str, Credential], dict[str, list[Credential]]]:
    """The credentials by server. Two entries of one server (a file written when
    ``localhost`` and ``127.0.0.1`` were two servers): the newer is its key, the older is
    read as replaced by it, marked to be revoked, so that it is revoked, never lost."""
    current: dict[str, Credential] = {}
    for credential in sorted(credentials, key=lambda c: c.created_at):
        older = current.get(credential.server)
        if older is not None:
            marked = older.marked_for_revocation(older.created_at)
            superseded.setdefault(credential.server, []).append(marked)
        current[credential.server] = credential
    return current, superseded


def _superseded(raw: object) -> dict[str, list[Credential]]:
    if not isinstance(raw, dict):
        raise ValueError(f"{SUPERSEDED_SECTION!r} is not an object")
    found: dict[str, list[Credential]] = {}
    for entries in raw.values():
        if not isinstance(entries, list):
            raise ValueError(f"{SUPERSEDED_SECTION!r} holds something else than lists")
        for entry in entries:
            credential = Credential.from_dict(entry)
            found.setdefault(credential.server, []).append(credential)
    return found


def _json_bytes(document: object) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _make_private_dir(path: Path) -> None:
    # mode applies to the last component only; an existing directory is left as it is.
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CredentialStoreError(f"cannot create {path}: {exc.strerror or exc}") from None


def _check_private(path: Path, info: os.stat_result) -> None:
    problem = privacy_problem(path, info)
    if problem is not None:
        raise InsecureCredentialsFileError(problem)


def _read_private_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, checked private first; None if there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialStoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        # fstat on the open descriptor: what is checked is what is read.
        _check_private(path, os.fstat(fd))
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    try:
        data = json.loads(b"".join(chunks))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CredentialStoreError(
            f"{path} is not a valid credentials file; move it away and log in again"
        )
    return data


def write_private_file(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically by a file that is mode 0600 from its creation."""
    import secrets  # here: reading keys, what `token` does, never needs it

    _make_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600)
    except OSError as exc:
        raise CredentialStoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise CredentialStoreError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    if not POSIX:  # pragma: no cover
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


__all__ = [
    "CREDENTIALS_FILE",
    "FILE_FORMAT_VERSION",
    "LOCK_FILE",
    "LOGIN_LOCK_FILE",
    "STATE_FILE",
    "SUPERSEDED_SECTION",
    "WARNED_FILE",
    "FileStore",
    "write_private_file",
]
