"""What every page shares: the session cookie, the signed-in user (the host's too, when
embedded), the CSRF- and origin-checked post, rendering and redirects.

Every form carries a CSRF token (derived from the session) and every post is also
checked for a same-origin ``Origin`` / ``Sec-Fetch-Site``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from devicelink.http.context import client_ip, runtime
from devicelink.http.forms import read_body
from devicelink.http.oauth import VERIFY_PATH
from devicelink.http.pages.host_users import (
    host_login_url,
    refused_host_user,
    signed_in_by_host,
    with_host_user,
)
from devicelink.http.templating import templates_for
from devicelink.runtime.wiring import Runtime
from devicelink.service.flows import Actor
from devicelink.service.sessions import OpenSession

LOGIN_PATH = "/login"


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
    return await with_host_user(request, rt, session)


async def session_or_anonymous(request: Request) -> OpenSession:
    """The browser's session, or an anonymous one in its cookie alone (the cookie's own
    token while it names no row, so the sign-in form's CSRF token holds across visits):
    visiting the sign-in page writes nothing (issue 13, finding 8)."""
    rt = runtime(request)
    session = await current_session(request)
    return session or rt.sessions.unsaved(request.cookies.get(cookie_name(rt)))


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
    # The host's users sign out at the host (LOGOUT_URL), or not from these pages.
    context["host_signed_in"] = signed_in_by_host(session)
    context["host_logout_url"] = rt.settings.logout_url
    context["product_name"] = rt.settings.product_name
    templates = templates_for(rt.settings)
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    _carry_new_session(request, response)
    return response


def message_page(
    request: Request,
    title: str,
    message: str,
    *,
    session: OpenSession | None = None,
    status_code: int = 200,
    tone: str = "error",
    **action: str,
) -> HTMLResponse:
    """The page that says one thing (``tone``: ok, neutral or error), with a link on
    when ``action`` names one (``action_url`` and ``action_label``)."""
    return render(
        request,
        "message.html",
        session=session,
        status_code=status_code,
        title=title,
        tone=tone,
        message=message,
        **action,
    )


def redirect(
    request: Request, location: str, *, session: OpenSession | None = None
) -> RedirectResponse:
    """303 to ``location``: a full path (already under the base path) or a URL; with
    ``session``, the response sets its cookie (a session just started or signed in)."""
    response = RedirectResponse(location, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    _carry_new_session(request, response)
    if session is not None:
        set_session_cookie(response, runtime(request), session)
    return response


def to_login(request: Request, next_path: str) -> Response:
    """To sign-in, and back to ``next_path`` after: the host's sign-in page when it has
    one (``LOGIN_URL``), else devicelink's."""
    refusal = refused_host_user(request)
    if refusal is not None:
        message = refusal.capitalize() + ". Ask an administrator."
        return message_page(request, "You cannot approve devices", message, status_code=403)
    target = host_login_url(runtime(request), next_path)
    if target is None:
        target = href(request, LOGIN_PATH) + "?next=" + quote(next_path, safe="")
    return redirect(request, target)


def login_redirect(request: Request) -> Response:
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


PagePost = Callable[[Request, Runtime, OpenSession, dict[str, str]], Awaitable[Response]]


def page_post(
    router: APIRouter, path: str, *, sign_in_first: str | None = None
) -> Callable[[PagePost], PagePost]:
    """``@page_post(router, path)`` registers every page's post: the handler gets the
    runtime, the session and the form once the CSRF token and the same-origin check
    pass; otherwise the 403 page answers, and nothing changes. With ``sign_in_first``
    (a page's path), a post with no user signed in goes to sign-in and back to that
    page, so the handler's session always has a user."""

    def register(handler: PagePost) -> PagePost:
        async def endpoint(request: Request) -> Response:
            rt = runtime(request)
            session = await session_or_anonymous(request)
            form = await read_page_form(request, rt)
            if not same_origin(request, rt) or not rt.sessions.check_csrf(
                session, form.get("csrf_token")
            ):
                return forbidden(request, session)
            if sign_in_first is not None and session.user is None:
                return to_login(request, href(request, sign_in_first))
            return await handler(request, rt, session, form)

        router.add_api_route(path, endpoint, methods=["POST"], name=handler.__name__)
        return handler

    return register


def forbidden(request: Request, session: OpenSession | None) -> HTMLResponse:
    return message_page(
        request,
        "This form has expired",
        "The page you submitted is out of date or did not come from this site. "
        "Nothing was changed. Go back, reload the page and try again.",
        session=session,
        status_code=403,
    )
