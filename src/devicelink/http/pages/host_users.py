"""The host application's users on devicelink's pages, when it embeds devicelink with a
``resolve_user``: signed in here while they are signed in there (one account per
``provider`` and ``subject``, whatever their names), their new names followed, sent to
the host's sign-in (``LOGIN_URL``) when signed in nowhere, and to the host's sign-out
(``LOGOUT_URL``) from the pages' Sign out.

What it does not own: the cookie, rendering and redirects (:mod:`.common`).
"""

from __future__ import annotations

from fastapi import Request

from devicelink.core.ports import LoginFailed
from devicelink.runtime.embedding import host_login_redirect
from devicelink.runtime.wiring import Runtime
from devicelink.service.sessions import OpenSession, shown_name

VIA_HOST = "via_host"
"""In a session's data: the host signed this browser in (its sign-out is the host's)."""


async def with_host_user(
    request: Request, rt: Runtime, session: OpenSession | None
) -> OpenSession | None:
    """``session`` as the host sees the browser: its user is the host's signed-in user
    (signed in here under a new session whose cookie the response carries, see
    ``request.state.new_devicelink_session``), no one once the host signed them out.

    A host user devicelink refuses (an account disabled here) is remembered in
    ``request.state.host_user_refused``: sending them to the host's sign-in, where they
    are signed in already, would only send them back."""
    assert rt.resolve_user is not None
    identity = await rt.resolve_user(request)
    if identity is None:
        if session is not None and session.record.data.get(VIA_HOST):
            return OpenSession(token=session.token, record=session.record, user=None)
        return session
    user = session.user if session is not None else None
    if (
        session is not None
        and user is not None
        and (user.provider, user.subject) == (identity.provider, identity.subject)
    ):
        if user.shown_name != shown_name(identity):  # renamed at the host
            return await rt.sessions.follow_name(session, identity)
        return session
    try:
        signed_in = await rt.sessions.sign_in(session, identity)
    except LoginFailed as refusal:
        request.state.host_user_refused = str(refusal)
        return session
    signed_in = await rt.sessions.save_data(signed_in, {VIA_HOST: "1"})
    request.state.new_devicelink_session = signed_in
    return signed_in


def signed_in_by_host(session: OpenSession | None) -> bool:
    return session is not None and bool(session.record.data.get(VIA_HOST))


def host_login_url(rt: Runtime, return_to: str) -> str | None:
    """The host's sign-in page with ``next`` set to ``return_to`` (a path of devicelink's,
    already checked by ``safe_next``), or None when the host has none."""
    if rt.resolve_user is None or not rt.settings.login_url:
        return None
    return host_login_redirect(rt.settings.login_url, return_to)


def refused_host_user(request: Request) -> str | None:
    """Why devicelink refused the host's signed-in user in this request, if it did."""
    refusal: str | None = getattr(request.state, "host_user_refused", None)
    return refusal
