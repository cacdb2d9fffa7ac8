"""What the abuse tests share: the server's one trusted proxy, wrong guesses, and the
figures the tests measure (printed at the end of the run under "Abuse figures", and
recorded by hand in docs/security.md)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

PROXY_ADDRESS = "127.0.0.3"
"""The server's one trusted proxy (DEVICELINK_TRUSTED_PROXIES): connections from it may
name any client address in X-Forwarded-For."""

FIGURES: dict[str, str] = {}


def figure(name: str, value: object) -> None:
    FIGURES[name] = str(value)


def wrong_codes() -> Iterator[str]:
    """Well-formed user codes that belong to no flow (the chance of a hit is 1 in 2.6e10)."""
    alphabet = "BCDFGHJKLMNPQRSTVWXZ"
    while True:
        letters = "".join(secrets.choice(alphabet) for _ in range(8))
        yield f"{letters[:4]}-{letters[4:]}"
