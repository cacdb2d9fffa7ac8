"""The upstream's back-channel logout, wired: the logout token verified by
:mod:`devicelink.idp.backchannel`, acted on by :mod:`devicelink.service.upstream_logout`,
every refusal an ``invalid_request`` (OpenID Connect Back-Channel Logout 1.0 section 2.8).

Built only when ``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT`` is not ``off`` and the upstream
is an OpenID Connect provider; otherwise there is no endpoint (404).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from devicelink.core.errors import InvalidRequest
from devicelink.core.ports import Authenticator, Store
from devicelink.idp.backchannel import (
    REPLAY_WINDOW_SECONDS,
    InvalidLogoutToken,
    LogoutTokenVerifier,
)
from devicelink.idp.oidc import OidcAuthenticator
from devicelink.runtime.settings import Settings
from devicelink.service.clock import Clock
from devicelink.service.revocations import IssuerRevocations
from devicelink.service.upstream_logout import (
    LogoutAction,
    LogoutOutcome,
    ReplayedLogout,
    UpstreamLogouts,
)

log = logging.getLogger("devicelink")

BACKCHANNEL_LOGOUT_PATH = "/oauth/upstream/backchannel-logout"


class UpstreamLogoutReceiver:
    """Takes the logout tokens one provider posts for the users who signed in with it."""

    def __init__(
        self, provider: OidcAuthenticator, verifier: LogoutTokenVerifier, logouts: UpstreamLogouts
    ) -> None:
        self._provider = provider
        self._verifier = verifier
        self._logouts = logouts

    async def receive(self, logout_token: str | None, *, ip: str | None) -> LogoutOutcome:
        """Verify the token, then act on it; :class:`InvalidRequest` with the reason for
        anything refused, in which case nothing has changed."""
        if not logout_token:
            raise InvalidRequest("logout_token is required")
        try:
            notice = await self._verifier.verify(logout_token)
        except InvalidLogoutToken as refused:
            raise InvalidRequest(str(refused)) from None
        if notice.subject is None:
            # devicelink keeps no upstream session ids: it knows upstream users by sub.
            raise InvalidRequest(
                "the logout token names a session (sid) but no user (sub); this client needs sub"
            )
        try:
            outcome = await self._logouts.sign_out(
                provider=self._provider.name,
                subject=self._provider.account_subject(notice.subject),
                token_id=notice.token_id,
                ip=ip,
            )
        except ReplayedLogout:
            raise InvalidRequest("this logout token was already received") from None
        if outcome.user is not None:
            log.info(
                "back-channel logout for %s: %d browser sessions ended, %d keys revoked",
                outcome.user.username,
                outcome.sessions_ended,
                outcome.keys_revoked,
            )
        return outcome


def upstream_logout_receiver(
    settings: Settings,
    store: Store,
    upstream: Authenticator | None,
    revocations: IssuerRevocations,
    clock: Clock,
) -> UpstreamLogoutReceiver | None:
    """The receiver the settings ask for, or None (off, or no OpenID Connect upstream)."""
    if settings.oidc_backchannel_logout == "off" or not isinstance(upstream, OidcAuthenticator):
        return None
    logouts = UpstreamLogouts(
        store,
        revocations,
        action=LogoutAction(settings.oidc_backchannel_logout),
        replay_window=timedelta(seconds=REPLAY_WINDOW_SECONDS),
        clock=clock,
    )
    return UpstreamLogoutReceiver(upstream, LogoutTokenVerifier(upstream), logouts)
