"""The OpenAPI description of the machine endpoints (``GET /openapi.json``).

The routes read their forms and write their JSON themselves (see forms.py), so FastAPI
cannot infer any of this: the request bodies, the answers and the security schemes are
described here, and only here. Nothing here changes an answer: the one piece that runs
on a request, the security schemes' dependency, does nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.openapi.models import HTTPBase as HTTPBaseModel
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.openapi.models import SecurityBase as SecurityBaseModel
from fastapi.security.base import SecurityBase
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from devicelink.http.forms import FORM_MEDIA_TYPE

# --- the answers: RFC 6749, RFC 8414, RFC 8628, RFC 7662 -------------------------------


class OAuthErrorResponse(BaseModel):
    """RFC 6749 section 5.2 error response: every failure of a machine endpoint, whatever
    its status (never 422, never ``{"detail": ...}``)."""

    error: str = Field(
        description="Error code: invalid_request, invalid_client, invalid_grant, "
        "unauthorized_client, unsupported_grant_type, invalid_scope, authorization_pending, "
        "slow_down, access_denied, expired_token (RFC 6749, RFC 8628), invalid_token "
        "(RFC 6750), temporarily_unavailable, not_found"
    )
    error_description: str | SkipJsonSchema[None] = Field(
        default=None, description="Human-readable explanation, for the developer"
    )
    interval: int | SkipJsonSchema[None] = Field(
        default=None,
        description="slow_down only: the seconds to wait between polls from now on",
    )


class ServerMetadata(BaseModel):
    """RFC 8414 authorization server metadata."""

    issuer: str
    device_authorization_endpoint: str
    token_endpoint: str
    authorization_endpoint: str
    revocation_endpoint: str
    revocation_endpoint_auth_methods_supported: list[str]
    introspection_endpoint: str
    introspection_endpoint_auth_methods_supported: list[str]
    grant_types_supported: list[str]
    response_types_supported: list[str]
    response_modes_supported: list[str]
    code_challenge_methods_supported: list[str]
    authorization_response_iss_parameter_supported: bool = Field(description="RFC 9207")
    token_endpoint_auth_methods_supported: list[str]
    scopes_supported: list[str]


class DeviceAuthorizationResponse(BaseModel):
    """RFC 8628 section 3.2 device authorization response."""

    device_code: str = Field(description="What the device polls the token endpoint with")
    user_code: str = Field(
        pattern="^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$",
        description="What the user types (in any case, with or without the dash)",
    )
    verification_uri: str = Field(description="Where the user goes")
    verification_uri_complete: str = Field(description="verification_uri with the user code")
    expires_in: int = Field(ge=0, description="Seconds the codes stay valid")
    interval: int = Field(ge=0, description="Seconds to wait between polls")


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1 access token response: the API key, handed out once."""

    access_token: str = Field(description="The API key (dlk_...)")
    token_type: Literal["Bearer"]
    expires_in: int | SkipJsonSchema[None] = Field(
        default=None,
        description="Seconds the key lives; absent only for keys that never expire",
    )
    scope: str = Field(description="Space-separated scopes granted")


class IntrospectionResponse(BaseModel):
    """RFC 7662 section 2.2 introspection response. An unknown, revoked or expired key
    (or one of another client) is only ``{"active": false}``."""

    active: bool
    sub: str | SkipJsonSchema[None] = None
    username: str | SkipJsonSchema[None] = None
    client_id: str | SkipJsonSchema[None] = None
    scope: str | SkipJsonSchema[None] = None
    token_type: str | SkipJsonSchema[None] = None
    iat: int | SkipJsonSchema[None] = None
    exp: int | SkipJsonSchema[None] = Field(
        default=None, description="Absent for keys that never expire"
    )
    iss: str | SkipJsonSchema[None] = None


# --- the answers of /api and the probes --------------------------------------------------


class KeySummary(BaseModel):
    id: str
    name: str
    created_at: str = Field(description="ISO 8601")
    expires_at: str | None = Field(description="ISO 8601; null for a key that never expires")


class KeyOwnerResponse(BaseModel):
    """The owner of the API key the request carries."""

    sub: str
    username: str
    client_id: str
    scope: str = Field(description="Space-separated scopes of the key")
    key: KeySummary


class KeyDescription(BaseModel):
    id: str
    name: str
    client_id: str
    scope: str
    created_at: str = Field(description="ISO 8601")
    last_used_at: str | None
    last_used_ip: str | None
    expires_at: str | None
    revoked_at: str | None
    active: bool


class KeyListResponse(BaseModel):
    """The caller's keys, newest first."""

    keys: list[KeyDescription]


class HealthResponse(BaseModel):
    status: str = Field(description="ok: the process answers")


class ReadinessChecks(BaseModel):
    """Each dependency in use, by name; one that is not in use is absent."""

    database: Literal["ok"] = Field(description="Required: without it /readyz answers 503")
    key_changes: Literal["listening", "not listening"] | SkipJsonSchema[None] = Field(
        default=None,
        description="With the fast path's key cache (PostgreSQL): whether this process "
        "hears of key and account changes; not listening, key checks go to the "
        "database uncached (degraded)",
    )
    redis: Literal["ok", "unreachable"] | SkipJsonSchema[None] = Field(
        default=None,
        description="With DEVICELINK_REDIS_URL: unreachable, the rate limits are counted "
        "in this process alone until it answers again (degraded)",
    )


class ReadinessResponse(BaseModel):
    status: Literal["ready", "degraded"] = Field(
        description="ready: every dependency answers; degraded: serving, without the "
        "key-change listener or Redis (see checks)"
    )
    checks: ReadinessChecks


# --- headers, documented errors, security schemes, form bodies ---------------------------


NO_STORE_HEADER_DOC = {
    "Cache-Control": {
        "description": "no-store: answers carry secrets or one-time state",
        "required": True,
        "schema": {"type": "string", "pattern": "no-store"},
    }
}
RETRY_AFTER_HEADER_DOC = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}


def documented_answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A successful JSON answer, not to be cached."""
    return {"model": model, "description": description, "headers": NO_STORE_HEADER_DOC}


def documented_error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error answer: RFC 6749 section 5.2 JSON, not to be cached."""
    return {
        "model": OAuthErrorResponse,
        "description": description,
        "headers": {**NO_STORE_HEADER_DOC, **(headers or {})},
    }


def _www_authenticate(scheme: str) -> dict[str, Any]:
    return {
        "WWW-Authenticate": {
            "description": f"The {scheme} challenge (RFC 7235 section 4.1)",
            "required": True,
            "schema": {"type": "string", "pattern": f"^{scheme} "},
        }
    }


INVALID_CLIENT_RESPONSE = documented_error(
    "invalid_client: unknown client, or client authentication failed",
    _www_authenticate("Basic"),
)
INVALID_TOKEN_RESPONSE = documented_error(
    "invalid_token: the API key is missing, unknown, revoked or expired (RFC 6750)",
    _www_authenticate("Bearer"),
)
METRICS_TOKEN_RESPONSE = documented_error(
    "invalid_token: DEVICELINK_METRICS_TOKEN is set, and the request did not send it as "
    "its Bearer token",
    _www_authenticate("Bearer"),
)
TOO_LARGE_RESPONSE = documented_error("invalid_request: the request body is too large")
RATE_LIMITED_RESPONSE = documented_error(
    "temporarily_unavailable: too many requests from this address", RETRY_AFTER_HEADER_DOC
)
UNAVAILABLE_RESPONSE = documented_error(
    "temporarily_unavailable: the database is unreachable or the server is shutting down",
    RETRY_AFTER_HEADER_DOC,
)


class _DocumentedScheme(SecurityBase):
    """A security scheme for the OpenAPI description only: listed in a route's
    ``dependencies``, it puts the scheme in the schema and does nothing on a request
    (the routes authenticate the caller themselves, in the protocol's error format)."""

    def __init__(self, name: str, model: SecurityBaseModel) -> None:
        self.scheme_name = name
        self.model = model

    async def __call__(self) -> None:
        return None


CLIENT_BASIC = _DocumentedScheme(
    "clientBasic",
    HTTPBaseModel(
        scheme="basic",
        description="Client authentication (RFC 6749 section 2.3.1): client id and secret, "
        "form-urlencoded, as the user name and password. Confidential clients may send "
        "client_id and client_secret in the form instead.",
    ),
)
API_KEY_BEARER = _DocumentedScheme(
    "bearerApiKey",
    HTTPBearerModel(
        bearerFormat="dlk_<random>_<checksum>",
        description="An API key issued by the token endpoint (RFC 6750)",
    ),
)

_FORM_FIELDS = {
    "client_id": "The client's id (RFC 6749 section 2.2); may be omitted when the server "
    "has a default client",
    "client_secret": "A confidential client's secret (client_secret_post); or use HTTP Basic",
    "scope": "Space-separated scopes (RFC 6749 section 3.3)",
    "grant_type": "urn:ietf:params:oauth:grant-type:device_code (at /oauth/device/token: "
    "checked when present), or authorization_code (at /oauth/token, where it is required)",
    "code": "The authorization code the redirect URI received",
    "redirect_uri": "The redirect_uri of the authorization request, exactly",
    "code_verifier": "The PKCE code verifier (RFC 7636 section 4.5)",
    "device_code": "The device_code of the device authorization response",
    "token": "The API key",
    "token_type_hint": "access_token; only a hint, every key is looked up the same way",
    "logout_token": "The upstream provider's logout token (OpenID Connect Back-Channel "
    "Logout 1.0 section 2.4), a JWT signed by a key of its JWKS",
}


def form_body(
    *required: str,
    optional: tuple[str, ...] = (),
    client_auth: bool = True,
) -> dict[str, Any]:
    """OpenAPI description of a form-encoded body (the routes parse it themselves; an
    empty value counts as absent). ``client_auth``: HTTP Basic client authentication is
    accepted as well as none (public clients)."""
    properties = {
        name: {"type": "string", "description": _FORM_FIELDS[name]}
        for name in (*required, *optional)
    }
    extra: dict[str, Any] = {
        "requestBody": {
            "required": bool(required),
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
    if client_auth:
        extra["security"] = [{}, {CLIENT_BASIC.scheme_name: []}]
    return extra
