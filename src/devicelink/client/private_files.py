"""Files that hold keys, and what makes one fit to read: a regular file, owned by the user,
that no one else can read or write (as ssh judges a private key). Checked on the open
descriptor, before a byte is read.

Apart from ``file_store`` so that ``devicelink token``'s cached answer
(``devicelink.client.token_cache``) is judged by the same rule without importing the store:
this module imports nothing but ``os`` and ``stat``.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Final

CREDENTIALS_FILE: Final = "credentials.json"
"""The keys of the config directory, where no keyring works (``file_store``)."""
STATE_FILE: Final = "state.json"
"""The servers logged in to, most recent last (not secret; ``file_store``)."""

O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
POSIX: Final = os.name == "posix"


def privacy_problem(path: object, info: os.stat_result) -> str | None:
    """Why the file at ``path``, as ``info`` describes it, must not be used for keys (a
    message for the user, saying how to fix it); None when it is private. Always None off
    POSIX, where the profile directory's ACLs protect it."""
    if not POSIX:  # pragma: no cover - Windows protects the profile directory with ACLs
        return None
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file; refusing to use it"
    if info.st_uid != os.geteuid():
        return (
            f"{path} is owned by user id {info.st_uid}, not by you (user id {os.geteuid()}); "
            "refusing to use it. Remove it and log in again."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (
            f"{path} is accessible by other users (mode {mode:04o}); refusing to use it, "
            "as the keys in it may have been read. Remove it and log in again, or, if no one "
            f"else can have read it, run: chmod 600 {path}"
        )
    return None


__all__ = [
    "CREDENTIALS_FILE",
    "O_CLOEXEC",
    "O_NOFOLLOW",
    "POSIX",
    "STATE_FILE",
    "privacy_problem",
]
