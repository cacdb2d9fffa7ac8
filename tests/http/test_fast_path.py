"""The fast path (``DEVICELINK_FAST_PATH``, on by default) answers every request exactly
as the full FastAPI route does: the device authorization, the token poll and /api/me,
in the common case it takes and in every case it hands over.

Each request goes to two apps on the same database, one with the fast path and one
without; the status, the protocol headers and the body (secrets replaced by their shape)
must be the same.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from devicelink.server.app import DeviceLinkApp
from tests.http.contract import FORM, MakeServer, RegisterClient, basic
from tests.support.app import Server
from tests.support.http import DEVICE_CODE_GRANT

pytestmark = pytest.mark.anyio

SHAPES = (
    (re.compile(r"^[A-Za-z0-9_-]{43}$"), "<device code>"),
    (re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$"), "<user code>"),
    (re.compile(r"user_code=[A-Z-]+$"), "user_code=<user code>"),
    (re.compile(r"^dlk_\w+$"), "<key>"),
)


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: shape(item) for name, item in value.items()}
    if isinstance(value, str):
        for pattern, replacement in SHAPES:
            value = pattern.sub(replacement, value)
    return value


def seen(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, every header (the security headers included), body; the request id is
    only checked to be there, and to echo the caller's."""
    try:
        body = shape(response.json())
    except ValueError:
        body = response.text
    sent_id = response.request.headers.get("x-request-id")
    assert response.headers.get("x-request-id") == sent_id or (
        sent_id is None and re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    )
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("x-request-id", "content-length", "date", "server")
    }
    return response.status_code, headers, body


AUTHORIZE_REQUESTS: dict[str, dict[str, Any]] = {
    "the default client": dict(data={"client_id": "devicelink-cli"}),
    "the caller's request id": dict(
        data={"client_id": "devicelink-cli"}, headers={"X-Request-ID": "req-42.a:b"}
    ),
    "headers too large": dict(
        data={"client_id": "devicelink-cli"}, headers={"X-Padding": "p" * 40_000}
    ),
    "no client_id (the default client)": dict(data={}, headers=FORM),
    "a scope it may have": dict(data={"client_id": "devicelink-cli", "scope": "api"}),
    "a scope it may not have": dict(data={"client_id": "devicelink-cli", "scope": "admin"}),
    "a malformed scope": dict(data={"client_id": "devicelink-cli", "scope": 'a"b'}),
    "an unknown client": dict(data={"client_id": "nobody"}),
    "a client_id that cannot be one": dict(data={"client_id": "bad\u00e9id"}),
    "a confidential client without its secret": dict(data={"client_id": "ci-bot"}),
    "a confidential client, secret in the form": dict(
        data={"client_id": "ci-bot", "client_secret": "s3cret"}
    ),
    "a confidential client, wrong secret": dict(
        data={"client_id": "ci-bot", "client_secret": "wrong"}
    ),
    "a confidential client, HTTP Basic": dict(
        data={}, headers={**FORM, **basic("ci-bot", "s3cret")}
    ),
    "a repeated parameter": dict(content=b"client_id=devicelink-cli&client_id=x", headers=FORM),
    "not a form": dict(json={"client_id": "devicelink-cli"}),
    "not UTF-8": dict(content=b"client_id=\xff", headers=FORM),
    "too large": dict(content=b"client_id=devicelink-cli&x=" + b"a" * 70_000, headers=FORM),
}


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("case", list(AUTHORIZE_REQUESTS), ids=list(AUTHORIZE_REQUESTS))
async def test_device_authorization_answers_alike(
    make_server: MakeServer, register_client: RegisterClient, case: str
) -> None:
    request = AUTHORIZE_REQUESTS[case]
    async with make_server(fast_path=True) as thin, make_server(fast_path=False) as full:
        await register_client(thin, "ci-bot", secret="s3cret")
        answers = [
            seen(await srv.http.post("/oauth/device/authorize", **request)) for srv in (thin, full)
        ]
    assert answers[0] == answers[1]
    assert answers[0][0] != 500


@pytest.mark.rfc("8628", "3.1")
async def test_the_rate_limit_counts_each_start_once_on_either_route(
    make_server: MakeServer,
) -> None:
    """Three starts a minute: the fourth is refused with Retry-After, whichever route
    (thin, or full because the form is odd) the requests took."""
    async with make_server(fast_path=True, start_rate_limit="3/minute") as srv:
        post = srv.http.post
        assert (
            await post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        ).status_code == 200
        odd = await post(
            "/oauth/device/authorize",
            content=b"client_id=devicelink-cli&client_id=x",
            headers=FORM,
        )
        assert odd.status_code == 400  # the full route's answer, counted once
        assert (
            await post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        ).status_code == 200
        refused = await post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "temporarily_unavailable"
        assert int(refused.headers["retry-after"]) >= 1


async def _pending_code(srv: Server) -> str:
    flow = await srv.start_flow()
    code: str = flow["device_code"]
    return code


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("token_path", ["/oauth/device/token", "/oauth/token"])
async def test_token_polls_answer_alike(
    make_server: MakeServer, register_client: RegisterClient, token_path: str
) -> None:
    """On the device grant's token endpoint and on the one of both grants (the
    metadata's token_endpoint, where clients that follow it poll)."""
    async with make_server(fast_path=True) as thin, make_server(fast_path=False) as full:
        await register_client(thin, "ci-bot", secret="s3cret")
        user = await thin.add_user("alice")
        cases: dict[str, Any] = {}
        for name, srv in (("thin", thin), ("full", full)):
            pending = await _pending_code(srv)
            approved = await _pending_code(srv)
            flows = srv.runtime.flows
            review = await srv.http.post(
                "/oauth/device/authorize", data={"client_id": "devicelink-cli"}
            )
            denied_flow = review.json()
            assert await flows.deny(denied_flow["user_code"], user_id=user.id) == "ok"
            approved_flow = await srv.http.post(
                "/oauth/device/authorize", data={"client_id": "devicelink-cli"}
            )
            assert await flows.approve(approved_flow.json()["user_code"], user_id=user.id) == "ok"
            grant = {"grant_type": DEVICE_CODE_GRANT, "client_id": "devicelink-cli"}
            answers = []
            for data in (
                {**grant, "device_code": pending},  # pending
                {**grant, "device_code": pending},  # too soon: slow_down
                {**grant, "device_code": approved_flow.json()["device_code"]},  # the key
                {**grant, "device_code": approved_flow.json()["device_code"]},  # consumed
                {**grant, "device_code": denied_flow["device_code"]},
                {**grant, "device_code": "no-such-code"},
                {**grant, "device_code": pending, "client_id": "ci-bot"},
                {"device_code": approved},  # no client_id: the default client
                {**grant, "grant_type": "password", "device_code": pending},
                {"grant_type": DEVICE_CODE_GRANT, "client_id": "devicelink-cli"},
            ):
                answers.append(seen(await srv.http.post(token_path, data=data)))
            answers.append(
                seen(
                    await srv.http.post(
                        token_path,
                        data={"grant_type": DEVICE_CODE_GRANT, "device_code": pending},
                        headers=basic("ci-bot", "s3cret"),
                    )
                )
            )
            cases[name] = answers
    assert cases["thin"] == cases["full"]
    statuses = [status for status, _, _ in cases["thin"]]
    assert 200 in statuses
    assert 500 not in statuses


@pytest.mark.rfc("6750", "2.1")
async def test_key_checks_answer_alike(make_server: MakeServer) -> None:
    async with make_server(fast_path=True) as thin, make_server(fast_path=False) as full:
        user = await thin.add_user("alice")
        flow = await thin.start_flow()
        assert await thin.runtime.flows.approve(flow["user_code"], user_id=user.id) == "ok"
        key = (await thin.poll(flow["device_code"])).json()["access_token"]
        cases: dict[str, list[Any]] = {}
        for name, srv in (("thin", thin), ("full", full)):
            cases[name] = [
                seen(await srv.http.get("/api/me", headers=headers))
                for headers in (
                    {"Authorization": f"Bearer {key}"},
                    {"Authorization": f"Bearer {key}"},  # again: remembered, on PostgreSQL
                    {"Authorization": f"bearer {key}", "X-Request-ID": "mine"},
                    {"Authorization": "Bearer dlk_not_a_key"},
                    {"Authorization": f"Basic {key}"},
                    {},
                )
            ]
        assert cases["thin"] == cases["full"]
        assert [status for status, _, _ in cases["thin"]] == [200, 200, 200, 401, 401, 401]
        # The fast path counts its requests in the latency metric as the stack does.
        metrics = (await thin.http.get("/metrics")).text
        for route in ("/api/me", "/oauth/device/authorize", "/oauth/device/token"):
            assert f'devicelink_request_duration_seconds_count{{route="{route}"}}' in metrics


async def test_polls_at_the_token_endpoint_of_both_grants_take_the_thin_route(
    make_server: MakeServer,
) -> None:
    """A poll at /oauth/token, the metadata's token_endpoint where clients that follow
    it poll, is answered by the fast path without the full stack; a form the thin
    route does not read (HTTP Basic) still reaches the full stack."""
    async with make_server(fast_path=True) as thin:
        assert isinstance(thin.app, DeviceLinkApp)
        fast = thin.app.fast_path
        assert fast is not None
        full, handed_over = fast.full, []

        async def full_stack(scope: Any, receive: Any, send: Any) -> None:
            handed_over.append(scope["path"])
            await full(scope, receive, send)

        fast.full = full_stack
        pending = await _pending_code(thin)
        grant = {"grant_type": DEVICE_CODE_GRANT, "device_code": pending}
        answer = await thin.http.post("/oauth/token", data={**grant, "client_id": "devicelink-cli"})
        assert answer.status_code == 400
        assert answer.json()["error"] == "authorization_pending"
        assert "/oauth/token" not in handed_over
        basic_auth = await thin.http.post(
            "/oauth/token", data=grant, headers=basic("devicelink-cli", "x")
        )
        assert basic_auth.status_code in (400, 401)
        assert handed_over.count("/oauth/token") == 1
