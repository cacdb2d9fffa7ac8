"""The machine endpoints of RFC 8628 and RFC 8414: metadata, device authorization, token."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from devicelink.core.errors import (
    InvalidClient,
    InvalidRequest,
    OAuthError,
    RateLimited,
    UnsupportedGrantType,
)
from devicelink.service.clients import ClientCredentials
from devicelink.web.errors import NO_STORE, DeviceLinkRoute
from devicelink.web.forms import FORM_MEDIA_TYPE, read_form
from devicelink.web.runtime import Runtime

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
VERIFY_PATH = "/oauth/device/verify"

router = APIRouter(route_class=DeviceLinkRoute)


def runtime(request: Request) -> Runtime:
    return request.app.state.devicelink


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def client_credentials(request: Request, form: dict[str, str]) -> ClientCredentials:
    """Client identity from HTTP Basic (RFC 6749 section 2.3.1) or the form body."""
    header = request.headers.get("authorization")
    if header and header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            raw_id, sep, raw_secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
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


def _form_body(*required: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAPI description of a form-encoded body (the routes parse it themselves)."""
    properties = {name: {"type": "string"} for name in (*required, *optional)}
    return {
        "requestBody": {
            "required": True,
            "content": {
                FORM_MEDIA_TYPE: {
                    "schema": {
                        "type": "object",
                        "properties": properties,
                        "required": list(required),
                    }
                }
            },
        }
    }


@router.get("/.well-known/oauth-authorization-server", tags=["oauth"])
async def metadata(request: Request) -> JSONResponse:
    """RFC 8414 authorization server metadata, with RFC 8628 section 4's endpoint."""
    settings = runtime(request).settings
    issuer = settings.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "device_authorization_endpoint": f"{issuer}/oauth/device/authorize",
            "token_endpoint": f"{issuer}/oauth/device/token",
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
            "grant_types_supported": [DEVICE_CODE_GRANT],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": ["api"],
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.post(
    "/oauth/device/authorize",
    tags=["oauth"],
    openapi_extra=_form_body(optional=("client_id", "scope", "client_secret")),
)
async def device_authorization(request: Request) -> JSONResponse:
    """RFC 8628 sections 3.1 and 3.2: start a flow and hand out the two codes."""
    rt = runtime(request)
    ip = client_ip(request)
    if not await rt.limiter.hit(rt.start_limit, "start", ip or "-"):
        rt.metrics.refusals.labels("start").inc()
        raise RateLimited(
            "too many logins started from this address; try again later",
            retry_after=await rt.limiter.retry_after(rt.start_limit, "start", ip or "-"),
        )
    form = await read_form(request, rt.settings.max_body_bytes)
    started = await rt.flows.start(
        client_credentials(request, form),
        scope=form.get("scope"),
        request_ip=ip,
        user_agent=request.headers.get("user-agent"),
    )
    rt.metrics.flows.labels("started").inc()
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
    openapi_extra=_form_body("device_code", optional=("grant_type", "client_id", "client_secret")),
)
async def token(request: Request) -> JSONResponse:
    """RFC 8628 sections 3.4 and 3.5: the device polls until it gets its key."""
    rt = runtime(request)
    form = await read_form(request, rt.settings.max_body_bytes)
    return await answer_poll(rt, form, client_credentials(request, form), client_ip(request))


async def answer_poll(
    rt: Runtime, form: dict[str, str], creds: ClientCredentials, ip: str | None
) -> JSONResponse:
    """The token endpoint's answer to a parsed form (shared with the thin route of
    :mod:`devicelink.web.fastpath`); raises the protocol errors."""
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
    body: dict[str, Any] = {"access_token": grant.access_token, "token_type": "Bearer"}
    if grant.expires_in is not None:
        body["expires_in"] = grant.expires_in
    body["scope"] = " ".join(grant.scope)
    return JSONResponse(body, headers=NO_STORE)


@router.post(
    "/oauth/revoke",
    tags=["oauth"],
    openapi_extra=_form_body("token", optional=("token_type_hint", "client_id", "client_secret")),
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
    openapi_extra=_form_body("token", optional=("token_type_hint",)),
)
async def introspect(request: Request) -> JSONResponse:
    """RFC 7662: is this key active, and whose is it? For resource servers, which
    authenticate as confidential clients (HTTP Basic)."""
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
