"""The device verification (RFC 8628 section 3.3): enter the code, compare it on the
confirm page, approve or deny.

Failed code entries are counted per session, per IP address and per account; once any
limit is reached even a right code is refused until the window passes (RFC 8628
section 5.1).
"""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from devicelink.core.codes import normalise_user_code
from devicelink.core.errors import KeyIssueRefused
from devicelink.core.lifecycle import Verdict
from devicelink.http.context import client_ip
from devicelink.http.errors import PageRoute
from devicelink.http.oauth import VERIFY_PATH
from devicelink.http.pages.common import (
    actor_of,
    current_session,
    href,
    login_redirect,
    message_page,
    page_post,
    redirect,
    render,
)
from devicelink.http.pages.wording import retry_text, time_ago, time_left
from devicelink.runtime.wiring import Runtime
from devicelink.service.device_flow import Review
from devicelink.service.sessions import OpenSession

DECIDE_PATH = "/oauth/device/decide"
_REVIEW = "review:"
"""Session data of an open review: ``review:<id>`` holds ``<opened at> <reference>``. The
decide form names its review, so Approve acts on the code on that page and no other
(several tabs of one session each keep their own)."""
_OPEN_REVIEWS = 5


def _open_review(data: dict[str, str], reference: str, now: float) -> str:
    """Open a review of ``reference`` in ``data`` (the oldest dropped past
    :data:`_OPEN_REVIEWS`); its id, for the decide form."""
    opened = sorted(
        (float(value.split(" ", 1)[0]), key)
        for key, value in data.items()
        if key.startswith(_REVIEW)
    )
    for _, key in opened[: max(0, len(opened) - _OPEN_REVIEWS + 1)]:
        del data[key]
    review_id = secrets.token_urlsafe(16)
    data[_REVIEW + review_id] = f"{now} {reference}"
    return review_id


def _reviewed(data: dict[str, str], review_id: str) -> str | None:
    """The reference an open review is about, or None."""
    value = data.get(_REVIEW + review_id) if review_id else None
    return value.split(" ", 1)[1] if value and " " in value else None


router = APIRouter(include_in_schema=False, route_class=PageRoute)


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
        if review.verdict is Verdict.EXPIRED:
            # An expired code can no longer be approved by anyone, so saying so gives a
            # guesser nothing (it still counts against the limits) and tells the user
            # what to do: start again on the device.
            title, tone, message, status = _OTHER_RESULTS[Verdict.EXPIRED]
            return message_page(
                request, title, message, session=session, status_code=status, tone=tone
            )
        # One message for every other failure: it never tells whether a live code
        # exists or belongs to someone else (RFC 8628 section 5.1). An expired code
        # whose row was purged lands here too, hence the hint to start again.
        return render(
            request,
            "code.html",
            session=session,
            status_code=400,
            user_code=typed,
            error="That code is not valid. Check the code shown on your device and try "
            "again; if the sign-in there has ended, start it again to get a new code.",
        )
    return review


@page_post(router, VERIFY_PATH, sign_in_first=VERIFY_PATH)
async def verify_submit(
    request: Request, rt: Runtime, session: OpenSession, form: dict[str, str]
) -> Response:
    typed = form.get("user_code", "")[:64]
    ip = rt.limit_subject(client_ip(request))
    keys = [("code", *_limit_key(scope, session, ip)) for scope in rt.code_entry_limits]
    async with rt.limiter.serialized(*keys):
        outcome = await _enter_code(request, rt, session, typed, ip)
    if isinstance(outcome, Response):
        return outcome
    review = outcome
    normalised = normalise_user_code(typed)
    assert normalised is not None
    assert review.authorization is not None
    data = dict(session.record.data)
    # A reference (the code's keyed hash), not the code: sessions are stored too.
    review_id = _open_review(data, review.reference or "", time.time())
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
        review_id=review_id,
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


@page_post(router, DECIDE_PATH, sign_in_first=VERIFY_PATH)
async def decide(
    request: Request, rt: Runtime, session: OpenSession, form: dict[str, str]
) -> Response:
    assert session.user is not None
    action = form.get("action")
    review_id = form.get("review", "")[:64]
    reviewing = _reviewed(session.record.data, review_id)
    if action not in ("approve", "deny"):
        return redirect(request, href(request, VERIFY_PATH))
    if reviewing is None:
        # Only a code this session reviewed, named by the form it was shown with, can be
        # decided: never another tab's, and no code past the limits of the code form.
        return message_page(
            request,
            "This request is no longer open here",
            "Nothing was approved or denied. Enter the code shown on your device again.",
            session=session,
            status_code=409,
        )
    # The review stays open: its decision is a compare-and-set from pending, so a second
    # press (a double click, Deny after Approve) changes nothing and says what happened.
    user_id = session.user.id
    actor = actor_of(request, session)
    if action == "approve":
        try:
            verdict = await rt.flows.decide_reviewed(
                reviewing, approve=True, user_id=user_id, actor=actor
            )
        except KeyIssueRefused as refusal:
            # The key issuer's check refused: the request is denied, and the user told why.
            rt.metrics.flows.labels("denied").inc()
            return message_page(
                request,
                "This device cannot be signed in",
                f"{refusal.reason} Nothing was approved; the device has been told.",
                session=session,
                status_code=403,
            )
    else:
        verdict = await rt.flows.decide_reviewed(
            reviewing, approve=False, user_id=user_id, actor=actor
        )
    if verdict is Verdict.OK:
        rt.metrics.flows.labels("approved" if action == "approve" else "denied").inc()
    title, tone, message, status = _RESULTS.get((str(action), verdict)) or _OTHER_RESULTS[verdict]
    return message_page(request, title, message, session=session, status_code=status, tone=tone)
