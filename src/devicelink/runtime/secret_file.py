"""The server secret kept in the data directory on a loopback ``PUBLIC_URL``."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret at ``path`` or create it, mode 0600 from the first byte.

    Written to a private temporary file and then hard-linked into place, so a second
    process starting at the same moment reads either nothing or the whole secret. The
    caller judges what was read (:meth:`Settings.secret_bytes`).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_urlsafe(48).encode("ascii") + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            # FileExistsError: another process won the race; use its secret.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    return path.read_bytes().strip()
