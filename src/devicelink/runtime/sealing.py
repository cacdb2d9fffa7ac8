"""What the server hands a browser to keep for it, sealed: encrypted and authenticated
with a key derived from the server secret (Fernet, from ``cryptography``: AES-128-CBC
with HMAC-SHA256), and dated, so a seal older than its lifetime is refused.

The upstream sign-in's ``state``, ``nonce`` and PKCE verifier travel this way between
``/login/oidc`` and its callback: never in the database, never readable by the browser
that carries them (issue 13, finding 7).
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from devicelink.service.clock import Clock, utc_now


class Sealer:
    """Seals with ``secret``; opens what was sealed with it or with one of ``previous``
    (the other secrets of a rotation, DEVICELINK_SECRET_KEY_FALLBACKS), so a browser
    that started its sign-in on a process with one secret finishes it on another."""

    def __init__(
        self,
        secret: bytes,
        purpose: str,
        *,
        previous: Sequence[bytes] = (),
        clock: Clock = utc_now,
    ) -> None:
        self._fernet = MultiFernet([_fernet(each, purpose) for each in (secret, *previous)])
        self._clock = clock

    def seal(self, values: Mapping[str, str]) -> str:
        data = json.dumps(dict(values), separators=(",", ":")).encode()
        return self._fernet.encrypt_at_time(data, _seconds(self._clock())).decode("ascii")

    def open(self, sealed: str | None, *, max_age: int) -> dict[str, str] | None:
        """The values sealed at most ``max_age`` seconds ago, or None: no seal, a
        forged or altered one, one sealed under another secret, or one too old."""
        if not sealed or len(sealed) > 4096:
            return None
        try:
            data = self._fernet.decrypt_at_time(sealed, max_age, _seconds(self._clock()))
            values = json.loads(data)
        except (InvalidToken, ValueError):
            return None
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            return None
        return values


def _fernet(secret: bytes, purpose: str) -> Fernet:
    derived = hmac.digest(secret, b"devicelink/seal/" + purpose.encode(), "sha256")
    return Fernet(base64.urlsafe_b64encode(derived))


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())
