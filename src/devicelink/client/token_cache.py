"""``devicelink token``'s last answer, kept beside the keys with what it was computed from,
so that the next identical call prints it without parsing JSON or importing the store.

Scripts call ``devicelink token`` before every request. Reading the store costs several
times the interpreter's own start-up (JSON, dates, URL parsing, platformdirs, the dataclass
of a key); this file costs a few ``stat`` calls. It holds no decision of its own: the store
(``devicelink.launcher.quick_token``, through :class:`CredentialStore`) decides which key
``token`` prints, and writes the answer here only when nothing but files decided it (the
keyring turned off by the environment, no key in ``DEVICELINK_TOKEN``, none marked to be
revoked). The answer is used again only while everything it was computed from is what it
was:

- the files read (``credentials.json`` and ``state.json``, and platformdirs' own module,
  which said where they are): each one's device, inode, size and modification and change
  times. The store replaces a file by renaming a new one over it, so any write changes its
  inode; the store also removes this file before each write, so a key logged out of is
  not left here;
- the environment that chose the server, the directory and the keyring (``HOME``,
  ``XDG_CONFIG_HOME``, ``PYTHON_KEYRING_BACKEND``, ``DEVICELINK_SERVER``,
  ``DEVICELINK_TOKEN``), and the user;
- the command line: the server last logged in to, or ``--server`` spelt as the answer's
  server;
- the key's expiry, against the clock now.

Anything else, or any doubt (a file that is not private, by
:func:`~devicelink.client.private_files.privacy_problem`, another format, an unreadable
line), and the store answers as before. The file is private like ``credentials.json``
(mode 0600 from its creation), which holds the same key.

Only where the config directory can be found without platformdirs (Linux: the XDG rule,
checked against the directory platformdirs gave when the answer was written); elsewhere
nothing is written. This module imports nothing but ``os`` and ``sys``.
"""

from __future__ import annotations

import os
import sys

from devicelink.client.private_files import (
    CREDENTIALS_FILE,
    O_CLOEXEC,
    O_NOFOLLOW,
    STATE_FILE,
    privacy_problem,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

CACHE_FILE: Final = "token-cache"
HEADER: Final = "devicelink token cache 1"

WATCHED_ENV: Final = (
    "HOME",
    "XDG_CONFIG_HOME",
    "PYTHON_KEYRING_BACKEND",
    "DEVICELINK_SERVER",
    "DEVICELINK_TOKEN",
)
"""The variables the answer depends on (the directory, the keyring, the server, the key)."""

FOR_DEFAULT: Final = "default"
"""The ``for`` of an answer to ``token`` with no ``--server``."""

_ABSENT: Final = "-"
_UNREADABLE: Final = "?"


def config_dir_hint(service: str) -> str | None:
    """Where the config directory of ``service`` is, on Linux, by the XDG rule: only a
    place to look for the cached answer, which says where platformdirs put it (and
    :func:`lookup` compares). None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
    return os.path.join(base, service)


def signature(path: str) -> str:
    """What changes when the file at ``path`` is written or replaced: ``-`` when there is
    none, ``?`` when it cannot be looked at."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _ABSENT
    except OSError:
        return _UNREADABLE
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"


def watched_files(config_dir: str, *others: str) -> dict[str, str]:
    """The signatures of the files an answer of ``config_dir`` is computed from, and of
    ``others``: taken before the store reads them, and handed to :func:`save`."""
    paths = [os.path.join(config_dir, CREDENTIALS_FILE), os.path.join(config_dir, STATE_FILE)]
    return {path: signature(path) for path in [*paths, *others]}


def lookup(config_dir: str, server: str | None, now: float) -> str | None:
    """The key ``token`` printed last, for ``--server`` ``server`` (None: the server last
    logged in to), when everything it was computed from is unchanged and it has not
    expired at ``now`` (seconds since the epoch); None otherwise."""
    path = os.path.join(config_dir, CACHE_FILE)
    try:
        fd = os.open(path, os.O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    except OSError:
        return None
    try:
        if privacy_problem(path, os.fstat(fd)) is not None:
            return None
        content = os.read(fd, 1 << 16)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return _answer(content.decode(), config_dir, server, now)
    except (UnicodeDecodeError, ValueError):
        return None


def _answer(text: str, config_dir: str, server: str | None, now: float) -> str | None:
    header, *lines = text.split("\n")
    if header != HEADER:
        return None
    fields: dict[str, str] = {}
    env: dict[str, str] = {}
    files: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, value = line.split("\t", 1)
        if name == "env":
            variable, recorded = value.split("\t", 1)
            env[variable] = recorded
        elif name == "file":
            file_path, recorded = value.split("\t", 1)
            files[file_path] = recorded
        else:
            fields[name] = value
    required = watched_files(config_dir)
    if (
        fields.get("config_dir") != config_dir
        or fields.get("euid") != str(os.geteuid())
        or set(env) != set(WATCHED_ENV)
        or any(_recorded_env(name) != value for name, value in env.items())
        or not required.keys() <= files.keys()
        or any(signature(file_path) != recorded for file_path, recorded in files.items())
    ):
        return None
    answer_for = fields.get("for")
    if (server is None and answer_for != FOR_DEFAULT) or (
        server is not None and server != fields.get("server")
    ):
        return None
    expires = fields.get("expires", "")
    if expires != _ABSENT and not now < float(expires):
        return None
    return fields.get("key") or None


def save(
    config_dir: str,
    *,
    server: str,
    key: str,
    expires: float | None,
    for_default: bool,
    files: Mapping[str, str],
) -> bool:
    """Keep ``key``, what ``token`` printed for ``server`` (``for_default``: with no
    ``--server``), computed from ``files`` (:func:`watched_files`, taken before the
    reads) and this process's environment. Nothing is written when a file changed since
    (the answer may already be stale), cannot be looked at, or a value cannot be written
    on a line. True when it was kept; a failure to write is no failure of ``token``."""
    if files != {path: signature(path) for path in files} or _UNREADABLE in files.values():
        return False
    env = {name: _recorded_env(name) for name in WATCHED_ENV}
    values = [config_dir, server, key, *env.values(), *files]
    if any(ch in value for value in values for ch in "\n\r\0") or any("\t" in p for p in files):
        return False  # not on one line, or not as one field
    lines = [
        HEADER,
        f"config_dir\t{config_dir}",
        f"euid\t{os.geteuid()}",
        f"for\t{FOR_DEFAULT if for_default else 'server'}",
        f"server\t{server}",
        f"key\t{key}",
        f"expires\t{_ABSENT if expires is None else repr(expires)}",
        *(f"env\t{name}\t{recorded}" for name, recorded in env.items()),
        *(f"file\t{path}\t{recorded}" for path, recorded in files.items()),
    ]
    from pathlib import Path

    from devicelink.client.credentials import CredentialStoreError
    from devicelink.client.file_store import write_private_file

    try:
        write_private_file(Path(config_dir) / CACHE_FILE, ("\n".join(lines) + "\n").encode())
    except (CredentialStoreError, OSError):
        return False
    return True


def drop(config_dir: str | os.PathLike[str]) -> None:
    """Remove the kept answer of ``config_dir`` (before any write of the store)."""
    import contextlib  # here: looking the answer up never needs it

    with contextlib.suppress(OSError):
        os.unlink(os.path.join(config_dir, CACHE_FILE))


def _recorded_env(name: str) -> str:
    value = os.environ.get(name)
    return _ABSENT if value is None else "=" + value


__all__ = [
    "CACHE_FILE",
    "FOR_DEFAULT",
    "HEADER",
    "WATCHED_ENV",
    "config_dir_hint",
    "drop",
    "lookup",
    "save",
    "signature",
    "watched_files",
]
