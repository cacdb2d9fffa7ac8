"""User codes, device codes and keyed hashes (RFC 8628 sections 3.2, 5.1, 5.2 and 6.1).

The user code is typed by a person, so it follows section 6.1: eight letters from a
base-20 alphabet without vowels (no words can be spelled, no case to get wrong),
shown as ``XXXX-XXXX`` and normalised on input. The device code is never typed, so
it carries 256 random bits (section 5.2). Neither is stored in clear: storage keeps
an HMAC-SHA256 keyed with the server secret, so a database dump gives nothing away.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
DEVICE_CODE_BYTES = 32  # 256 bits of entropy (RFC 8628 section 5.2)

SECRET_FINGERPRINT = "secret_fingerprint"  # noqa: S105 - the name of a stored fact
"""The instance fact that names the database's secret by its fingerprint
(:attr:`CodeHasher.fingerprint`). During a rotation, a hash found under a previous
secret is rewritten only by a process whose secret this fact names, in the same
statement, so two processes of a rolling rotation never rewrite one hash back and forth
(:mod:`devicelink.service.instance`)."""

# Characters a person may type around the code: section 6.1 says the server should
# ignore what is outside the alphabet, such as the dash.
_SEPARATORS = str.maketrans("", "", " -\t\u2010\u2011\u2012\u2013\u2014\u2212_.")


# Random bytes below this map evenly onto the alphabet (240 = 12 x 20); the others are
# dropped, so every letter is equally likely (no modulo bias).
_UNBIASED_BELOW = 256 - 256 % len(USER_CODE_ALPHABET)
_USER_CODE_DRAW = 2 * USER_CODE_LENGTH  # enough bytes for 8 letters, nearly always


def new_user_code(random_bytes: bytes | None = None) -> str:
    """A fresh user code, already formatted as ``XXXX-XXXX`` (RFC 8628 section 6.1).

    Eight letters drawn uniformly from the alphabet, from one read of the system's
    random source (``secrets``) rather than one per letter; ``random_bytes`` (from
    ``secrets``) may be given to draw from first."""
    letters: list[str] = []
    pool = random_bytes if random_bytes is not None else secrets.token_bytes(_USER_CODE_DRAW)
    while True:
        for byte in pool:
            if byte < _UNBIASED_BELOW:
                letters.append(USER_CODE_ALPHABET[byte % len(USER_CODE_ALPHABET)])
                if len(letters) == USER_CODE_LENGTH:
                    return format_user_code("".join(letters))
        pool = secrets.token_bytes(_USER_CODE_DRAW)


def new_codes() -> tuple[str, str]:
    """A new device code and user code, from one read of the random source."""
    random_bytes = secrets.token_bytes(DEVICE_CODE_BYTES + _USER_CODE_DRAW)
    device_code = base64.urlsafe_b64encode(random_bytes[:DEVICE_CODE_BYTES]).rstrip(b"=")
    return device_code.decode("ascii"), new_user_code(random_bytes[DEVICE_CODE_BYTES:])


def format_user_code(normalised: str) -> str:
    """Display form of a normalised code: a dash in the middle for readability."""
    half = len(normalised) // 2
    return f"{normalised[:half]}-{normalised[half:]}"


def normalise_user_code(typed: str) -> str | None:
    """The canonical form of what a user typed, or ``None`` when it cannot be a code.

    RFC 8628 section 6.1: case-insensitive, dashes and spaces ignored. A letter outside
    the alphabet (a vowel, a digit) is a typo, not decoration, so it makes the input
    invalid rather than being silently dropped.
    """
    if len(typed) > 64:
        return None
    candidate = typed.translate(_SEPARATORS)
    if not candidate.isascii():
        # Unicode upper-casing turns some letters into several ("ß" into "SS"): only
        # ASCII letters can be code letters.
        return None
    candidate = candidate.upper()
    if len(candidate) != USER_CODE_LENGTH:
        return None
    if any(ch not in USER_CODE_ALPHABET for ch in candidate):
        return None
    return candidate


def new_device_code() -> str:
    """A device code with 256 random bits, URL-safe (RFC 8628 section 5.2)."""
    return secrets.token_urlsafe(DEVICE_CODE_BYTES)


class CodeHasher:
    """Keyed hashes of secrets for storage and lookup (HMAC-SHA256 with the server secret).

    Each kind of secret gets its own derived key, so a hash of a device code can never
    be matched against a hash of a user code or of an API key.
    """

    __slots__ = (
        "_api_key",
        "_authorization_code",
        "_client_secret",
        "_csrf",
        "_device_code",
        "_session",
        "_user_code",
        "fingerprint",
        "previous",
    )

    def __init__(self, secret: bytes, previous: tuple[CodeHasher, ...] = ()) -> None:
        if len(secret) < 32:
            raise ValueError("the server secret must be at least 32 bytes")

        def derive(purpose: bytes) -> bytes:
            return hmac.new(secret, b"devicelink/" + purpose, hashlib.sha256).digest()

        self._device_code = derive(b"device_code")
        self._user_code = derive(b"user_code")
        self._api_key = derive(b"api_key")
        self._authorization_code = derive(b"authorization_code")
        self._client_secret = derive(b"client_secret")
        self._session = derive(b"session")
        self._csrf = derive(b"csrf")
        self.fingerprint = derive(b"fingerprint").hex()[:32]
        """Names the secret without revealing it: processes that must agree compare it."""
        self.previous = previous
        """Hashers of the secrets this one replaces (a rotation in progress), newest
        first: lookups that miss with this hasher try theirs; nothing new is written
        with them. Empty outside a rotation."""

    @staticmethod
    def _mac(key: bytes, value: str) -> bytes:
        return hmac.digest(key, value.encode("utf-8"), "sha256")

    def device_code(self, device_code: str) -> bytes:
        return self._mac(self._device_code, device_code)

    def user_code(self, normalised_user_code: str) -> bytes:
        return self._mac(self._user_code, normalised_user_code)

    def api_key(self, api_key: str) -> bytes:
        return self._mac(self._api_key, api_key)

    def authorization_code(self, code: str) -> bytes:
        return self._mac(self._authorization_code, code)

    def client_secret(self, client_secret: str) -> bytes:
        return self._mac(self._client_secret, client_secret)

    def session_token(self, token: str) -> bytes:
        return self._mac(self._session, token)

    def csrf_token(self, session_token: str) -> str:
        """The CSRF token of a browser session: derived from the session's own secret
        token, so it needs no storage and is worthless without the cookie."""
        return self._mac(self._csrf, session_token).hex()
