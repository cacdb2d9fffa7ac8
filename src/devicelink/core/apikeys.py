"""API key format: ``dlk_<random>_<checksum>``, and which presented keys are worth a
database lookup (:func:`worth_a_lookup`), whoever minted them.

The prefix lets secret scanners find leaked keys; the checksum (CRC32 of the prefix
and random part, base62) rejects typos and garbage before any database lookup, the
same shape GitHub and Polar use for their tokens.

An embedding application's key issuer mints keys of its own shape; devicelink stores
their keyed hash like its own and looks them up the same way. The issuer may declare
that shape (:class:`KeyShape`) so that garbage still costs no lookup.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass

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


HOST_KEY_MIN_LENGTH = 16
HOST_KEY_MAX_LENGTH = 512


def is_plausible_host_key(candidate: str) -> bool:
    """The default check of a key an embedding application minted: printable ASCII
    without whitespace (what fits a ``Bearer`` header), 16 to 512 characters."""
    return HOST_KEY_MIN_LENGTH <= len(candidate) <= HOST_KEY_MAX_LENGTH and all(
        "\x21" <= ch <= "\x7e" for ch in candidate
    )


@dataclass(frozen=True, slots=True)
class KeyShape:
    """What the keys of one issuer look like, checked before any lookup.

    ``check`` (the issuer's ``is_well_formed``) replaces the default check of
    :func:`is_plausible_host_key`; ``prefix`` (the issuer's ``key_prefix``) is required
    on top of it. With neither, any plausible key is looked up.
    """

    prefix: str | None = None
    check: Callable[[str], bool] | None = None

    @classmethod
    def of(cls, issuer: object) -> KeyShape:
        """The shape a key issuer declares with its optional ``key_prefix`` attribute
        or ``is_well_formed(presented) -> bool`` method (see
        :class:`devicelink.core.ports.KeyIssuer`)."""
        prefix = getattr(issuer, "key_prefix", None)
        check = getattr(issuer, "is_well_formed", None)
        return cls(
            prefix=prefix if isinstance(prefix, str) and prefix else None,
            check=check if callable(check) else None,
        )


DEVICELINK_KEYS = KeyShape(prefix=API_KEY_PREFIX)
"""The shape of devicelink's own keys: nothing but ``dlk_`` keys is looked up."""


def worth_a_lookup(presented: str, shape: KeyShape | None = None) -> bool:
    """True when ``presented`` may be a stored key, so that looking up its keyed hash
    is worth a database query; costs no I/O.

    A ``dlk_`` key must pass its checksum (:func:`is_well_formed_api_key`), whatever the
    issuer: typos and random probes of devicelink's own shape are free to refuse. Any
    other key must have ``shape`` (the issuer's declared shape; None: any plausible
    host key, see :func:`is_plausible_host_key`).
    """
    if presented.startswith(API_KEY_PREFIX):
        return is_well_formed_api_key(presented)
    shape = shape or KeyShape()
    if shape.check is not None:
        return bool(shape.check(presented))
    if not is_plausible_host_key(presented):
        return False
    return shape.prefix is None or presented.startswith(shape.prefix)
