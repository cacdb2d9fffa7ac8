"""API key format: ``dlk_<random>_<checksum>``.

The prefix lets secret scanners find leaked keys; the checksum (CRC32 of the prefix
and random part, base62) rejects typos and garbage before any database lookup, the
same shape GitHub and Polar use for their tokens.
"""

from __future__ import annotations

import secrets
import zlib

API_KEY_PREFIX = "dlk_"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LENGTH = 43  # 43 base62 characters carry about 256 bits
_CHECKSUM_LENGTH = 6
API_KEY_LENGTH = len(API_KEY_PREFIX) + _RANDOM_LENGTH + 1 + _CHECKSUM_LENGTH


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(_BASE62[rem])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECKSUM_LENGTH)


def new_api_key() -> str:
    """A fresh key: prefix, about 256 random bits, checksum."""
    random_part = "".join(secrets.choice(_BASE62) for _ in range(_RANDOM_LENGTH))
    body = API_KEY_PREFIX + random_part
    return f"{body}_{_checksum(body)}"


def is_well_formed_api_key(candidate: str) -> bool:
    """True when ``candidate`` has the key's shape and its checksum matches.

    Costs no I/O: callers reject anything for which this is False before looking the
    key up, so typos and random probes never reach the database.
    """
    if (
        len(candidate) != API_KEY_LENGTH
        or not candidate.isascii()
        or not candidate.startswith(API_KEY_PREFIX)
    ):
        return False
    body, sep, checksum = candidate.rpartition("_")
    if sep != "_" or len(body) != len(API_KEY_PREFIX) + _RANDOM_LENGTH:
        return False
    if any(ch not in _BASE62 for ch in body[len(API_KEY_PREFIX) :]):
        return False
    return secrets.compare_digest(checksum, _checksum(body))
