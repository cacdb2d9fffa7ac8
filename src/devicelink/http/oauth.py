"""The machine endpoints of RFC 8628 and RFC 8414: metadata, device authorization, token."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Request, Security
from starlette.responses import JSONResponse, Response

from devicelink.core.authcode import ReplayedCode
from devicelink.core.errors import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    OAuthError,
    RateLimited,
    UnsupportedGrantType,
)
from devicelink.core.models import AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT
from devicelink.http.context import client_ip, runtime
from devicelink.http.errors import NO_STORE, DeviceLinkRoute
from devicelink.http.forms import read_form
from devicelink.http.openapi import (
    CLIENT_BASIC,
    INVALID_CLIENT_RESPONSE,
    NO_STORE_HEADER_DOC,
    RATE_LIMITED_RESPONSE,
    TOO_LARGE_RESPONSE,
    UNAVAILABLE_RESPONSE,
    DeviceAuthorizationResponse,
    IntrospectionResponse,
    ServerMetadata,
    TokenResponse,
    documented_answer,
    documented_error,
    form_body,
)
from devicelink.runtime.clients import scopes_supported
from devicelink.runtime.wiring import Runtime
from devicelink.service.clients import ClientCredentials
from devicelink.service.flows import TokenGrant

VERIFY_PATH = "/oauth/device/verify"
AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)

router = APIRouter(route_class=DeviceLinkRoute)

_CLIENT_FORM_ERRORS: dict[int | str, dict[str, Any]] = {
    401: INVALID_CLIENT_RESPONSE,
    413: TOO_LARGE_RESPONSE,
    503: UNAVAILABLE_RESPONSE,
}
"""What an endpoint reading a client's form may answer besides 200 and 400."""


def client_credentials(request: Request, form: dict[str, str]) -> ClientCredentials:
    """Client identity from HTTP Basic (RFC 6749 section 2.3.1) or the form body."""
    header = request.headers.get("authorization")
    if header and header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            raw_id, sep, raw_secret = decoded.partition(":")
        except (binascii.Error, ValueError):  # ValueError: non-ASCII base64 text too
            raise InvalidClient("malformed Basic credentials") from None
        if not sep:
            raise InvalidClient("malformed Basic credentials")
        basic_id, basic_secret = unquote(raw_id), unquote(raw_secret)
        if "client_secret" in form:
            raise InvalidRequest("use one client authentication method, not two")
        if form.get("client_id", basic_id) != basic_id:
            raise InvalidRequest("client_id differs from the authenticated client")
        return ClientCredentials(basic_id, basic_secret, used_basic_auth=True)
    return ClientCredentials(form.get("client_id"), form.get("client_secret"))


@router.get(
    "/.well-known/oauth-authorization-server",
    tags=["oauth"],
    summary="Authorization server metadata",
    responses={200: {"model": ServerMetadata, "description": "RFC 8414 metadata"}},
)
async def metadata(request: Request) -> JSONResponse:
    """RFC 8414 authorization server metadata, with RFC 8628 section 4's endpoint."""
    rt = runtime(request)
    issuer = rt.settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "device_authorization_endpoint": f"{issuer}/oauth/device/authorize",
            "token_endpoint": f"{issuer}{TOKEN_PATH}",
            "authorization_endpoint": f"{issuer}{AUTHORIZE_PATH}",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "revocation_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "grant_types_supported": [AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": await scopes_supported(rt.store),
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.post(
    "/oauth/device/authorize",
    tags=["oauth"],
    summary="Device authorization endpoint",
    openapi_extra=form_body(optional=("client_id", "scope", "client_secret")),
    responses={
        200: documented_answer(DeviceAuthorizationResponse, "The two codes and where to enter one"),
        400: documented_error(
            "invalid_request (malformed form, repeated parameter, wrong media type, no "
            "client_id without a default client), invalid_scope"
        ),
        401: INVALID_CLIENT_RESPONSE,
        413: TOO_LARGE_RESPONSE,
        429: RATE_LIMITED_RESPONSE,
        503: UNAVAILABLE_RESPONSE,
    },
)
async def device_authorization(request: Request) -> JSONResponse:
    """RFC 8628 sections 3.1 and 3.2: start a flow and hand out the two codes."""
    rt = runtime(request)
    ip = client_ip(request)
    await check_start_limit(rt, ip)
    form = await read_form(request, rt.settings.max_body_bytes)
    return await answer_authorization(
        rt, form, client_credentials(request, form), ip, request.headers.get("user-agent")
    )


async def check_start_limit(rt: Runtime, ip: str | None) -> None:
    """The per-address limit on starting flows (checked before the body is read)."""
    # A sliding window counter: constant cost per start, however many an address makes.
    subject = rt.limit_subject(ip)
    if not await rt.limiter.hit(rt.start_limit, "start", subject, counter=True):
        rt.metrics.refusals.labels("start").inc()
        raise RateLimited(
            "too many logins started from this address; try again later",
            retry_after=await rt.limiter.retry_after(
                rt.start_limit, "start", subject, counter=True
            ),
        )


async def answer_authorization(
    rt: Runtime,
    form: dict[str, str],
    creds: ClientCredentials,
    ip: str | None,
    user_agent: str | None,
) -> JSONResponse:
    """The device authorization endpoint's answer to a parsed form, once the rate limit
    let it through (shared with the fast path of :mod:`devicelink.http.fast_path`);
    raises the protocol errors."""
    started = await rt.flows.start(
        creds, scope=form.get("scope"), request_ip=ip, user_agent=user_agent
    )
    rt.metrics.flows_started.inc()
    verification_uri = f"{rt.settings.issuer}{VERIFY_PATH}"
    return JSONResponse(
        {
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={quote(started.user_code)}",
            "expires_in": started.expires_in,
            "interval": started.interval,
        },
        headers=NO_STORE,
    )


@router.post(
    "/oauth/device/token",
    tags=["oauth"],
    summary="Token endpoint (device code grant)",
    openapi_extra=form_body("device_code", optional=("grant_type", "client_id", "client_secret")),
    responses={
        200: documented_answer(TokenResponse, "The API key: the one poll after approval"),
        400: documented_error(
            "authorization_pending, slow_down (with the new interval), access_denied, "
            "expired_token, invalid_grant (unknown, consumed or another client's code), "
            "invalid_request, unsupported_grant_type, unauthorized_client"
        ),
        **_CLIENT_FORM_ERRORS,
    },
)
async def token(request: Request) -> JSONResponse:
    """RFC 8628 sections 3.4 and 3.5: the device polls until it gets its key."""
    rt = runtime(request)
    form = await read_form(request, rt.settings.max_body_bytes)
    return await answer_poll(rt, form, client_credentials(request, form), client_ip(request))


async def answer_poll(
    rt: Runtime, form: dict[str, str], creds: ClientCredentials, ip: str | None
) -> JSONResponse:
    """The token endpoint's answer to a parsed form (shared with the fast path of
    :mod:`devicelink.http.fast_path`); raises the protocol errors."""
    grant_type = form.get("grant_type")
    if grant_type is not None and grant_type != DEVICE_CODE_GRANT:
        raise UnsupportedGrantType()
    device_code = form.get("device_code")
    if device_code is None:
        raise InvalidRequest("device_code is required")
    try:
        grant = await rt.flows.poll(creds, device_code, ip=ip)
    except OAuthError as exc:
        rt.metrics.poll_answered(exc.error)
        raise
    rt.metrics.poll_answered("issued")
    return token_response(grant)


@router.post(
    TOKEN_PATH,
    tags=["oauth"],
    summary="Token endpoint (both grants)",
    openapi_extra=form_body(
        "grant_type",
        optional=(
            "code",
            "redirect_uri",
            "code_verifier",
            "device_code",
            "client_id",
            "client_secret",
        ),
    ),
    responses={
        200: documented_answer(TokenResponse, "The API key, handed out once"),
        400: documented_error(
            "authorization_code: invalid_grant (unknown, expired or used code, another "
            "client's, another redirect_uri, a wrong code_verifier), invalid_request, "
            "unauthorized_client; the device grant: as /oauth/device/token; "
            "unsupported_grant_type"
        ),
        **_CLIENT_FORM_ERRORS,
    },
)
async def token_both_grants(request: Request) -> JSONResponse:
    """RFC 6749 section 4.1.3 (with RFC 7636 section 4.5) and RFC 8628 section 3.4: the
    token endpoint of both grants."""
    rt = runtime(request)
    form = await read_form(request, rt.settings.max_body_bytes)
    return await answer_token(
        rt,
        form,
        client_credentials(request, form),
        client_ip(request),
        request.headers.get("user-agent"),
    )


async def answer_token(
    rt: Runtime,
    form: dict[str, str],
    creds: ClientCredentials,
    ip: str | None,
    user_agent: str | None,
) -> JSONResponse:
    """``/oauth/token``'s answer to a parsed form: by ``grant_type`` (required here,
    RFC 6749 section 4.1.3), the device grant's poll or a code's redemption."""
    grant_type = form.get("grant_type")
    if grant_type == DEVICE_CODE_GRANT:
        return await answer_poll(rt, form, creds, ip)
    if grant_type is None:
        raise InvalidRequest("grant_type is required")
    if grant_type != AUTHORIZATION_CODE_GRANT:
        raise UnsupportedGrantType(
            f"grant_type must be {AUTHORIZATION_CODE_GRANT} or {DEVICE_CODE_GRANT}"
        )
    for name in ("code", "redirect_uri", "code_verifier"):
        if name not in form:
            raise InvalidRequest(f"{name} is required")
    if creds.client_id is None:
        raise InvalidRequest("client_id is required")
    try:
        grant = await rt.codes.redeem(
            creds,
            code=form["code"],
            redirect_uri=form["redirect_uri"],
            code_verifier=form["code_verifier"],
            ip=ip,
            user_agent=user_agent,
        )
    except ReplayedCode:
        rt.metrics.codes.labels("replayed").inc()
        raise
    except InvalidGrant:
        rt.metrics.codes.labels("refused").inc()
        raise
    rt.metrics.codes.labels("redeemed").inc()
    rt.metrics.keys.labels("issued").inc()
    return token_response(grant)


def token_response(grant: TokenGrant) -> JSONResponse:
    """RFC 6749 section 5.1: the key, the same for both grants."""
    body: dict[str, Any] = {"access_token": grant.access_token, "token_type": "Bearer"}
    if grant.expires_in is not None:
        body["expires_in"] = grant.expires_in
    body["scope"] = " ".join(grant.scope)
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/oauth/revoke",
    tags=["oauth"],
    summary="Token revocation (RFC 7009)",
    response_class=Response,
    openapi_extra=form_body("token", optional=("token_type_hint", "client_id", "client_secret")),
    responses={
        200: {
            "description": "Revoked, or there was nothing to revoke (an empty body)",
            "headers": NO_STORE_HEADER_DOC,
        },
        400: documented_error("invalid_request, unauthorized_client (a key of another client)"),
        **_CLIENT_FORM_ERRORS,
    },
)
async def revoke(request: Request) -> Response:
    """RFC 7009: revoke an API key. Unknown or already revoked keys also get 200."""
    rt = runtime(request)
    form = await read_form(request, rt.settings.max_body_bytes)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    # token_type_hint is only a hint (section 2.1): every key is looked up the same way.
    if await rt.keys.revoke(client_credentials(request, form), token, ip=client_ip(request)):
        rt.metrics.keys.labels("revoked").inc()
    return Response(status_code=200, headers=NO_STORE)


@router.post(
    "/oauth/introspect",
    tags=["oauth"],
    summary="Token introspection (RFC 7662)",
    dependencies=[Security(CLIENT_BASIC)],
    openapi_extra=form_body(
        "token", optional=("token_type_hint", "client_id", "client_secret"), client_auth=False
    ),
    responses={
        200: documented_answer(IntrospectionResponse, "Whether the key is active, and whose it is"),
        400: documented_error("invalid_request"),
        403: documented_error(
            "unauthorized_client: the client authenticated, but no operator marked it as a "
            "resource server"
        ),
        **_CLIENT_FORM_ERRORS,
    },
)
async def introspect(request: Request) -> JSONResponse:
    """RFC 7662: is this key active, and whose is it? For resource servers: confidential
    clients (authenticated, HTTP Basic) that an operator marked as such (``devicelink
    clients add ID --confidential --resource-server``); any other client that
    authenticates gets 403 ``unauthorized_client``."""
    rt = runtime(request)
    form = await read_form(request, rt.settings.max_body_bytes)
    creds = client_credentials(request, form)
    if creds.client_id is None:
        raise InvalidClient("authenticate with the resource server's client credentials")
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    owner = await rt.keys.introspect(creds, token)
    if owner is None:
        return JSONResponse({"active": False}, headers=NO_STORE)
    key = owner.key
    body: dict[str, Any] = {
        "active": True,
        "sub": owner.user.username,
        "username": owner.user.username,
        "client_id": key.client_id,
        "scope": " ".join(key.scope),
        "token_type": "Bearer",
        "iat": int(key.created_at.timestamp()),
        "iss": rt.settings.issuer,
    }
    if key.expires_at is not None:
        body["exp"] = int(key.expires_at.timestamp())
    return JSONResponse(body, headers=NO_STORE)
