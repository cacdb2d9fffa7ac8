"""A user signed out at the upstream provider (OpenID Connect Back-Channel Logout 1.0,
section 2.7): end their browser sessions here, and, if the operator chose so, revoke
their keys the way ``devicelink users disable`` does (each through
:func:`devicelink.service.keys.revoke_key`, the key issuer told at once).

The account itself stays enabled: signing out upstream is not being removed, and the
user may sign in again and approve a new device. Verifying the logout token belongs to
:mod:`devicelink.idp.backchannel`; this module gets the user's ``sub`` and the
token's ``jti`` once the token has passed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from devicelink.core.models import AuditEvent, AuditKind, User
from devicelink.core.ports import Store
from devicelink.service.clock import Clock, utc_now
from devicelink.service.keys import revoke_key
from devicelink.service.revocations import IssuerRevocations


class LogoutAction(StrEnum):
    """What an upstream sign-out does here (``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT``)."""

    END_SESSIONS = "end-sessions"
    """The user's browser sessions here end; their CLIs' keys keep working."""
    REVOKE_KEYS = "revoke-keys"
    """The sessions end and every key of the user is revoked."""


class ReplayedLogout(Exception):
    """This logout token (its ``jti``) was already acted on."""


@dataclass(frozen=True, slots=True)
class LogoutOutcome:
    """What a sign-out changed: the account (None: nobody here has that ``sub``), the
    browser sessions ended and the keys revoked."""

    user: User | None
    sessions_ended: int = 0
    keys_revoked: int = 0


def token_marker(token_id: str) -> str:
    """How the audit line names a logout token: a digest of its ``jti`` (bounded length
    whatever the provider sends), which the replay check looks for."""
    return "jti " + hashlib.sha256(token_id.encode()).hexdigest()[:32]


class UpstreamLogouts:
    """Acts on verified logout tokens of one provider (users ``provider``/``subject``
    as :func:`devicelink.service.sessions.account_of` keyed them at sign-in)."""

    def __init__(
        self,
        store: Store,
        revocations: IssuerRevocations,
        *,
        action: LogoutAction,
        replay_window: timedelta,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._revocations = revocations
        self.action = action
        self._replay_window = replay_window
        self._clock = clock

    async def sign_out(
        self, *, provider: str, subject: str, token_id: str, ip: str | None = None
    ) -> LogoutOutcome:
        """End the sessions (and per :attr:`action` revoke the keys) of the user
        ``provider``/``subject``, in one transaction with the audit line; the issuer hears
        of the revocations before this returns. :class:`ReplayedLogout` when the audit
        log already holds this token (section 2.6 step 8): a replay must not revoke the
        keys the user got after signing in again. Concurrent deliveries of one token
        may both pass (each process sees the other's line only once committed); they
        end the same sessions and revoke the same keys."""
        now = self._clock()
        marker = token_marker(token_id)
        queued: list[int] = []
        async with self._store.transaction() as tx:
            user = await tx.users.get_by_subject(provider, subject)
            if user is None:
                return LogoutOutcome(user=None)  # never signed in here: nothing to end
            recent = await tx.audit.recent(
                user_id=user.id, since=now - self._replay_window, limit=1000
            )
            if any(
                event.kind is AuditKind.UPSTREAM_LOGOUT and marker in (event.detail or "")
                for event in recent
            ):
                raise ReplayedLogout()
            sessions = await tx.browser_sessions.delete_for_user(user.id)
            revoked = 0
            if self.action is LogoutAction.REVOKE_KEYS:
                for key in await tx.api_keys.list_for_user(user.id):
                    revoked += await revoke_key(
                        tx,
                        key,
                        owner_name=user.username,
                        now=now,
                        ip=ip,
                        detail="revoked: its owner signed out at the sign-in provider",
                        queued=queued,
                    )
            await tx.audit.record(
                AuditEvent(
                    kind=AuditKind.UPSTREAM_LOGOUT,
                    occurred_at=now,
                    user_id=user.id,
                    username=user.username,
                    ip=ip,
                    detail=(
                        f"signed out at the sign-in provider (back-channel logout, {marker}): "
                        f"{sessions} browser sessions ended, {revoked} keys revoked"
                    ),
                )
            )
        await self._revocations.deliver(queued)
        return LogoutOutcome(user=user, sessions_ended=sessions, keys_revoked=revoked)
