"""Signing in and out: a local account (user name and password, with limits on failures)
or an upstream OpenID Connect provider (PKCE, state and nonce kept in the session)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

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
    created = session is None
    if session is None:
        session = await rt.sessions.start()
    response = render(request, "login.html", session=session, next=next_path)
    if created:
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
            error=_sentence(failure),
        )
    return redirect(request, next_path, session=signed_in)


@router.get(OIDC_LOGIN_PATH)
async def oidc_login(request: Request) -> Response:
    rt = runtime(request)
    if rt.oidc is None:
        return redirect(request, href(request, LOGIN_PATH))
    session = await current_session(request) or await rt.sessions.start()
    try:
        start = await rt.oidc.login_redirect(callback_url=rt.settings.issuer + OIDC_CALLBACK_PATH)
    except LoginFailed as failure:
        retry = f"{_sentence(failure)} Try again in a moment."
        return message_page(
            request, "Sign-in is unavailable", retry, session=session, status_code=502
        )
    data = {k: v for k, v in session.record.data.items() if not k.startswith("oidc_")}
    data.update({f"oidc_{k}": v for k, v in start.transient.items()})
    data[_NEXT] = safe_next(request.query_params.get(_NEXT), rt.base_path)
    session = await rt.sessions.save_data(session, data)
    return redirect(request, start.url, session=session)


@router.get(OIDC_CALLBACK_PATH)
async def oidc_callback(request: Request) -> Response:
    rt = runtime(request)
    session = await current_session(request)
    if rt.oidc is None or session is None:
        return message_page(
            request,
            "Sign-in expired",
            "This sign-in took too long or started in another browser. Start again.",
            status_code=400,
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
        return message_page(
            request,
            "Sign-in failed",
            _sentence(failure),
            session=session,
            status_code=400,
            action_url=href(request, LOGIN_PATH),
            action_label="Try again",
        )
    next_path = safe_next(session.record.data.get(_NEXT), rt.base_path)
    return redirect(request, next_path, session=signed_in)


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
