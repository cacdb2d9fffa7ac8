"""The flows, sans-IO: the device flow (RFC 8628 sections 3.1-3.5), the request check and
the code exchange of same-device sign-in (RFC 6749 sections 4.1.1 and 4.1.3, RFC 7636),
revocation (RFC 7009) and the ``/api/me`` key check, each a generator that yields the
commands of ``devicelink.client.messages`` and returns its result.

Nothing here does I/O or sleeps, and time is read only through the ``clock`` (monotonic
seconds) and ``wall_clock`` (Unix seconds, for an HTTP-date ``Retry-After``) arguments, so
one code path drives the sync and the async client and tests step it with scripted
answers. When to send is ``devicelink.client.pacing``; discovery (RFC 8414) is
``devicelink.client.discovery``; failures are the errors of ``devicelink.client.errors``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from devicelink.client.discovery import AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, discover
from devicelink.client.errors import (
    DiscoveryFailed,
    KeyRefused,
    LoginFailedOnServer,
    LoopbackRefused,
    ServerRejected,
)
from devicelink.client.messages import CodeIssued, Endpoints, Flow, Token, WaitReason
from devicelink.client.pacing import POLL_MARGIN, Clock, exchange, slowed_down, wait
from devicelink.client.urls import normalise_server
from devicelink.client.wire import (
    error_description,
    form_request,
    get_request,
    json_object,
    oauth_error_body,
    raise_oauth_error,
    read_authorization,
    read_token,
)

ME_PATH = "/api/me"
INVALID_TOKEN = "invalid_token"  # noqa: S105 - an RFC 6750 error code, not a secret


def device_flow(
    server: str,
    client_id: str | None,
    *,
    scope: str | Iterable[str] | None = None,
    endpoints: Endpoints | None = None,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> Flow[Token]:
    """Sign in: discovery (unless ``endpoints`` are given), device authorization request
    (section 3.1), :class:`CodeIssued`, then polling (sections 3.4, 3.5) until a token.

    ``client_id`` may be ``None`` for a server with a default client.
    """
    issuer = normalise_server(server)
    if endpoints is None:
        endpoints = yield from discover(issuer, clock=clock, wall_clock=wall_clock)
    client = {"client_id": client_id} if client_id else {}
    scope_text = (scope if isinstance(scope, str) else " ".join(scope or ())).strip()
    scope_form = {"scope": scope_text} if scope_text else {}  # 3.1: empty counts as absent
    request = partial(form_request, endpoints.device_authorization_endpoint, client | scope_form)
    response, sent_at = yield from exchange(request, clock=clock, wall_clock=wall_clock)
    if response.status_code != 200:
        raise_oauth_error(response)
    authorization = read_authorization(response)
    yield CodeIssued(authorization)

    deadline = sent_at + authorization.expires_in
    interval = float(authorization.interval)
    grant = {"grant_type": DEVICE_CODE_GRANT, "device_code": authorization.device_code}
    poll = partial(form_request, endpoints.token_endpoint, grant | client)
    reason: WaitReason = "interval"
    while True:
        yield from wait(interval + POLL_MARGIN, reason, clock, deadline)
        response, _ = yield from exchange(
            poll,
            clock=clock,
            wall_clock=wall_clock,
            deadline=deadline,
            floor=interval + POLL_MARGIN,
            server_error_is_final=True,
        )
        if response.status_code == 200:
            return read_token(response, endpoints, issuer)
        body = oauth_error_body(response)
        error = body.get("error") if body else None
        if error == "slow_down":
            interval = slowed_down(interval, body.get("interval") if body else None)
            reason = "slow_down"
        elif error == "authorization_pending":
            reason = "interval"
        elif error == "server_error":
            # Section 3.5: any other error ends the polling; the server failed for good
            # (nothing was issued), so waiting until the code expires would only hide it.
            raise LoginFailedOnServer(description=error_description(body))
        else:
            raise_oauth_error(response, body)


def authorization_check_flow(
    url: str,
    redirect_uri: str,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> Flow[None]:
    """Same-device sign-in, before the browser opens: send the authorization request
    once, without a session, to learn whether the server would answer this client at
    this redirect URI.

    The server checks the client and the redirect URI first, and answers an unknown one
    with an error page, never a redirect (RFC 6749 section 4.1.2.1); a client that may
    not use the grant is sent back with ``unauthorized_client``. Either is
    :class:`LoopbackRefused`, so that a login that chose this flow by itself can take the
    device flow instead of leaving the user on an error page. Another error sent back
    is the server's refusal; anything else (the sign-in page) means go ahead.
    """
    request = partial(get_request, url)
    response, _ = yield from exchange(request, clock=clock, wall_clock=wall_clock)
    location = response.headers.get("location", "")
    if response.is_redirect and location.startswith(redirect_uri + "?"):
        answer = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
        error, description = answer.get("error"), answer.get("error_description")
        if error == LoopbackRefused.error:
            raise LoopbackRefused(description=description)
        if error:
            raise ServerRejected(error, description)
    elif 400 <= response.status_code < 500:
        raise LoopbackRefused()


def code_exchange_flow(
    endpoints: Endpoints,
    client_id: str | None,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> Flow[Token]:
    """Same-device sign-in, the last step: redeem the authorization code at the token
    endpoint (RFC 6749 section 4.1.3) with the PKCE verifier (RFC 7636 section 4.5).

    The answer is read as the device grant's is (the same key response); a refusal
    (``invalid_grant``: a used or expired code, another verifier) ends the sign-in. Only
    transient answers are retried: a code is single use.
    """
    form = {
        "grant_type": AUTHORIZATION_CODE_GRANT,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        **({"client_id": client_id} if client_id else {}),
    }
    request = partial(form_request, endpoints.token_endpoint, form)
    response, _ = yield from exchange(
        request, clock=clock, wall_clock=wall_clock, server_error_is_final=True
    )
    if response.status_code != 200:
        body = oauth_error_body(response)
        if body is not None and body.get("error") == "server_error":
            raise LoginFailedOnServer(description=error_description(body))
        raise_oauth_error(response, body)
    return read_token(response, endpoints, endpoints.issuer)


def revoke_flow(
    endpoints_or_server: Endpoints | str,
    token: str,
    client_id: str | None,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> Flow[bool]:
    """RFC 7009 section 2: revoke ``token`` (discovering the endpoint when given a URL).

    The server answers 200 for unknown tokens as well (section 2.2), so ``True`` means the
    key is no longer usable, whether or not it was before. A server that refuses instead
    with ``invalid_token`` (RFC 6750 section 3.1: expired, revoked, malformed or invalid)
    says the same thing less politely: ``True`` too. Any other refusal, an unreachable or
    failing server raise: the key may still work.
    """
    if isinstance(endpoints_or_server, Endpoints):
        endpoints = endpoints_or_server
    else:
        endpoints = yield from discover(endpoints_or_server, clock=clock, wall_clock=wall_clock)
    if endpoints.revocation_endpoint is None:
        raise DiscoveryFailed(
            f"{endpoints.issuer} does not offer revocation (no revocation_endpoint in its "
            "metadata); the key was not revoked"
        )
    form = {"token": token, "token_type_hint": "access_token"}
    if client_id:
        form["client_id"] = client_id
    request = partial(form_request, endpoints.revocation_endpoint, form)
    response, _ = yield from exchange(request, clock=clock, wall_clock=wall_clock)
    if response.status_code != 200:
        body = oauth_error_body(response)
        if body is None or body.get("error") != INVALID_TOKEN:
            raise_oauth_error(response, body)
    return True


def whoami_flow(
    server: str,
    token: str,
    *,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
) -> Flow[dict[str, Any]]:
    """``GET {server}/api/me`` with the key as a bearer token (RFC 6750 section 2.1)."""
    url = normalise_server(server) + ME_PATH
    request = partial(get_request, url, {"Authorization": f"Bearer {token}"})
    response, _ = yield from exchange(request, clock=clock, wall_clock=wall_clock)
    if response.status_code == 401:
        raise KeyRefused(description=error_description(oauth_error_body(response)))
    if response.status_code != 200:
        raise_oauth_error(response)
    return json_object(response, f"{ME_PATH} did not answer a JSON object")


__all__ = [
    "INVALID_TOKEN",
    "ME_PATH",
    "authorization_check_flow",
    "code_exchange_flow",
    "device_flow",
    "revoke_flow",
    "whoami_flow",
]
