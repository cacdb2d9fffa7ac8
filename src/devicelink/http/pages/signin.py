"""Signing in and out: a local account (user name and password, with limits on failures)
or an upstream OpenID Connect provider (PKCE, state and nonce in a sealed cookie)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from devicelink.core.names import name_key
from devicelink.core.ports import LoginFailed
from devicelink.http.context import client_ip, runtime
from devicelink.http.errors import PageRoute
from devicelink.http.pages.common import (
    LOGIN_PATH,
    cookie_name,
    current_session,
    href,
    message_page,
    page_post,
    redirect,
    render,
    safe_next,
    session_or_anonymous,
    set_session_cookie,
    to_login,
)
from devicelink.http.pages.host_users import host_login_url
from devicelink.http.pages.wording import retry_text
from devicelink.runtime.wiring import Runtime
from devicelink.service.sessions import OpenSession

OIDC_LOGIN_PATH = "/login/oidc"
OIDC_CALLBACK_PATH = "/login/oidc/callback"
LOGOUT_PATH = "/logout"
UPSTREAM_SIGN_IN_SECONDS = 600
"""How long a browser may take at the upstream provider."""
_NEXT = "next"

router = APIRouter(include_in_schema=False, route_class=PageRoute)


def _sentence(failure: LoginFailed) -> str:
    """Why a sign-in failed, as a sentence for the page."""
    return str(failure).capitalize() + "."


@router.get(LOGIN_PATH)
async def login_page(request: Request) -> Response:
    rt = runtime(request)
    session = await current_session(request)
    next_path = safe_next(request.query_params.get(_NEXT), rt.base_path)
    if session is not None and session.user is not None:
        return redirect(request, next_path)
    if host_login_url(rt, next_path) is not None:
        return to_login(request, next_path)  # the host's sign-in is the sign-in
    if session is None:
        session = await session_or_anonymous(request)
    response = render(request, "login.html", session=session, next=next_path)
    if request.cookies.get(cookie_name(rt)) != session.token:
        set_session_cookie(response, rt, session)
    return response


@page_post(router, LOGIN_PATH)
async def login_submit(
    request: Request, rt: Runtime, session: OpenSession, form: dict[str, str]
) -> Response:
    next_path = safe_next(form.get(_NEXT), rt.base_path)
    if rt.local_accounts is None:
        return to_login(request, next_path)
    username = form.get("username", "").strip()
    ip = rt.limit_subject(client_ip(request))
    account = name_key(username)
    async with rt.limiter.serialized(("login-ip", ip), ("login-user", account)):
        return await _sign_in(request, rt, session, form, username, account, ip, next_path)


async def _sign_in(
    request: Request,
    rt: Runtime,
    session: OpenSession,
    form: dict[str, str],
    username: str,
    account: str,
    ip: str,
    next_path: str,
) -> Response:
    """Check the limits, verify the password, count a failure. ``account``: the
    username's key (:func:`devicelink.core.names.name_key`), which the limits count."""
    assert rt.local_accounts is not None
    wait = await _login_wait(rt, account, ip)
    if wait is not None:
        rt.metrics.refusals.labels("login").inc()
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
        await rt.limiter.hit(rt.login_limit, "login-ip", ip)
        await rt.limiter.hit(rt.login_limit, "login-user-ip", account, ip)
        await rt.limiter.hit(rt.login_account_limit, "login-user", account)
        return render(
            request,
            "login.html",
            session=session,
            status_code=400,
            next=next_path,
            username=username,
            error=_sentence(failure),
        )
    return redirect(request, next_path, session=signed_in)


async def _login_wait(rt: Runtime, account: str, ip: str) -> int | None:
    """Seconds this address must wait before it may try a password for ``account``, or
    None. Failures count per address (whatever the username), per username from this
    address (both ``DEVICELINK_LOGIN_LIMIT``) and per username from every address
    (``DEVICELINK_LOGIN_ACCOUNT_LIMIT``, higher). Past the last one only the addresses
    that already failed for this username are refused: strangers' failures elsewhere
    never lock the owner out, and a spread attack gets one guess per address."""
    limiter, limit = rt.limiter, rt.login_limit
    for key in (("login-ip", ip), ("login-user-ip", account, ip)):
        if not await limiter.allows(limit, *key):
            return await limiter.retry_after(limit, *key)
    if not await limiter.allows(
        rt.login_account_limit, "login-user", account
    ) and await limiter.spent(limit, "login-user-ip", account, ip):
        return min(
            await limiter.retry_after(limit, "login-user-ip", account, ip),
            await limiter.retry_after(rt.login_account_limit, "login-user", account),
        )
    return None


@router.get(OIDC_LOGIN_PATH)
async def oidc_login(request: Request) -> Response:
    """To the upstream provider. Its ``state``, ``nonce`` and PKCE verifier, and where
    to go after, travel in a sealed cookie (:mod:`devicelink.runtime.sealing`), never in
    the database: nothing is stored for a visit."""
    rt = runtime(request)
    if rt.oidc is None:
        return redirect(request, href(request, LOGIN_PATH))
    try:
        start = await rt.oidc.login_redirect(callback_url=rt.settings.issuer + OIDC_CALLBACK_PATH)
    except LoginFailed as failure:
        retry = f"{_sentence(failure)} Try again in a moment."
        return message_page(
            request,
            "Sign-in is unavailable",
            retry,
            session=await current_session(request),
            status_code=502,
        )
    values = {**start.transient, _NEXT: safe_next(request.query_params.get(_NEXT), rt.base_path)}
    response = redirect(request, start.url)
    response.set_cookie(
        upstream_cookie_name(rt),
        rt.sealer.seal(values),
        max_age=UPSTREAM_SIGN_IN_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=rt.settings.secure_cookies,
    )
    return response


@router.get(OIDC_CALLBACK_PATH)
async def oidc_callback(request: Request) -> Response:
    rt = runtime(request)
    sealed = request.cookies.get(upstream_cookie_name(rt))
    values = rt.sealer.open(sealed, max_age=UPSTREAM_SIGN_IN_SECONDS) if rt.oidc else None
    if rt.oidc is None or values is None:
        response = message_page(
            request,
            "Sign-in expired",
            "This sign-in took too long or started in another browser. Start again.",
            status_code=400,
            action_url=href(request, LOGIN_PATH),
            action_label="Sign in",
        )
        return _spent(response, rt)
    next_path = safe_next(values.pop(_NEXT, None), rt.base_path)
    session = await current_session(request)
    try:
        identity = await rt.oidc.identity_from_callback(
            dict(request.query_params),
            transient=values,
            callback_url=rt.settings.issuer + OIDC_CALLBACK_PATH,
        )
        signed_in = await rt.sessions.sign_in(session, identity)
    except LoginFailed as failure:
        failed = message_page(
            request,
            "Sign-in failed",
            _sentence(failure),
            session=session,
            status_code=400,
            action_url=href(request, LOGIN_PATH),
            action_label="Try again",
        )
        return _spent(failed, rt)
    return _spent(redirect(request, next_path, session=signed_in), rt)


def upstream_cookie_name(rt: Runtime) -> str:
    return "__Host-devicelink-upstream" if rt.settings.secure_cookies else "devicelink_upstream"


def _spent(response: Response, rt: Runtime) -> Response:
    """The upstream sign-in's cookie is used once, whatever the outcome."""
    response.delete_cookie(
        upstream_cookie_name(rt), path="/", secure=rt.settings.secure_cookies, httponly=True
    )
    return response


@page_post(router, LOGOUT_PATH)
async def logout(
    request: Request, rt: Runtime, session: OpenSession, _form: dict[str, str]
) -> Response:
    await rt.sessions.sign_out(session)
    response = message_page(
        request,
        "Signed out",
        f"You are signed out of {rt.settings.product_name} in this browser.",
        tone="ok",
        action_url=href(request, LOGIN_PATH),
        action_label="Sign in again",
    )
    response.delete_cookie(
        cookie_name(rt), path="/", secure=rt.settings.secure_cookies, httponly=True
    )
    return response
