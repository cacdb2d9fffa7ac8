"""Where the client keeps its API keys: the OS keyring, or a private file where none works.

One keyring entry per server URL (service ``devicelink``, username the normalised server
URL, password the credential as JSON). Every keyring call runs in a worker thread with a
timeout, because a backend can hang on a locked D-Bus session. When no keyring works
(none installed, the fail or null backend, an error, a timeout), the keys go to
``credentials.json`` in the platformdirs config directory, and a one-line warning says so
once per process.

The file is private from its first byte (DESIGN.md, defect 10: the original wrote the key
file first and chmod-ed it afterwards): every write goes to a new temporary file opened
with ``O_CREAT | O_EXCL`` and mode 0600 (a umask can only narrow it), is fsync-ed and
renamed over the target. Nothing is ever chmod-ed. A lock file serialises read-modify-write,
so two logins to different servers keep each other's entries.

Like ssh with a private key, a credentials file that other users can read, or that the
user does not own, is refused (:class:`InsecureCredentialsFileError`): its keys may have
leaked, and silently using or rewriting it would hide that. The message says how to fix it.

``state.json`` next to it (not secret) remembers the servers logged in to, most recent
last: the default ``--server`` of status, token and logout.

This module does not own the HTTP calls (login, revocation) nor the commands; it uses the
standard library, keyring and platformdirs only.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import keyring
import keyring.backends.chainer
import keyring.backends.fail
import keyring.backends.null
import keyring.errors
import platformdirs
from keyring.backend import KeyringBackend

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt
else:
    import fcntl

__all__ = [
    "DEFAULT_TOKEN_ENV",
    "KEYRING",
    "Credential",
    "CredentialStore",
    "CredentialStoreError",
    "InsecureCredentialsFileError",
    "normalize_server",
]

KEYRING: Final = "keyring"
"""What :meth:`CredentialStore.save` returns when the key went to the OS keyring."""

DEFAULT_TOKEN_ENV: Final = "DEVICELINK_TOKEN"  # noqa: S105 - a variable name
"""The environment variable whose key overrides the stored one (a name, not a secret)."""

CREDENTIALS_FILE: Final = "credentials.json"
STATE_FILE: Final = "state.json"
LOCK_FILE: Final = "credentials.lock"
FILE_FORMAT_VERSION: Final = 1

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_POSIX: Final = os.name == "posix"

_T = TypeVar("_T")


class CredentialStoreError(Exception):
    """The stored credentials cannot be read or written; the message is for the user."""


class InsecureCredentialsFileError(CredentialStoreError):
    """The credentials file is readable by other users or owned by someone else."""


def normalize_server(url: str) -> str:
    """The canonical form of a server URL, used as the key of its credential.

    Scheme and host in lower case, default port dropped, no trailing slash, no query or
    fragment; a bare host means ``https://host``. Raises ValueError for anything else.
    """
    text = url.strip()
    if not text:
        raise ValueError("the server URL is empty")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"the server URL must start with https:// or http://: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"the server URL must not carry a user name or password: {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"the server URL must not have a query or fragment: {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"the server URL has no host: {url!r}")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError for a port that is not a number in range
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _optional_time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = _optional_str(data, key)
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, kw_only=True)
class Credential:
    """An API key for one server, with what the client knows about it.

    ``server`` is normalised on construction; times are aware and converted to UTC;
    the key never appears in ``repr``.
    """

    server: str
    access_token: str = field(repr=False)
    client_id: str
    scope: str | None = None
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=_utcnow)
    username: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", normalize_server(self.server))
        if not isinstance(self.access_token, str) or not self.access_token:
            raise ValueError("access_token must be a non-empty string")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", _as_utc(self.expires_at, "expires_at"))
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "created_at"))

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the key has passed its ``expires_at`` (never, for a key without one)."""
        if self.expires_at is None:
            return False
        return (now or _utcnow()) >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; times as ISO 8601 with offset."""
        return {
            "server": self.server,
            "access_token": self.access_token,
            "client_id": self.client_id,
            "scope": self.scope,
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "username": self.username,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Credential:
        """The inverse of :meth:`to_dict`; unknown keys are ignored. ValueError if malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("a credential must be a JSON object")
        server, token = data.get("server"), data.get("access_token")
        if not isinstance(server, str) or not isinstance(token, str):
            raise ValueError("a credential needs server and access_token strings")
        created_at = _optional_time(data, "created_at")
        return cls(
            server=server,
            access_token=token,
            client_id=_optional_str(data, "client_id") or "",
            scope=_optional_str(data, "scope"),
            expires_at=_optional_time(data, "expires_at"),
            created_at=created_at if created_at is not None else _utcnow(),
            username=_optional_str(data, "username"),
        )


def _print_warning(message: str) -> None:
    print(message, file=sys.stderr)


# The fallback warning is printed once per process for each credentials file.
_warned_paths: set[str] = set()
_warned_lock = threading.Lock()


class _KeyringUnavailable(Exception):
    """Internal: this keyring call did not happen; use the file."""


def _backend_problem(backend: KeyringBackend) -> str | None:
    # These backends "work" without storing anything: fail raises, null forgets, and
    # a chainer with nothing to chain does nothing.
    if isinstance(backend, keyring.backends.fail.Keyring | keyring.backends.null.Keyring):
        return "no keyring backend is available"
    if isinstance(backend, keyring.backends.chainer.ChainerBackend) and not backend.backends:
        return "no keyring backend is available"
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, keyring.errors.NoKeyringError):
        return "no keyring backend is available"
    first_line = (str(exc).strip().splitlines() or [""])[0][:80]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


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
        warn: Callable[[str], None] = _print_warning,
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
        self._keyring_failure: str | None = None

    @property
    def credentials_path(self) -> Path:
        return self.config_dir / CREDENTIALS_FILE

    @property
    def state_path(self) -> Path:
        return self.config_dir / STATE_FILE

    @property
    def keyring_failure(self) -> str | None:
        """Why this store stopped using the keyring, or None while it has not."""
        return self._keyring_failure

    # --- the public operations ---------------------------------------------------------

    def get(self, server: str) -> Credential | None:
        """The stored credential for ``server`` (any URL form), or None.

        The keyring is asked first, then the file; if both hold one (a keyring that came
        back after a fallback), the more recently created wins.
        """
        server = normalize_server(server)
        found: list[Credential] = []
        try:
            secret = self._keyring_call(lambda kr: kr.get_password(self.service, server))
        except _KeyringUnavailable:
            secret = None
        if secret is not None:
            found.append(self._parse_keyring_entry(server, secret))
        in_file = self._read_credentials().get(server)
        if in_file is not None:
            found.append(in_file)
        return max(found, key=lambda c: c.created_at, default=None)

    def save(self, credential: Credential) -> str:
        """Store ``credential`` (replacing any for its server) and make its server the
        default. Returns :data:`KEYRING` or the path of the file it went to."""
        server = credential.server
        secret = json.dumps(credential.to_dict(), separators=(",", ":"))
        try:
            self._keyring_call(lambda kr: kr.set_password(self.service, server, secret))
        except _KeyringUnavailable:
            with self._locked():
                entries = self._read_credentials()
                entries[server] = credential
                self._write_credentials(entries)
                self._remember(server)
            return str(self.credentials_path)
        with self._locked():
            # One source of truth: drop a copy left in the file by an earlier fallback.
            entries = self._read_credentials()
            if entries.pop(server, None) is not None:
                self._write_credentials(entries)
            self._remember(server)
        return KEYRING

    def delete(self, server: str) -> bool:
        """Forget the credential for ``server`` everywhere; True if there was one."""
        server = normalize_server(server)
        removed = False
        try:
            self._keyring_call(lambda kr: kr.delete_password(self.service, server))
            removed = True
        except keyring.errors.PasswordDeleteError:
            pass  # the keyring's way of saying it had no such entry
        except _KeyringUnavailable:
            pass
        if not self.config_dir.exists():
            return removed
        with self._locked():
            entries = self._read_credentials()
            if entries.pop(server, None) is not None:
                self._write_credentials(entries)
                removed = True
            self._forget(server)
        return removed

    def servers(self) -> list[str]:
        """The servers with a stored credential, sorted. Does not ask the keyring (which
        cannot list entries): keyring servers come from ``state.json``."""
        return sorted(set(self._read_state()) | set(self._read_credentials()))

    def default_server(self) -> str | None:
        """The server last logged in to (and not logged out of since), or None."""
        remembered = self._read_state()
        if remembered:
            return remembered[-1]
        in_file = self._read_credentials().values()
        newest = max(in_file, key=lambda c: c.created_at, default=None)
        return None if newest is None else newest.server

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

    # --- the keyring -------------------------------------------------------------------

    def _keyring_call(self, operation: Callable[[KeyringBackend], _T]) -> _T:
        """Run ``operation`` on the keyring backend in a daemon thread, with a timeout.

        Raises _KeyringUnavailable (after recording why, and warning once) when the
        keyring is off, missing, failing or hung; PasswordDeleteError passes through.
        """
        if not self.use_keyring or self._keyring_failure is not None:
            raise _KeyringUnavailable
        outcome: list[tuple[bool, Any]] = []
        done = threading.Event()

        def run() -> None:
            try:
                backend = keyring.get_keyring()
                problem = _backend_problem(backend)
                if problem is not None:
                    raise _KeyringUnavailable(problem)
                outcome.append((True, operation(backend)))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                outcome.append((False, exc))
            finally:
                done.set()

        # A daemon thread, not an executor: a hung backend must not keep the CLI from exiting.
        threading.Thread(target=run, name="devicelink-keyring", daemon=True).start()
        if not done.wait(self.keyring_timeout):
            self._keyring_failed(f"the keyring did not answer within {self.keyring_timeout:g} s")
        ok, value = outcome[0]
        if ok:
            return cast(_T, value)
        if isinstance(value, keyring.errors.PasswordDeleteError):
            raise value
        if isinstance(value, _KeyringUnavailable):
            self._keyring_failed(str(value))
        if isinstance(value, Exception):
            self._keyring_failed(_describe(value))
        raise value

    def _keyring_failed(self, reason: str) -> None:
        self._keyring_failure = reason
        path = self.credentials_path
        with _warned_lock:
            first = str(path) not in _warned_paths
            _warned_paths.add(str(path))
        if first:
            message = (
                f"{self.service}: no usable keyring ({reason}); "
                f"keeping keys in {_display_path(path)} (mode 0600)"
            )
            self._warn(" ".join(message.split()))
        raise _KeyringUnavailable(reason)

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

    # --- the file ----------------------------------------------------------------------

    def _read_credentials(self) -> dict[str, Credential]:
        data = _read_private_json(self.credentials_path)
        if data is None:
            return {}
        try:
            if data.get("version") != FILE_FORMAT_VERSION:
                raise ValueError(f"unknown format version {data.get('version')!r}")
            raw = data["credentials"]
            if not isinstance(raw, dict):
                raise ValueError("'credentials' is not an object")
            credentials = [Credential.from_dict(entry) for entry in raw.values()]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise CredentialStoreError(
                f"{self.credentials_path} is not a valid credentials file ({exc}); "
                "move it away and log in again"
            ) from None
        return {credential.server: credential for credential in credentials}

    def _write_credentials(self, entries: Mapping[str, Credential]) -> None:
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.credentials_path)
            return
        document = {
            "version": FILE_FORMAT_VERSION,
            "credentials": {server: entries[server].to_dict() for server in sorted(entries)},
        }
        _write_private_file(self.credentials_path, _json_bytes(document))

    def _read_state(self) -> list[str]:
        """Servers logged in to, most recent last. The state is a convenience, not a
        secret: a missing or damaged file reads as empty."""
        try:
            data = json.loads(self.state_path.read_bytes())
            servers = data["servers"]
            return [normalize_server(s) for s in servers if isinstance(s, str)]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def _remember(self, server: str) -> None:
        servers = [s for s in self._read_state() if s != server] + [server]
        self._write_state(servers)

    def _forget(self, server: str) -> None:
        servers = self._read_state()
        if server in servers:
            self._write_state([s for s in servers if s != server])

    def _write_state(self, servers: list[str]) -> None:
        document = {"version": FILE_FORMAT_VERSION, "servers": servers}
        _write_private_file(self.state_path, _json_bytes(document))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the config directory's lock file, across processes."""
        _make_private_dir(self.config_dir)
        lock_path = self.config_dir / LOCK_FILE
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC | _O_NOFOLLOW, 0o600)
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


def _json_bytes(document: object) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _make_private_dir(path: Path) -> None:
    # mode applies to the last component only; an existing directory is left as it is.
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CredentialStoreError(f"cannot create {path}: {exc.strerror or exc}") from None


def _check_private(path: Path, info: os.stat_result) -> None:
    if not _POSIX:  # pragma: no cover - Windows protects the profile directory with ACLs
        return
    if not stat.S_ISREG(info.st_mode):
        raise InsecureCredentialsFileError(f"{path} is not a regular file; refusing to use it")
    if info.st_uid != os.geteuid():
        raise InsecureCredentialsFileError(
            f"{path} is owned by user id {info.st_uid}, not by you (user id {os.geteuid()}); "
            "refusing to use it. Remove it and log in again."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise InsecureCredentialsFileError(
            f"{path} is accessible by other users (mode {mode:04o}); refusing to use it, "
            "as the keys in it may have been read. Remove it and log in again, or, if no one "
            f"else can have read it, run: chmod 600 {path}"
        )


def _read_private_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, checked private first; None if there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
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


def _write_private_file(path: Path, content: bytes) -> None:
    """Replace ``path`` atomically by a file that is mode 0600 from its creation.

    The temporary file is created by ``os.open`` with ``O_CREAT | O_EXCL`` and mode 0600,
    so no moment exists where it is readable by others (a umask only removes bits), and it
    is never chmod-ed; it is fsync-ed, then renamed over the target.
    """
    _make_private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
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
    if not _POSIX:  # pragma: no cover
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
