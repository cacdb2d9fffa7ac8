"""The browser pages: sign in, enter the code, compare and approve (RFC 8628 section 3.3).

Every form carries a CSRF token (derived from the session) and every post is also
checked for a same-origin ``Origin`` / ``Sec-Fetch-Site``. Failed code entries are
counted per session, per IP address and per account; once any limit is reached even a
right code is refused until the window passes (RFC 8628 section 5.1).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from devicelink.core.codes import normalise_user_code
from devicelink.core.lifecycle import Verdict
from devicelink.core.models import ApiKey
from devicelink.core.ports import LoginFailed
from devicelink.http.errors import PageRoute
from devicelink.http.forms import read_body
from devicelink.http.oauth import VERIFY_PATH, client_ip, runtime
from devicelink.runtime.wiring import Runtime
from devicelink.service.device_flow import Actor, Review
from devicelink.service.sessions import OpenSession

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
DECIDE_PATH = "/oauth/device/decide"
LOGIN_PATH = "/login"
OIDC_LOGIN_PATH = "/login/oidc"
OIDC_CALLBACK_PATH = "/login/oidc/callback"
LOGOUT_PATH = "/logout"
DEVICES_PATH = "/devices"
_REVIEWING = "reviewing"
_NEXT = "next"

router = APIRouter(include_in_schema=False, route_class=PageRoute)
STYLESHEET = Path(__file__).parent / "static" / "devicelink.css"
_VIA_HOST = "via_host"


# --- helpers ---------------------------------------------------------------------------


def cookie_name(rt: Runtime) -> str:
    # The __Host- prefix makes the browser refuse the cookie unless it is Secure,
    # host-only and for path /, so a sibling subdomain cannot plant one.
    return "__Host-devicelink" if rt.settings.secure_cookies else "devicelink_session"


def set_session_cookie(response: Response, rt: Runtime, session: OpenSession) -> None:
    response.set_cookie(
        cookie_name(rt),
        session.token,
        max_age=int((session.record.expires_at - session.record.created_at).total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=rt.settings.secure_cookies,
    )


async def current_session(request: Request) -> OpenSession | None:
    """The browser's devicelink session. In an embedding application with a user
    resolver, the host's signed-in user is signed in here too (a new session whose
    cookie the response carries), and signing out of the host ends it."""
    rt = runtime(request)
    session = await rt.sessions.load(request.cookies.get(cookie_name(rt)))
    if rt.resolve_user is None:
        return session
    identity = await rt.resolve_user(request)
    if identity is None:
        if session is not None and session.record.data.get(_VIA_HOST):
            return OpenSession(token=session.token, record=session.record, user=None)
        return session
    user = session.user if session is not None else None
    if user is not None and (user.provider, user.subject) == (identity.provider, identity.subject):
        return session
    try:
        signed_in = await rt.sessions.sign_in(session, identity)
    except LoginFailed:
        return session
    signed_in = await rt.sessions.save_data(signed_in, {_VIA_HOST: "1"})
    request.state.new_devicelink_session = signed_in
    return signed_in


def href(request: Request, path: str) -> str:
    """A path of this server, under the path PUBLIC_URL puts devicelink at."""
    return runtime(request).base_path + path


def _carry_new_session(request: Request, response: Response) -> None:
    new_session = getattr(request.state, "new_devicelink_session", None)
    if new_session is not None:
        set_session_cookie(response, runtime(request), new_session)


def safe_next(candidate: str | None, base: str = "") -> str:
    """Where to go after sign-in: only ever a path of this server (no open redirect)."""
    default = base + VERIFY_PATH
    if not candidate or len(candidate) > 2048:
        return default
    if not candidate.startswith(base + "/") or candidate.startswith("//"):
        return default
    if "\\" in candidate or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate


def render(
    request: Request,
    template: str,
    *,
    session: OpenSession | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    rt = runtime(request)
    context.setdefault("user", session.user if session else None)
    context["csrf_token"] = rt.sessions.csrf_token(session) if session else ""
    context["local_accounts"] = rt.local_accounts is not None
    context["oidc_label"] = rt.oidc.label if rt.oidc else None
    context["base"] = rt.base_path
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    _carry_new_session(request, response)
    return response


def redirect(request: Request, location: str) -> RedirectResponse:
    """303 to ``location``: a full path (already under the base path) or a URL."""
    response = RedirectResponse(location, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    _carry_new_session(request, response)
    return response


def to_login(request: Request, next_path: str) -> RedirectResponse:
    target = href(request, LOGIN_PATH) + "?next=" + quote(next_path, safe="")
    return redirect(request, target)


def login_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return to_login(request, safe_next(here, runtime(request).base_path))


def actor_of(request: Request, session: OpenSession) -> Actor:
    user = session.user
    return Actor(
        user_id=user.id if user else None,
        username=user.username if user else None,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )


def same_origin(request: Request, rt: Runtime) -> bool:
    """The post came from one of this server's own pages (or from a client that says
    nothing about where it came from, where the CSRF token alone decides).

    ``Sec-Fetch-Site`` comes first: under ``Referrer-Policy: no-referrer`` browsers send
    ``Origin: null`` even for a same-origin form post.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    public = urlsplit(rt.settings.issuer)
    return origin == f"{public.scheme}://{public.netloc}"


async def read_page_form(request: Request, rt: Runtime) -> dict[str, str]:
    """The fields of a page's form; a garbled body reads as empty (and fails the CSRF check)."""
    body = await read_body(request, rt.settings.max_body_bytes)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        pairs = []
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


async def checked_post(
    request: Request,
) -> tuple[Runtime, OpenSession, dict[str, str]] | Response:
    """Every page's post: its session and form, once the CSRF token and the same-origin
    check pass; otherwise the 403 page, and nothing changes."""
    rt = runtime(request)
    session = await current_session(request)
    form = await read_page_form(request, rt)
    if (
        session is None
        or not same_origin(request, rt)
        or not rt.sessions.check_csrf(session, form.get("csrf_token"))
    ):
        return forbidden(request, session)
    return rt, session, form


def forbidden(request: Request, session: OpenSession | None) -> HTMLResponse:
    return render(
        request,
        "message.html",
        session=session,
        status_code=403,
        title="This form has expired",
        tone="error",
        message="The page you submitted is out of date or did not come from this site. "
        "Nothing was changed. Go back, reload the page and try again.",
    )


def time_ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{seconds} seconds ago"
    minutes = seconds // 60
    if minutes < 60:
        return "1 minute ago" if minutes == 1 else f"{minutes} minutes ago"
    hours = minutes // 60
    if hours < 48:
        return "1 hour ago" if hours == 1 else f"{hours} hours ago"
    return f"{hours // 24} days ago"


def time_left(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((moment - now).total_seconds()))
    if seconds < 60:
        return "in less than a minute"
    minutes = seconds // 60
    if minutes < 120:
        return "in 1 minute" if minutes == 1 else f"in {minutes} minutes"
    hours = minutes // 60
    return f"in {hours} hours" if hours < 48 else f"in {hours // 24} days"


def retry_text(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    return "in a minute" if minutes <= 1 else f"in {minutes} minutes"


# --- sign-in -----------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    return redirect(request, href(request, VERIFY_PATH))


@router.get("/static/devicelink.css")
async def stylesheet() -> Response:
    return FileResponse(
        STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


@router.get(LOGIN_PATH)
async def login_page(request: Request) -> Response:
    rt = runtime(request)
    session = await current_session(request)
    next_path = safe_next(request.query_params.get(_NEXT), rt.base_path)
    if session is not None and session.user is not None:
        return redirect(request, next_path)
    created = session is None
    if session is None:
        session = await rt.sessions.start()
    response = render(request, "login.html", session=session, next=next_path)
    if created:
        set_session_cookie(response, rt, session)
    return response


@router.post(LOGIN_PATH)
async def login_submit(request: Request) -> Response:
    posted = await checked_post(request)
    if isinstance(posted, Response):
        return posted
    rt, session, form = posted
    next_path = safe_next(form.get(_NEXT), rt.base_path)
    if rt.local_accounts is None:
        return to_login(request, next_path)
    username = form.get("username", "").strip()
    ip = client_ip(request) or "-"
    async with rt.limiter.serialized(("login-ip", ip), ("login-user", username.lower())):
        return await _sign_in(request, rt, session, form, username, ip, next_path)


async def _sign_in(
    request: Request,
    rt: Runtime,
    session: OpenSession,
    form: dict[str, str],
    username: str,
    ip: str,
    next_path: str,
) -> Response:
    """Check the limits, verify the password, count a failure: one step per limit key."""
    assert rt.local_accounts is not None
    limit = rt.login_limit
    for key in (("login-ip", ip), ("login-user", username.lower())):
        if not await rt.limiter.allows(limit, *key):
            rt.metrics.refusals.labels("login").inc()
            wait = await rt.limiter.retry_after(limit, *key)
            limited = render(
                request,
                "login.html",
                session=session,
                status_code=429,
                next=next_path,
                username=username,
                error=f"Too many failed sign-ins. Try again {retry_text(wait)}.",
            )
            limited.headers["Retry-After"] = str(wait)
            return limited
    try:
        identity = await rt.local_accounts.identity_from_callback(
            form, transient={}, callback_url=LOGIN_PATH
        )
        signed_in = await rt.sessions.sign_in(session, identity)
    except LoginFailed as failure:
        await rt.limiter.hit(limit, "login-ip", ip)
        await rt.limiter.hit(limit, "login-user", username.lower())
        return render(
            request,
            "login.html",
            session=session,
            status_code=400,
            next=next_path,
            username=username,
            error=str(failure).capitalize() + ".",
        )
    response = redirect(request, next_path)
    set_session_cookie(response, rt, signed_in)
    return response


@router.get(OIDC_LOGIN_PATH)
async def oidc_login(request: Request) -> Response:
    rt = runtime(request)
    if rt.oidc is None:
        return redirect(request, href(request, LOGIN_PATH))
    session = await current_session(request) or await rt.sessions.start()
    try:
        start = await rt.oidc.login_redirect(callback_url=rt.settings.issuer + OIDC_CALLBACK_PATH)
    except LoginFailed as failure:
        return render(
            request,
            "message.html",
            session=session,
            status_code=502,
            title="Sign-in is unavailable",
            tone="error",
            message=str(failure).capitalize() + ". Try again in a moment.",
        )
    data = {k: v for k, v in session.record.data.items() if not k.startswith("oidc_")}
    data.update({f"oidc_{k}": v for k, v in start.transient.items()})
    data[_NEXT] = safe_next(request.query_params.get(_NEXT), rt.base_path)
    session = await rt.sessions.save_data(session, data)
    response = redirect(request, start.url)
    set_session_cookie(response, rt, session)
    return response


@router.get(OIDC_CALLBACK_PATH)
async def oidc_callback(request: Request) -> Response:
    rt = runtime(request)
    session = await current_session(request)
    if rt.oidc is None or session is None:
        return render(
            request,
            "message.html",
            status_code=400,
            title="Sign-in expired",
            tone="error",
            message="This sign-in took too long or started in another browser. Start again.",
            action_url=href(request, LOGIN_PATH),
            action_label="Sign in",
        )
    transient = {
        k.removeprefix("oidc_"): v for k, v in session.record.data.items() if k.startswith("oidc_")
    }
    try:
        identity = await rt.oidc.identity_from_callback(
            dict(request.query_params),
            transient=transient,
            callback_url=rt.settings.issuer + OIDC_CALLBACK_PATH,
        )
        signed_in = await rt.sessions.sign_in(session, identity)
    except LoginFailed as failure:
        return render(
            request,
            "message.html",
            session=session,
            status_code=400,
            title="Sign-in failed",
            tone="error",
            message=str(failure).capitalize() + ".",
            action_url=href(request, LOGIN_PATH),
            action_label="Try again",
        )
    response = redirect(request, safe_next(session.record.data.get(_NEXT), rt.base_path))
    set_session_cookie(response, rt, signed_in)
    return response


@router.post(LOGOUT_PATH)
async def logout(request: Request) -> Response:
    posted = await checked_post(request)
    if isinstance(posted, Response):
        return posted
    rt, session, form = posted
    await rt.sessions.sign_out(session)
    response = render(
        request,
        "message.html",
        title="Signed out",
        tone="ok",
        message="You are signed out of devicelink in this browser.",
        action_url=href(request, LOGIN_PATH),
        action_label="Sign in again",
    )
    response.delete_cookie(
        cookie_name(rt), path="/", secure=rt.settings.secure_cookies, httponly=True
    )
    return response


# --- the code and the decision -----------------------------------------------------------


@router.get(VERIFY_PATH)
async def verify_page(request: Request) -> Response:
    session = await current_session(request)
    if session is None or session.user is None:
        return login_redirect(request)
    typed = request.query_params.get("user_code", "")[:32]
    return render(request, "code.html", session=session, user_code=typed)


async def _limited(rt: Runtime, session: OpenSession, ip: str) -> int | None:
    """Seconds until code entry is allowed again, or None when it is allowed now."""
    assert session.user is not None
    for scope, limit in rt.code_entry_limits.items():
        key = _limit_key(scope, session, ip)
        if not await rt.limiter.allows(limit, "code", *key):
            return await rt.limiter.retry_after(limit, "code", *key)
    return None


def _limit_key(scope: str, session: OpenSession, ip: str) -> tuple[str, str]:
    assert session.user is not None
    if scope == "session":
        return (scope, str(session.record.id))
    if scope == "ip":
        return (scope, ip)
    return (scope, str(session.user.id))


async def _enter_code(
    request: Request, rt: Runtime, session: OpenSession, typed: str, ip: str
) -> Review | Response:
    """Check the limits, look the code up, count a failure: one step per limit key."""
    wait = await _limited(rt, session, ip)
    if wait is not None:
        rt.metrics.refusals.labels("code_entry").inc()
        response = render(
            request,
            "code.html",
            session=session,
            status_code=429,
            user_code=typed,
            error=f"Too many wrong codes. For your security, try again {retry_text(wait)}.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    review = await rt.flows.review(typed, actor=actor_of(request, session))
    if review.verdict is not Verdict.OK:
        for scope, limit in rt.code_entry_limits.items():
            await rt.limiter.hit(limit, "code", *_limit_key(scope, session, ip))
        # One message for every failure: it never tells whether a code exists, has
        # expired or belongs to someone else (RFC 8628 section 5.1).
        return render(
            request,
            "code.html",
            session=session,
            status_code=400,
            user_code=typed,
            error="That code is not valid. Check the code shown on your device and try again.",
        )
    return review


@router.post(VERIFY_PATH)
async def verify_submit(request: Request) -> Response:
    posted = await checked_post(request)
    if isinstance(posted, Response):
        return posted
    rt, session, form = posted
    if session.user is None:
        return to_login(request, href(request, VERIFY_PATH))
    typed = form.get("user_code", "")[:64]
    ip = client_ip(request) or "-"
    keys = [("code", *_limit_key(scope, session, ip)) for scope in rt.code_entry_limits]
    async with rt.limiter.serialized(*keys):
        outcome = await _enter_code(request, rt, session, typed, ip)
    if isinstance(outcome, Response):
        return outcome
    review = outcome
    normalised = normalise_user_code(typed)
    assert normalised is not None and review.authorization is not None
    data = dict(session.record.data)
    # A reference (the code's keyed hash), not the code: sessions are stored too.
    data[_REVIEWING] = rt.flows.reference(normalised) or ""
    session = await rt.sessions.save_data(session, data)
    authorization = review.authorization
    now = rt.flows.now()
    scopes = [
        rt.settings.scope_descriptions.get(scope, f"Access “{scope}”")
        for scope in authorization.scope
    ]
    return render(
        request,
        "confirm.html",
        session=session,
        user_code=f"{normalised[:4]}-{normalised[4:]}",
        client_name=review.client.name if review.client else authorization.client_id,
        scopes=scopes,
        request_ip=authorization.request_ip or "unknown",
        user_agent=authorization.user_agent or "unknown",
        requested_ago=time_ago(authorization.created_at, now),
        expires_in=time_left(authorization.expires_at, now),
    )


_RESULTS: dict[tuple[str, Verdict], tuple[str, str, str, int]] = {
    ("approve", Verdict.OK): (
        "Device approved",
        "ok",
        "You can close this page and return to your terminal: it is signing you in now.",
        200,
    ),
    ("approve", Verdict.ALREADY_APPROVED): (
        "Device approved",
        "ok",
        "This request was already approved. Return to your terminal.",
        200,
    ),
    ("deny", Verdict.OK): (
        "Request denied",
        "neutral",
        "The device was not signed in and received nothing. If you did not start this "
        "request, someone may have tried to trick you: no harm was done.",
        200,
    ),
    ("deny", Verdict.ALREADY_DENIED): (
        "Request denied",
        "neutral",
        "This request was already denied. The device received nothing.",
        200,
    ),
}
_OTHER_RESULTS: dict[Verdict, tuple[str, str, str, int]] = {
    Verdict.EXPIRED: (
        "This code has expired",
        "error",
        "Nothing was approved. Start the sign-in again on your device to get a new code.",
        410,
    ),
    Verdict.ALREADY_USED: (
        "This code was already used",
        "error",
        "The device has already received its key; nothing more was changed. If that was not "
        "you, revoke the key and start again.",
        409,
    ),
    Verdict.ALREADY_APPROVED: (
        "This request was already approved",
        "error",
        "It can no longer be denied here. Nothing was changed.",
        409,
    ),
    Verdict.ALREADY_DENIED: (
        "This request was already denied",
        "error",
        "It can no longer be approved. Start the sign-in again on your device.",
        409,
    ),
    Verdict.UNKNOWN: (
        "Unknown code",
        "error",
        "There is no request to decide. Enter the code shown on your device.",
        404,
    ),
}


@router.post(DECIDE_PATH)
async def decide(request: Request) -> Response:
    posted = await checked_post(request)
    if isinstance(posted, Response):
        return posted
    rt, session, form = posted
    if session.user is None:
        return to_login(request, href(request, VERIFY_PATH))
    action = form.get("action")
    reviewing = session.record.data.get(_REVIEWING)
    if action not in ("approve", "deny") or not reviewing:
        return redirect(request, href(request, VERIFY_PATH))
    # Only the code this session reviewed on the confirm page can be decided, so the
    # decision cannot be used to guess codes past the limits of the code form.
    actor = actor_of(request, session)
    if action == "approve":
        verdict = await rt.flows.decide_reviewed(
            reviewing, approve=True, user_id=session.user.id, actor=actor
        )
    else:
        verdict = await rt.flows.decide_reviewed(
            reviewing, approve=False, user_id=session.user.id, actor=actor
        )
    if verdict is Verdict.OK:
        rt.metrics.flows.labels("approved" if action == "approve" else "denied").inc()
    title, tone, message, status = _RESULTS.get((str(action), verdict)) or _OTHER_RESULTS[verdict]
    return render(
        request,
        "message.html",
        session=session,
        status_code=status,
        title=title,
        tone=tone,
        message=message,
    )


# --- connected devices ---------------------------------------------------------------------


def _key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if not key.is_active(now):
        return "expired"
    return "active"


@router.get(DEVICES_PATH)
async def devices_page(request: Request) -> Response:
    """Every CLI the user signed in, with a way to cut each off (or all at once)."""
    rt = runtime(request)
    session = await current_session(request)
    if session is None or session.user is None:
        return login_redirect(request)
    return await _render_devices(request, rt, session)


async def _render_devices(
    request: Request, rt: Runtime, session: OpenSession, *, notice: str | None = None
) -> HTMLResponse:
    assert session.user is not None
    now = rt.flows.now()
    keys = await rt.keys.keys_of(session.user.id)
    rows = [
        {
            "id": key.id,
            "name": key.name,
            "client": key.client_id,
            "created": time_ago(key.created_at, now),
            "last_used": time_ago(key.last_used_at, now) if key.last_used_at else "never",
            "last_ip": key.last_used_ip or "",
            "expires": (
                time_left(key.expires_at, now)
                if key.expires_at and key.expires_at > now
                else ("never" if key.expires_at is None else "expired")
            ),
            "state": _key_state(key, now),
        }
        for key in keys
    ]
    active = sum(1 for row in rows if row["state"] == "active")
    return render(
        request,
        "devices.html",
        session=session,
        title="Connected devices",
        devices=rows,
        active=active,
        notice=notice,
    )


@router.post(DEVICES_PATH)
async def devices_revoke(request: Request) -> Response:
    posted = await checked_post(request)
    if isinstance(posted, Response):
        return posted
    rt, session, form = posted
    if session.user is None:
        return login_redirect(request)
    if form.get("revoke") == "all":
        ids = None
    else:
        try:
            ids = [int(form.get("revoke", ""))]
        except ValueError:
            return redirect(request, href(request, DEVICES_PATH))
    count = await rt.keys.revoke_own(session.user, ids, ip=client_ip(request))
    rt.metrics.keys.labels("revoked").inc(count)
    notice = (
        "Nothing to revoke."
        if count == 0
        else "Revoked 1 device. It is signed out now."
        if count == 1
        else f"Revoked {count} devices. They are signed out now."
    )
    return await _render_devices(request, rt, session, notice=notice)
