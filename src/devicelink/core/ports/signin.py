"""Upstream sign-in (Dex's connector shape: two methods)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from devicelink.core.models import (
    Identity,
)


class LoginFailed(Exception):
    """Sign-in did not prove an identity; the message is safe to show the user."""


@dataclass(frozen=True, slots=True)
class LoginRedirect:
    """Where to send the browser to sign in, and what to keep until it comes back
    (state, nonce, PKCE verifier): the caller stores ``transient`` in the session."""

    url: str
    transient: dict[str, str] = field(default_factory=dict)


class Authenticator(Protocol):
    """One way to sign in: build the login redirect; turn the callback into an identity."""

    name: str
    label: str

    async def login_redirect(self, *, callback_url: str) -> LoginRedirect: ...

    async def identity_from_callback(
        self, params: Mapping[str, str], *, transient: Mapping[str, str], callback_url: str
    ) -> Identity:
        """Raise :class:`LoginFailed` when the callback proves nothing."""
        ...
