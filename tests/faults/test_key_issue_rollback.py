"""A failure between consuming a device code and creating its key (DESIGN.md defect 3:
the original system's "rollback" did nothing, and the CLI got 500s until the code
expired).

The app runs in this process with a key issuer that fails on its first call, inside the
poll's transaction, after the compare-and-set that consumed the authorization. The right
outcome: that poll is answered with an error (500 ``server_error``, or 503
``temporarily_unavailable`` for the database, RFC 6749 section 5.2 JSON, nothing of the
failure's detail), the transaction rolls back so the authorization is still approved and
no key row exists, and a device that polls again receives its key, exactly once.
devicelink's own client stops at once on ``server_error`` (issue 17, RFC 8628 section
3.5); the last test holds it to that.

Both databases, both routes of the token endpoint (the thin one of
:mod:`devicelink.http.fast_path`, on by default, and the general FastAPI route).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from devicelink.core.models import ApiKey, DeviceAuthorization, IssuedKey, Status
from devicelink.core.ports import Transaction
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.server.app import create_app
from devicelink.service.issuing import StoredKeyIssuer
from tests.support.app import FakeClock
from tests.support.http import arun, poll, start_flow

pytestmark = [pytest.mark.anyio, pytest.mark.defect(3)]

SECRET_DETAIL = "key-service-internal-detail-7f3a"


class FlakyIssuer:
    """devicelink's own issuer, except that its first ``issue`` raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self._inner = StoredKeyIssuer()
        self._error = error
        self.calls = 0

    async def issue(self, tx: Transaction, **kwargs: Any) -> IssuedKey:
        self.calls += 1
        if self.calls == 1:
            raise self._error
        return await self._inner.issue(tx, **kwargs)

    async def revoke(self, tx: Transaction, *, key: ApiKey, now: datetime) -> None:
        await self._inner.revoke(tx, key=key, now=now)


ERRORS: dict[str, Callable[[], BaseException]] = {
    "exception": lambda: RuntimeError(f"the key service failed: {SECRET_DETAIL}"),
    # An embedding application's key service timing out: not the database, and must not
    # be mistaken for it (the store lets it through as itself).
    "timeout": lambda: TimeoutError(f"the key service did not answer: {SECRET_DETAIL}"),
}


@pytest.fixture(params=["fast_path", "general_path"])
def route(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=list(ERRORS))
def issuer(request: pytest.FixtureRequest) -> FlakyIssuer:
    return FlakyIssuer(ERRORS[request.param]())


@pytest.fixture
async def app(
    settings: Settings, clock: FakeClock, route: str, issuer: FlakyIssuer
) -> AsyncIterator[FastAPI]:
    configured = settings.model_copy(update={"fast_path": route == "fast_path"})
    application = create_app(configured, key_issuer=issuer, clock=clock)
    async with application.router.lifespan_context(application):
        yield application


def device_client(app: FastAPI, *, raise_app_exceptions: bool) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(
        app=app, client=("203.0.113.7", 51000), raise_app_exceptions=raise_app_exceptions
    )
    return httpx.AsyncClient(transport=transport, base_url="https://login.example.com")


async def approved_flow(app: FastAPI, device: httpx.AsyncClient) -> dict[str, Any]:
    rt: Runtime = app.state.devicelink
    flow = await arun(device, start_flow())
    async with rt.store.transaction() as tx:
        user = await tx.users.add("alice", None, rt.flows.now())
    assert await rt.flows.approve(flow["user_code"], user_id=user.id) == "ok"
    return flow


async def record_of(app: FastAPI, device_code: str) -> tuple[DeviceAuthorization, int, int]:
    """The authorization, its key rows, and the key_issued audit events."""
    rt: Runtime = app.state.devicelink
    async with rt.store.transaction() as tx:
        authorization = await tx.device_authorizations.get_by_device_code(
            rt.hasher.device_code(device_code)
        )
        assert authorization is not None
        keys = await tx.api_keys.count_for_authorization(authorization.id)
    async with rt.store.engine.connect() as conn:  # type: ignore[attr-defined]
        result = await conn.exec_driver_sql(
            "SELECT count(*) FROM audit_events WHERE event = 'key_issued' "
            f"AND device_authorization_id = {int(authorization.id)}"
        )
        events = int(result.scalar_one())
    return authorization, keys, events


async def test_a_failed_key_creation_rolls_back_and_the_next_poll_gets_the_key(
    app: FastAPI, clock: FakeClock, issuer: FlakyIssuer
) -> None:
    # What the device sees over HTTP, whichever layer answers the failure (the thin
    # route's own handling is judged by the next test).
    async with device_client(app, raise_app_exceptions=False) as device:
        flow = await approved_flow(app, device)
        code = flow["device_code"]

        failed = await arun(device, poll(code))
        assert issuer.calls == 1
        assert failed.status_code in (500, 503), failed.text
        assert failed.headers["content-type"].startswith("application/json")
        body = failed.json()
        assert body["error"] in ("server_error", "temporarily_unavailable"), body
        assert set(body) <= {"error", "error_description", "error_uri"}, body
        assert "access_token" not in body
        assert SECRET_DETAIL not in failed.text
        assert "Traceback" not in failed.text
        assert failed.headers.get("cache-control") == "no-store"

        # Rolled back: still approved, not consumed; no key row, no audit event.
        authorization, keys, events = await record_of(app, code)
        assert authorization.status == Status.APPROVED
        assert (keys, events) == (0, 0)

        clock.advance(flow["interval"])
        issued = await arun(device, poll(code))
        assert issued.status_code == 200, issued.text
        grant = issued.json()
        assert grant["access_token"].startswith("dlk_")
        assert grant["token_type"] == "Bearer"
        assert issuer.calls == 2

        clock.advance(flow["interval"])
        again = await arun(device, poll(code))
        assert again.status_code == 400, again.text
        assert again.json()["error"] == "invalid_grant"

        authorization, keys, events = await record_of(app, code)
        assert authorization.status == Status.CONSUMED
        assert (keys, events) == (1, 1)
        assert issuer.calls == 2

        me = await device.get(
            "/api/me", headers={"Authorization": f"Bearer {grant['access_token']}"}
        )
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"


async def test_the_failed_poll_is_answered_by_devicelink_itself(
    app: FastAPI, clock: FakeClock, route: str, request: pytest.FixtureRequest
) -> None:
    """The failure is answered inside the app, as every devicelink answer is: with the
    request id (DESIGN.md: every response echoes X-Request-ID) and the security headers,
    and without the exception escaping to the ASGI server."""
    async with device_client(app, raise_app_exceptions=True) as device:
        flow = await approved_flow(app, device)
        try:
            failed = await arun(device, poll(flow["device_code"]))
        except (RuntimeError, TimeoutError) as exc:
            pytest.fail(f"the issuer's exception left the application: {exc!r}")
        assert failed.status_code in (500, 503), failed.text
        assert failed.headers.get("x-request-id"), dict(failed.headers)
        assert failed.headers.get("x-frame-options") == "DENY", dict(failed.headers)
        assert SECRET_DETAIL not in failed.text
        clock.advance(flow["interval"])
        issued = await arun(device, poll(flow["device_code"]))
        assert issued.status_code == 200, issued.text


async def test_an_issuer_failing_on_every_call_never_consumes_the_code(
    settings: Settings, clock: FakeClock
) -> None:
    """A key service down for a while: every poll fails and is answered, the
    authorization stays approved; once the service is back, the key comes."""

    class DownFor(FlakyIssuer):
        def __init__(self, failures: int) -> None:
            super().__init__(RuntimeError(SECRET_DETAIL))
            self.failures = failures

        async def issue(self, tx: Transaction, **kwargs: Any) -> IssuedKey:
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError(SECRET_DETAIL)
            return await self._inner.issue(tx, **kwargs)

    issuer = DownFor(failures=4)
    app = create_app(settings, key_issuer=issuer, clock=clock)
    async with (
        app.router.lifespan_context(app),
        device_client(app, raise_app_exceptions=False) as device,
    ):
        flow = await approved_flow(app, device)
        answers = []
        for _ in range(6):
            response = await arun(device, poll(flow["device_code"]))
            answers.append(response.status_code)
            clock.advance(flow["interval"])
            if response.status_code == 200:
                break
        assert answers == [500, 500, 500, 500, 200] or answers == [503] * 4 + [200], answers
        authorization, keys, events = await record_of(app, flow["device_code"])
        assert authorization.status == Status.CONSUMED
        assert (keys, events) == (1, 1)


@pytest.mark.rfc("8628", "3.5")
async def test_the_devicelink_client_stops_at_once_on_the_failure(
    app: FastAPI, clock: FakeClock, issuer: FlakyIssuer
) -> None:
    """The CLI's own flow (devicelink.client) against the server. Issue 17 changed this
    answer on purpose: a ``server_error`` from the token endpoint is final (RFC 8628
    section 3.5, any other error ends the polling), so the client stops at once with a
    clear error instead of polling until the code expires; nothing was issued."""
    from devicelink.client.errors import LoginFailedOnServer
    from devicelink.client.flow import device_flow
    from devicelink.client.http import arun_device_flow

    rt: Runtime = app.state.devicelink
    async with rt.store.transaction() as tx:
        user = await tx.users.add("alice", None, rt.flows.now())
    monotonic = [1000.0]
    waits: list[float] = []
    approved: list[str] = []
    codes: list[str] = []

    async def on_code(authorization: Any) -> None:
        codes.append(authorization.device_code)
        approved.append(await rt.flows.approve(authorization.user_code, user_id=user.id))

    async def sleep(seconds: float) -> None:
        # Time passes for the client and the server alike, without waiting.
        waits.append(seconds)
        monotonic[0] += seconds
        clock.advance(seconds)

    async with device_client(app, raise_app_exceptions=False) as http:
        with pytest.raises(LoginFailedOnServer) as failed:
            await arun_device_flow(
                device_flow(settings_issuer(app), "devicelink-cli", clock=lambda: monotonic[0]),
                http,
                on_code=on_code,
                sleep=sleep,
            )
    assert approved == ["ok"]
    assert issuer.calls == 1
    assert len(waits) == 1, waits  # the interval before the one poll; no retry
    assert failed.value.error == "server_error"
    assert "start the login again" in str(failed.value)
    assert SECRET_DETAIL not in str(failed.value)
    # Nothing half-written: still approved, no key, no key_issued event.
    authorization, keys, events = await record_of(app, codes[0])
    assert authorization.status == Status.APPROVED
    assert (keys, events) == (0, 0)


def settings_issuer(app: FastAPI) -> str:
    rt: Runtime = app.state.devicelink
    return rt.settings.issuer
