"""The authorization endpoint of same-device sign-in (RFC 6749 section 4.1.1, RFC 7636,
RFC 8252, RFC 9207): check the request, sign the user in on the existing pages, ask
for consent, and send the browser back to the application's loopback listener.

The client and the redirect URI are checked before anything else: until both are known
to be registered, an error is a page here, never a redirect (section 4.1.2.1). After
that every answer goes to the redirect URI with ``state`` and ``iss``.

The consent form carries the checked request sealed (encrypted and authenticated with
the server secret, :mod:`devicelink.runtime.sealing`), so nothing is stored until the
user approves; its decision checks the request again against the client as stored then.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from devicelink.core.authcode import (
    AuthorizationRequest,
    UnsafeRedirect,
    echoed_state,
)
from devicelink.core.errors import KeyIssueRefused, OAuthError, description_text
from devicelink.http.context import runtime
from devicelink.http.errors import SECURITY_HEADERS, PageRoute
from devicelink.http.oauth import AUTHORIZE_PATH
from devicelink.http.pages.common import (
    actor_of,
    current_session,
    login_redirect,
    message_page,
    page_post,
    render,
)
from devicelink.runtime.wiring import Runtime
from devicelink.service.sessions import OpenSession

DECIDE_PATH = "/oauth/authorize/decide"
CONSENT_SECONDS = 600
"""How long a consent page may stay open before its decision."""
_PARAMETERS = (
    ("response_type", "code", True, "code"),
    ("client_id", "The client's id", True, "devicelink-cli"),
    (
        "redirect_uri",
        "A registered loopback redirect URI; any port (RFC 8252 section 7.3)",
        True,
        "http://127.0.0.1:50123/callback",
    ),
    (
        "code_challenge",
        "BASE64URL(SHA256(code_verifier)) (RFC 7636 section 4.2)",
        True,
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    ),
    ("code_challenge_method", "S256 (plain is refused)", True, "S256"),
    ("state", "Echoed to the redirect URI", False, "af0ifjsldkj"),
    ("scope", "Space-separated scopes; default: all of the client's", False, "api"),
)

router = APIRouter(route_class=PageRoute)
_pages = APIRouter(include_in_schema=False, route_class=PageRoute)


@router.get(
    AUTHORIZE_PATH,
    tags=["oauth"],
    summary="Authorization endpoint (authorization code with PKCE, same device)",
    response_class=Response,
    openapi_extra={
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": required,
                "description": description,
                "schema": {"type": "string"},
                "example": example,
            }
            for name, description, required, example in _PARAMETERS
        ]
    },
    responses={
        200: {"description": "The consent page", "content": {"text/html": {}}},
        303: {
            "description": "To sign-in first; or to the redirect URI with code, state and "
            "iss, or with error, state and iss (RFC 9207)",
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        400: {
            "description": "An unknown client or an unregistered redirect URI: an error page, "
            "never a redirect",
            "content": {"text/html": {}},
        },
        403: {
            "description": "The host application's signed-in user may not sign in here",
            "content": {"text/html": {}},
        },
    },
)
async def authorize(request: Request) -> Response:
    """RFC 6749 section 4.1.1: check the request; the consent page once signed in."""
    rt = runtime(request)
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name in params:
            repeated.add(name)
        elif value != "":
            params[name] = value  # RFC 6749 section 3.1: an empty value is absent
    try:
        checked = await rt.codes.check_request(params, repeated=repeated)
    except UnsafeRedirect as unsafe:
        return _unsafe(request, unsafe)
    except OAuthError as error:
        return _to_client(rt, params["redirect_uri"], params, error=error)
    session = await current_session(request)
    if session is None or session.user is None:
        return login_redirect(request)
    return _consent(request, rt, session, checked, params)


def _consent(
    request: Request,
    rt: Runtime,
    session: OpenSession,
    checked: AuthorizationRequest,
    params: dict[str, str],
) -> Response:
    assert session.user is not None
    sealed = rt.consent_sealer.seal(
        {
            name: params[name]
            for name in ("response_type", "client_id", "redirect_uri", "code_challenge", "state")
            if name in params
        }
        | {
            "code_challenge_method": "S256",
            "scope": " ".join(checked.scope),
            "user": str(session.user.id),
        }
    )
    listener = urlsplit(checked.redirect_uri)
    response = render(
        request,
        "consent.html",
        session=session,
        client_name=checked.client.name,
        scopes=[
            rt.settings.scope_descriptions.get(scope, f"Access “{scope}”")
            for scope in checked.scope
        ],
        listener=listener.netloc,
        sealed_request=sealed,
    )
    # The decision's answer redirects to the application's listener: the form may go
    # there (CSP form-action covers the redirects of a form submission). CSP has no
    # source for an IPv6 literal (Chromium ignores "http://[::1]:PORT" and blocks the
    # redirect), so for [::1] the policy names the scheme: the page's only form posts
    # here, and the decision redirects only to the URI checked above.
    allowed = "http:" if listener.netloc.startswith("[") else f"http://{listener.netloc}"
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    response.headers["Content-Security-Policy"] = policy.replace(
        "form-action 'self'", f"form-action 'self' {allowed}"
    )
    return response


@page_post(_pages, DECIDE_PATH)
async def decide(
    request: Request, rt: Runtime, session: OpenSession, form: dict[str, str]
) -> Response:
    """Approve: a code to the redirect URI (303); Deny: ``access_denied`` there."""
    values = rt.consent_sealer.open(form.get("request"), max_age=CONSENT_SECONDS)
    user = session.user
    if values is None or user is None or values.pop("user", None) != str(user.id):
        return message_page(
            request,
            "This sign-in request has expired",
            "Nothing was approved. Start the sign-in again from your application.",
            session=session,
            status_code=400,
        )
    action = form.get("action")
    try:
        checked = await rt.codes.check_request(values)
    except UnsafeRedirect as unsafe:
        return _unsafe(request, unsafe)
    except OAuthError as error:
        return _to_client(rt, values["redirect_uri"], values, error=error)
    actor = actor_of(request, session)
    if action == "approve":
        try:
            code = await rt.codes.approve(checked, user_id=user.id, actor=actor)
        except KeyIssueRefused as refusal:
            return _to_client(rt, checked.redirect_uri, values, error="access_denied", why=refusal)
        rt.metrics.codes.labels("issued").inc()
        return _to_client(rt, checked.redirect_uri, values, code=code)
    if action == "deny":
        await rt.codes.deny(checked, actor=actor)
        return _to_client(rt, checked.redirect_uri, values, error="access_denied")
    return message_page(
        request,
        "Nothing was decided",
        "Choose Approve or Deny.",
        session=session,
        status_code=400,
    )


def _unsafe(request: Request, unsafe: UnsafeRedirect) -> Response:
    return message_page(
        request,
        "This sign-in cannot continue",
        f"{unsafe} Nothing was sent to the application. Start the sign-in again from it, "
        "or tell its developer.",
        status_code=400,
    )


def _to_client(
    rt: Runtime,
    redirect_uri: str,
    params: dict[str, str],
    *,
    code: str | None = None,
    error: OAuthError | str | None = None,
    why: KeyIssueRefused | None = None,
) -> Response:
    """303 to the application's redirect URI (already matched against the registered
    ones) with the answer, its ``state`` and this server's ``iss`` (RFC 9207)."""
    answer: dict[str, str] = {}
    if code is not None:
        answer["code"] = code
    if isinstance(error, OAuthError):
        answer["error"] = error.error
        if error.description:
            answer["error_description"] = description_text(error.description)
    elif error is not None:
        answer["error"] = error
        if why is not None:
            answer["error_description"] = why.description
    state = echoed_state(params)
    if state is not None:
        answer["state"] = state
    answer["iss"] = rt.settings.issuer
    response = RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


router.include_router(_pages)
