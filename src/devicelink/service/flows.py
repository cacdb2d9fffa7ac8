"""What the two sign-in flows (the device flow, ``device_flow``, and the authorization code
flow, ``authorization_codes``) share: who acts in the browser, for the audit log, and what
a successful token request gets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from devicelink.core.models import AuditEvent, AuditKind

__all__ = ["Actor", "TokenGrant"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting in the browser, for the audit log."""

    user_id: int | None = None
    username: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    def event(self, kind: AuditKind, now: datetime, **fields: object) -> AuditEvent:
        return AuditEvent(
            kind=kind,
            occurred_at=now,
            user_id=self.user_id,
            username=self.username,
            ip=self.ip,
            user_agent=self.user_agent,
            **fields,  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A successful token response (RFC 6749 section 5.1)."""

    access_token: str
    expires_in: int | None
    scope: tuple[str, ...]
