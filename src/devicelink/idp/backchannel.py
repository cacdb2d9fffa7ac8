"""OpenID Connect Back-Channel Logout 1.0: the logout token a provider posts when a user's
session there ends (section 2.5), verified as section 2.6 requires.

What devicelink then does (end the user's browser sessions, revoke their keys) and the
replay check of step 8, which needs the database, belong to the service
(:mod:`devicelink.service.upstream_logout`). The keys are the provider's JWKS, the ones
:class:`devicelink.idp.oidc.OidcAuthenticator` already fetches for ID tokens.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import InvalidKeyIdError, JoseError

from devicelink.core.ports import LoginFailed
from devicelink.idp.oidc import ALGORITHMS, LEEWAY_SECONDS, OidcAuthenticator

log = logging.getLogger(__name__)

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
"""The member of ``events`` that makes a JWT a logout token (section 2.4)."""
MAX_AGE_SECONDS = 300
"""How old (``iat``) a logout token may be. Providers post it the moment a session
ends (node-oidc-provider gives it two minutes, section 4 suggests at most two); the
bound keeps a captured token from being replayed once its ``jti`` is forgotten."""
REPLAY_WINDOW_SECONDS = MAX_AGE_SECONDS + 2 * LEEWAY_SECONDS
"""How long a token's ``jti`` must be remembered: as long as the token can be accepted,
with the clock leeway on both sides."""
KEYS_REFRESH_SECONDS = 60.0
"""An unknown ``kid`` fetches the JWKS again at most this often: anyone may post to the
endpoint, and must not make devicelink hammer the provider."""


class InvalidLogoutToken(Exception):
    """The logout token failed a check of section 2.6; the message is safe to send as
    the ``error_description`` of the 400 answer (section 2.8)."""


@dataclass(frozen=True, slots=True)
class LogoutNotice:
    """What a verified logout token says: whose session ended at the provider."""

    subject: str | None
    """The provider's ``sub`` of the user, when the token names one."""
    session_id: str | None
    """The provider's ``sid`` of the session that ended, when the token names one."""
    token_id: str
    """The token's ``jti``, for the replay check."""


class LogoutTokenVerifier:
    """Section 2.6 (Back-Channel Logout 1.0 with errata set 1) for the tokens of one
    provider and one client (``aud``)."""

    def __init__(
        self,
        provider: OidcAuthenticator,
        *,
        max_age: int = MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._max_age = max_age
        self._monotonic = monotonic
        self._refreshed_at: float | None = None

    async def verify(self, logout_token: str, *, now: int | None = None) -> LogoutNotice:
        """Steps 1-7 of section 2.6 (``now``: the wall clock by default, as for ID
        tokens). Raises :class:`InvalidLogoutToken` with the reason."""
        if logout_token.count(".") == 4:
            # Step 1: devicelink registers no encryption key, so a JWE is not for it.
            raise InvalidLogoutToken("encrypted logout tokens are not accepted")
        token = await self._decode(logout_token)
        typ = token.header.get("typ")
        if isinstance(typ, str) and typ.lower().removeprefix("application/") not in (
            "jwt",
            "logout+jwt",
        ):
            # Section 4.1: another kind of JWT (an access token, say) is never a logout.
            raise InvalidLogoutToken("the token is not a logout token (typ)")
        claims = token.claims
        current = int(time.time()) if now is None else now
        registry = jwt.JWTClaimsRegistry(
            now=current,
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self._provider.issuer},
            aud={"essential": True, "value": self._provider.client_id},
            iat={"essential": True},
            jti={"essential": True},
        )
        # Step 4: iss, aud, iat, and exp as for ID tokens. Errata set 1 made exp REQUIRED,
        # but older Keycloak versions send none (and the iat bound below holds anyway).
        try:
            registry.validate(claims)
        except (JoseError, ValueError) as exc:
            log.info("back-channel logout: token refused: %s", exc)
            raise InvalidLogoutToken(f"the logout token's claims were refused ({exc})") from None
        if claims["iat"] < current - self._max_age - LEEWAY_SECONDS:
            raise InvalidLogoutToken("the logout token is too old")
        subject, session_id = _optional_string(claims, "sub"), _optional_string(claims, "sid")
        if subject is None and session_id is None:  # step 5
            raise InvalidLogoutToken("the logout token names neither a user (sub) nor a session")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
            raise InvalidLogoutToken("the token carries no back-channel logout event")  # step 6
        if "nonce" in claims:  # step 7: an ID token is never a logout token
            raise InvalidLogoutToken("a logout token must not carry a nonce")
        return LogoutNotice(
            subject=subject,
            session_id=session_id,
            token_id=claims["jti"],
        )

    def _looks_like_ours(self, logout_token: str) -> None:
        """Before any key is fetched: a signed JWT with an accepted algorithm that says
        it comes from our provider. Anyone may post here; what fails this costs no
        request to the provider and cannot use up the once-a-minute refresh of its
        keys (the signature, checked next, is what proves the claim)."""
        try:
            unverified = jws.extract_compact(logout_token.encode("ascii"))
            claims = json.loads(unverified.payload)
            algorithm = unverified.headers().get("alg")
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise InvalidLogoutToken("the logout token is not a signed JWT") from None
        if algorithm not in ALGORITHMS:
            raise InvalidLogoutToken("the logout token's signature could not be verified")
        if not isinstance(claims, dict) or claims.get("iss") != self._provider.issuer:
            raise InvalidLogoutToken("the logout token was not issued by the provider ('iss')")

    async def _decode(self, logout_token: str) -> jwt.Token:
        """Steps 2 and 3: a signature by a key of the provider's JWKS, with an
        asymmetric algorithm (never ``none``, never a shared secret)."""
        self._looks_like_ours(logout_token)
        try:
            try:
                return jwt.decode(
                    logout_token, await self._provider.signing_keys(), algorithms=ALGORITHMS
                )
            except InvalidKeyIdError:
                if not self._may_refresh():
                    raise
                keys = await self._provider.signing_keys(refresh=True)
                return jwt.decode(logout_token, keys, algorithms=ALGORITHMS)
        except LoginFailed:
            raise InvalidLogoutToken("the provider's keys could not be fetched") from None
        except (JoseError, ValueError, TypeError) as exc:
            log.info("back-channel logout: signature refused: %s", type(exc).__name__)
            raise InvalidLogoutToken("the logout token's signature could not be verified") from None

    def _may_refresh(self) -> bool:
        moment = self._monotonic()
        if self._refreshed_at is not None and moment - self._refreshed_at < KEYS_REFRESH_SECONDS:
            return False
        self._refreshed_at = moment
        return True


def _optional_string(claims: dict[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidLogoutToken(f"the logout token's {name} is not a string")
    return value
