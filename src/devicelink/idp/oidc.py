"""Upstream sign-in through an OpenID Connect provider: authorization code flow with PKCE.

Authlib builds the authorization request (``prepare_grant_uri``, the S256 code challenge) and
the client authentication of the token request (``ClientAuth``); joserfc, Authlib's JOSE
library, verifies the ID token. Requests go through one plain ``httpx.AsyncClient``, not
Authlib's ``AsyncOAuth2Client``: that one keeps each user's token on an object shared by
concurrent sign-ins, and Authlib 1.9 deprecates its httpx integration in favour of httpx2
(a warning on import). Tokens and secrets are never logged.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from devicelink.core.models import Identity
from devicelink.core.names import printable_name
from devicelink.core.ports import LoginFailed, LoginRedirect

log = logging.getLogger(__name__)

SCOPE = "openid profile email"
UNREACHABLE = "the sign-in provider could not be reached"
INVALID = "the sign-in provider's answer could not be verified; please try again"
# Asymmetric algorithms only: the keys come from the provider's JWKS (OIDC Core 3.1.3.7).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY_SECONDS = 60
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


def name_from_claims(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of the claims ``names`` that is a printable name of bounded length
    (:func:`devicelink.core.names.printable_name`). ``email`` counts only when
    ``email_verified`` is true: anyone may type a colleague's address at a provider
    that lets users pick it. The name is what pages and lists show; the account is
    keyed by the provider's ``iss`` and ``sub``, never by this name."""
    for claim in names:
        value = claims.get(claim)
        if not isinstance(value, str):
            continue
        if claim == "email" and claims.get("email_verified") is not True:
            continue
        name = printable_name(value)
        if name is not None:
            return name
    return None


ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint")


def insecure_endpoints(metadata: Mapping[str, Any]) -> list[str]:
    """The endpoints of a discovery document that are not on https: codes, tokens and
    the keys that sign identities would cross them in clear, or from an impostor."""
    return [
        f"{name} {metadata[name]}"
        for name in ENDPOINTS
        if isinstance(metadata.get(name), str) and urlsplit(metadata[name]).scheme != "https"
    ]


class OidcAuthenticator:
    """The :class:`devicelink.core.ports.Authenticator` of one OpenID Connect provider.
    ``require_https`` (outside development): every endpoint its discovery document
    names must be https, or sign-in is refused as misconfigured."""

    name = "oidc"

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        *,
        username_claims: tuple[str, ...] = ("preferred_username", "email", "sub"),
        http: httpx.AsyncClient | None = None,
        label: str | None = None,
        timeout: float = 10.0,
        require_https: bool = False,
    ) -> None:
        if not username_claims:
            raise ValueError("username_claims must name at least one claim")
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret or None
        self.username_claims = username_claims
        self.label = label or f"Sign in with {urlsplit(issuer).hostname or issuer}"
        self._http = http
        self._owns_http = http is None
        self._timeout = timeout
        self._require_https = require_https
        self._metadata: dict[str, Any] | None = None
        self._jwks: KeySet | None = None

    def __repr__(self) -> str:
        return f"OidcAuthenticator(issuer={self.issuer!r}, client_id={self.client_id!r})"

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- the two methods of the Authenticator protocol ------------------------------------

    async def login_redirect(self, *, callback_url: str) -> LoginRedirect:
        """The authentication request of OIDC Core 3.1.2.1, with a PKCE S256 challenge
        (RFC 7636), a random ``state`` and ``nonce``; all three secrets go in ``transient``."""
        metadata = await self._discover()
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        code_verifier = secrets.token_urlsafe(64)
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=callback_url,
            scope=SCOPE,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )
        return LoginRedirect(
            url=url, transient={"state": state, "nonce": nonce, "code_verifier": code_verifier}
        )

    async def identity_from_callback(
        self, params: Mapping[str, str], *, transient: Mapping[str, str], callback_url: str
    ) -> Identity:
        """Check the authentication response (OIDC Core 3.1.2.5-3.1.2.7), redeem the code
        (3.1.3.1), validate the ID token (3.1.3.7) and name the user."""
        error = params.get("error")
        if error:
            if error == "access_denied":
                raise LoginFailed("sign-in was cancelled or refused at the sign-in provider")
            reported = error if _ERROR_CODE.fullmatch(error) else "unknown error"
            raise LoginFailed(f"the sign-in provider reported an error ({reported})")
        expected_state = transient.get("state", "")
        if not expected_state or not hmac.compare_digest(
            params.get("state", "").encode(), expected_state.encode()
        ):
            raise LoginFailed("this sign-in attempt has expired or was started elsewhere")
        if "iss" in params and params["iss"] != self.issuer:  # RFC 9207 mix-up defence
            raise LoginFailed(INVALID)
        code, nonce, verifier = (
            params.get("code"),
            transient.get("nonce"),
            transient.get("code_verifier"),
        )
        if not code or not nonce or not verifier:
            raise LoginFailed("the sign-in provider's answer was incomplete; please try again")

        metadata = await self._discover()
        tokens = await self._redeem(metadata, code, verifier, callback_url)
        claims = await self.validate_id_token(tokens.get("id_token"), nonce=nonce)
        if self.username_claims[0] not in claims and isinstance(tokens.get("access_token"), str):
            claims = {**await self._userinfo(metadata, tokens["access_token"], claims), **claims}
        username = name_from_claims(claims, self.username_claims)
        if username is None:
            raise LoginFailed("the sign-in provider did not share a usable username")
        return Identity(
            provider=self.name, subject=self.account_subject(claims["sub"]), username=username
        )

    def account_subject(self, sub: str) -> str:
        """The ``subject`` of the account of the provider's user ``sub``: the issuer
        too, so that another provider's ``sub`` never lands on the same account. Sign-in
        keys accounts by it; a back-channel logout finds them by it."""
        return f"{self.issuer}|{sub}"

    # --- ID token validation ----------------------------------------------------------------

    async def validate_id_token(
        self, id_token: object, *, nonce: str, now: int | None = None
    ) -> dict[str, Any]:
        """OIDC Core 3.1.3.7: signature by a key of the provider's JWKS (fetched again once
        for an unknown ``kid``), ``iss``, ``aud`` (and ``azp``), ``exp`` and ``iat`` with a
        small leeway, and the ``nonce`` of the request (3.1.2.1). Returns the claims."""
        if not isinstance(id_token, str) or not id_token:
            raise LoginFailed(INVALID)
        try:
            try:
                token = jwt.decode(id_token, await self._keys(), algorithms=ALGORITHMS)
            except InvalidKeyIdError:
                token = jwt.decode(id_token, await self._keys(refresh=True), algorithms=ALGORITHMS)
            registry = jwt.JWTClaimsRegistry(
                now=now,
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self.issuer},
                sub={"essential": True},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True},
                iat={"essential": True},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            log.warning("oidc: ID token rejected: %s", type(exc).__name__)
            raise LoginFailed(INVALID) from None
        claims = token.claims
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        azp = claims.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != self.client_id:
            log.warning("oidc: ID token rejected: azp")
            raise LoginFailed(INVALID)
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(
            claims["nonce"].encode(), nonce.encode()
        ):
            log.warning("oidc: ID token rejected: nonce")
            raise LoginFailed(INVALID)
        return claims

    # --- HTTP ---------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
        return self._http

    async def _get_json(self, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._client().get(url, timeout=self._timeout, **kwargs)
        except httpx.HTTPError as exc:
            log.warning("oidc: %s unreachable: %s", url, type(exc).__name__)
            raise LoginFailed(UNREACHABLE) from None
        if response.status_code != 200:
            log.warning("oidc: %s answered %s", url, response.status_code)
            raise LoginFailed(UNREACHABLE)
        try:
            return response.json()
        except ValueError:
            raise LoginFailed(INVALID) from None

    async def _discover(self) -> dict[str, Any]:
        """OpenID Connect Discovery 1.0 section 4, fetched once; the ``issuer`` it states
        must be the configured one exactly (section 4.3)."""
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            metadata = await self._get_json(url)
            required = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(metadata, dict) or any(
                not isinstance(metadata.get(k), str) for k in required
            ):
                log.warning("oidc: discovery document at %s is incomplete", url)
                raise LoginFailed(UNREACHABLE)
            if metadata.get("issuer") != self.issuer:
                log.error(
                    "oidc: discovery issuer %r is not %r", metadata.get("issuer"), self.issuer
                )
                raise LoginFailed("the sign-in provider is misconfigured")
            insecure = insecure_endpoints(metadata) if self._require_https else []
            if insecure:
                log.error("oidc: refused outside development, not https: %s", ", ".join(insecure))
                raise LoginFailed("the sign-in provider is misconfigured")
            self._metadata = metadata
        return self._metadata

    async def discovery_problems(self) -> list[str] | None:
        """For ``config check``: what in the provider's discovery document would stop
        sign-in (incomplete, another issuer, http endpoints), in an operator's words;
        None when it cannot be read from here."""
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            metadata = await self._get_json(url)
        except LoginFailed:
            return None
        if not isinstance(metadata, dict):
            return [f"the upstream's discovery document {url} is not a JSON object"]
        problems = [
            f"the upstream's discovery document lacks {name}"
            for name in ENDPOINTS[:3]
            if not isinstance(metadata.get(name), str)
        ]
        if metadata.get("issuer") != self.issuer:
            problems.append(
                f"the upstream's discovery document names the issuer {metadata.get('issuer')!r}, "
                f"not DEVICELINK_OIDC_ISSUER {self.issuer!r}"
            )
        if self._require_https:
            problems.extend(
                f"the upstream's {endpoint} must be https:// outside development"
                for endpoint in insecure_endpoints(metadata)
            )
        return problems

    async def signing_keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's JWKS, fetched once (again with ``refresh``): what signs its ID
        tokens and its logout tokens (:mod:`devicelink.idp.backchannel`). Raises
        :class:`LoginFailed` when it cannot be fetched or read."""
        return await self._keys(refresh=refresh)

    async def _keys(self, *, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            data = await self._get_json((await self._discover())["jwks_uri"])
            try:
                self._jwks = KeySet.import_key_set(data)
            except (JoseError, ValueError, KeyError, TypeError):
                log.warning("oidc: the provider's JWKS could not be read")
                raise LoginFailed(INVALID) from None
        return self._jwks

    async def _redeem(
        self, metadata: Mapping[str, Any], code: str, verifier: str, callback_url: str
    ) -> dict[str, Any]:
        """The token request of OIDC Core 3.1.3.1 with the PKCE verifier; the client
        authenticates with client_secret_basic (client_secret_post if that is all the
        provider supports), or as a public client with PKCE alone."""
        method = "none"
        if self._client_secret is not None:
            supported = metadata.get("token_endpoint_auth_methods_supported") or []
            basic = not supported or "client_secret_basic" in supported
            method = "client_secret_basic" if basic else "client_secret_post"
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback_url,
            "code_verifier": verifier,
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        url, headers, body = ClientAuth(self.client_id, self._client_secret, method).prepare(
            "POST", metadata["token_endpoint"], headers, urlencode(form)
        )
        try:
            response = await self._client().post(
                url, content=body, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            log.warning("oidc: token endpoint unreachable: %s", type(exc).__name__)
            raise LoginFailed(UNREACHABLE) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            log.warning("oidc: token endpoint answered %s (%s)", response.status_code, error)
            if response.status_code >= 500 or error is None:
                raise LoginFailed(UNREACHABLE)
            raise LoginFailed("the sign-in could not be completed; please start again")
        return body

    async def _userinfo(
        self, metadata: Mapping[str, Any], access_token: str, id_claims: Mapping[str, Any]
    ) -> dict[str, Any]:
        """OIDC Core 5.3: the claims the ID token left out; its ``sub`` must match (5.3.2)."""
        endpoint = metadata.get("userinfo_endpoint")
        if not isinstance(endpoint, str):
            return {}
        info = await self._get_json(endpoint, headers={"Authorization": f"Bearer {access_token}"})
        if not isinstance(info, dict) or info.get("sub") != id_claims["sub"]:
            log.warning("oidc: userinfo rejected: sub mismatch or not JSON")
            raise LoginFailed(INVALID)
        return info
