"""Connected devices: every CLI the user signed in, with a way to cut each off."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from devicelink.core.models import ApiKey
from devicelink.http.context import client_ip, runtime
from devicelink.http.errors import PageRoute
from devicelink.http.pages.common import (
    current_session,
    href,
    login_redirect,
    page_post,
    redirect,
    render,
)
from devicelink.http.pages.wording import time_ago, time_left
from devicelink.runtime.wiring import Runtime
from devicelink.service.sessions import OpenSession

DEVICES_PATH = "/devices"

router = APIRouter(include_in_schema=False, route_class=PageRoute)


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


@page_post(router, DEVICES_PATH)
async def devices_revoke(
    request: Request, rt: Runtime, session: OpenSession, form: dict[str, str]
) -> Response:
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
