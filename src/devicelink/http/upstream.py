"""The upstream provider's back-channel logout (OpenID Connect Back-Channel Logout 1.0
section 2.5): it posts a logout token here when a user's session there ends.

Mounted only when ``DEVICELINK_OIDC_BACKCHANNEL_LOGOUT`` is not ``off``. What the
token must prove, and what follows, are :mod:`devicelink.runtime.upstream_logout`'s.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from devicelink.core.errors import NotFound
from devicelink.http.context import client_ip, runtime
from devicelink.http.errors import NO_STORE, DeviceLinkRoute
from devicelink.http.forms import read_form
from devicelink.http.openapi import (
    NO_STORE_HEADER_DOC,
    TOO_LARGE_RESPONSE,
    UNAVAILABLE_RESPONSE,
    documented_error,
    form_body,
)
from devicelink.runtime.upstream_logout import BACKCHANNEL_LOGOUT_PATH

router = APIRouter(route_class=DeviceLinkRoute)


@router.post(
    BACKCHANNEL_LOGOUT_PATH,
    tags=["upstream"],
    summary="Back-channel logout from the upstream OpenID Connect provider",
    response_class=Response,
    openapi_extra=form_body("logout_token", client_auth=False),
    responses={
        200: {
            "description": "The user's sessions here ended (and, per "
            "DEVICELINK_OIDC_BACKCHANNEL_LOGOUT, their keys were revoked); an empty body",
            "headers": NO_STORE_HEADER_DOC,
        },
        400: documented_error(
            "invalid_request: no logout_token, or one that fails a check of section 2.6 "
            "(signature, iss, aud, iat, events, nonce) or was already received; nothing changed"
        ),
        413: TOO_LARGE_RESPONSE,
        503: UNAVAILABLE_RESPONSE,
    },
)
async def backchannel_logout(request: Request) -> Response:
    """Section 2.8: 200 once the logout is done, 400 with the reason otherwise."""
    rt = runtime(request)
    receiver = rt.upstream_logout
    if receiver is None:  # the route is mounted, but no OpenID Connect upstream is
        raise NotFound()
    form = await read_form(request, rt.settings.max_body_bytes)
    outcome = await receiver.receive(form.get("logout_token"), ip=client_ip(request))
    if outcome.keys_revoked:
        rt.metrics.keys.labels("revoked").inc(outcome.keys_revoked)
    return Response(status_code=200, headers=NO_STORE)
