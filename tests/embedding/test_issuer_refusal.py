"""A key issuer that refuses, or fails, after the user approved (issue 17, item 3;
DESIGN.md defect 3).

- A refusal (``KeyIssueRefused``) from ``issue``: the authorization becomes denied with
  the reason kept, the device is answered ``access_denied`` with the reason (this poll
  and every later one), the audit log records it, nothing else is written.
- A refusal from the optional ``check`` when the user presses Approve: the page says
  why, the request is denied, no key is ever minted.
- Any other failure: ``server_error`` at once (500, RFC 6749 JSON), nothing half-written,
  the devicelink client stops polling with a clear error and exit code; the record stays
  consistent for the next poll and the next approval.

Both databases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from examples.host_app.app import HostKeyIssuer, HostKeyStore

from devicelink.core.errors import KeyIssueRefused
from devicelink.core.events import EventKind
from devicelink.core.models import AuditKind, Client, IssuedKey, Status, User
from devicelink.core.ports import Transaction
from devicelink.idp.local import hash_password
from devicelink.runtime.settings import Settings
from devicelink.service.admin import AdminService
from tests.embedding.hosts import Host, hosting
from tests.support.app import FakeClock
from tests.support.http import PASSWORD, arun, confirm_page, press, sign_in

pytestmark = pytest.mark.anyio

REASON = "Acme: your plan allows 3 devices; remove one at acme.example/devices"


class RefusingIssuer(HostKeyIssuer):
    """The host's issuer, refusing at the poll (``issue``) or at approval (``check``)."""

    def __init__(self, store: HostKeyStore, *, at: str) -> None:
        super().__init__(store)
        self.at = at
        self.issued = 0

    async def issue(self, tx: Transaction, **kwargs: Any) -> IssuedKey:
        self.issued += 1
        if self.at == "issue":
            raise KeyIssueRefused(REASON)
        return await super().issue(tx, **kwargs)

    async def check(self, tx: Transaction, *, user: User, client: Client, now: datetime) -> None:
        if self.at == "check":
            raise KeyIssueRefused(REASON)


class BrokenIssuer(HostKeyIssuer):
    """The host's issuer, failing (not refusing) while ``broken``."""

    def __init__(self, store: HostKeyStore) -> None:
        super().__init__(store)
        self.broken = True

    async def issue(self, tx: Transaction, **kwargs: Any) -> IssuedKey:
        if self.broken:
            raise RuntimeError("acme key service: connection reset (internal detail 5e1f)")
        return await super().issue(tx, **kwargs)


async def authorization_of(host: Host, device_code: str) -> tuple[Status, str | None, int]:
    """The stored status, denial reason and number of key rows of a flow."""
    async with host.runtime.store.transaction() as tx:
        record = await tx.device_authorizations.get_by_device_code(
            host.runtime.hasher.device_code(device_code)
        )
        assert record is not None
        keys = await tx.api_keys.count_for_authorization(record.id)
    return record.status, record.denial_reason, keys


@pytest.mark.rfc("8628", "3.5")
async def test_a_refusal_at_the_poll_is_access_denied_with_the_reason(
    settings: Settings, clock: FakeClock
) -> None:
    keys = HostKeyStore()
    issuer = RefusingIssuer(keys, at="issue")
    async with hosting(settings, clock, issuer=issuer, keys=keys) as host:
        flow = await host.approved_flow(await host.add_user("alice"))
        for _ in range(2):  # this poll, and every later one
            denied = await host.poll(flow["device_code"])
            assert denied.status_code == 400, denied.text
            assert denied.json() == {"error": "access_denied", "error_description": REASON}
            assert denied.headers["cache-control"] == "no-store"
        assert issuer.issued == 1
        assert await authorization_of(host, flow["device_code"]) == (Status.DENIED, REASON, 0)
        assert keys.keys == {}
        audit = await AdminService(host.runtime.store).audit(username="alice")
        assert [event.kind for event in audit] == [AuditKind.APPROVED, AuditKind.KEY_REFUSED]
        assert audit[-1].detail == REASON
        assert [event.kind for event in host.events] == [EventKind.APPROVED]


async def client_login(host: Host, clock: FakeClock, waits: list[str] | None = None) -> None:
    """The devicelink client's login against ``host`` for a new user alice, who approves
    as soon as the code is shown; the client waits on ``clock``, each wait noted in
    ``waits``."""
    from devicelink.client.flow import device_flow
    from devicelink.client.http import arun_device_flow

    user_id = await host.add_user("alice")

    async def on_code(authorization: Any) -> None:
        await host.runtime.flows.approve(authorization.user_code, user_id=user_id)

    async def sleep(seconds: float) -> None:
        if waits is not None:
            waits.append("wait")
        clock.advance(seconds)

    await arun_device_flow(
        device_flow(host.runtime.settings.issuer, "devicelink-cli"),
        host.http,
        on_code=on_code,
        sleep=sleep,
    )


async def test_the_devicelink_client_reports_the_refusal(
    settings: Settings, clock: FakeClock
) -> None:
    from devicelink.client.errors import LoginDenied

    issuer = RefusingIssuer(HostKeyStore(), at="issue")
    async with hosting(settings, clock, issuer=issuer) as host:
        with pytest.raises(LoginDenied) as denied:
            await client_login(host, clock)
    assert str(denied.value) == f"the sign-in was denied: {REASON}"


@pytest.fixture
async def signed_in(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[Host, RefusingIssuer]]:
    """devicelink with an issuer whose ``check`` refuses, and alice signed in."""
    issuer = RefusingIssuer(HostKeyStore(), at="check")
    async with hosting(settings, clock, issuer=issuer) as host:
        async with host.runtime.store.transaction() as tx:
            await tx.users.add("alice", hash_password(PASSWORD), clock())
        await arun(host.http, sign_in("alice"))
        yield host, issuer


async def test_a_refusal_at_approval_and_the_page_says_why(
    signed_in: tuple[Host, RefusingIssuer],
) -> None:
    host, issuer = signed_in
    flow = (await host.http.post("/oauth/device/authorize", data={})).json()
    confirm = await arun(host.http, confirm_page(flow["user_code"]))
    page = await arun(host.http, press(confirm, "approve"))
    assert page.status_code == 403
    assert "This device cannot be signed in" in page.text
    assert "Acme: your plan allows 3 devices; remove one at acme.example/devices" in page.text
    assert "Device approved" not in page.text

    denied = await host.poll(flow["device_code"])
    assert denied.json() == {"error": "access_denied", "error_description": REASON}
    assert issuer.issued == 0  # no key was ever minted
    assert await authorization_of(host, flow["device_code"]) == (Status.DENIED, REASON, 0)
    audit = await AdminService(host.runtime.store).audit(username="alice")
    assert audit[-1].kind is AuditKind.KEY_REFUSED
    assert audit[-1].detail == REASON
    assert host.events == []  # nothing was approved


@pytest.mark.rfc("8628", "3.5")
async def test_a_failing_issuer_is_server_error_at_once_and_nothing_half_written(
    settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    keys = HostKeyStore()
    issuer = BrokenIssuer(keys)
    async with hosting(settings, clock, issuer=issuer, keys=keys) as host:
        flow = await host.approved_flow(await host.add_user("alice"))
        failed = await host.poll(flow["device_code"])
        assert failed.status_code == 500
        body = failed.json()
        assert body["error"] == "server_error"
        assert "could not issue the key" in body["error_description"]
        assert "internal detail" not in failed.text
        request_id = failed.headers["x-request-id"]
        assert any(
            request_id in record.getMessage() and record.exc_info for record in caplog.records
        ), "the failure is logged with the request id and its traceback"
        # Nothing half-written: still approved, no key row, no key_issued event.
        assert await authorization_of(host, flow["device_code"]) == (Status.APPROVED, None, 0)
        audit = await AdminService(host.runtime.store).audit(username="alice")
        assert AuditKind.KEY_ISSUED not in [event.kind for event in audit]

        # Consistent afterwards: once the key service is back, this record (polled again)
        # and a new approval each get exactly one key.
        issuer.broken = False
        issued = await host.poll(flow["device_code"])
        assert issued.status_code == 200, issued.text
        assert (await host.poll(flow["device_code"])).json()["error"] == "invalid_grant"
        again = await host.approved_flow(await host.add_user("bob"))
        assert (await host.poll(again["device_code"])).status_code == 200
        assert sorted(keys.by_id) == ["hk1", "hk2"]
        assert [event.kind for event in host.events].count(EventKind.KEY_ISSUED) == 2


async def test_the_cli_stops_at_once_on_server_error_with_its_exit_code(
    settings: Settings, clock: FakeClock
) -> None:
    from devicelink.client.commands.failures import ExitCode, failure_for
    from devicelink.client.errors import LoginFailedOnServer

    polls: list[str] = []
    async with hosting(settings, clock, issuer=BrokenIssuer(HostKeyStore())) as host:
        with pytest.raises(LoginFailedOnServer) as failed:
            await client_login(host, clock, polls)
    assert polls == ["wait"]  # one poll, no retry, no waiting for the code to expire
    ending = failure_for(failed.value)
    assert ending.code is ExitCode.SERVER_FAILED
    assert int(ending.code) == 9
    assert ending.error == "server_error"
    assert "could not issue the key" in ending.message


async def test_a_callback_that_raises_breaks_nothing(
    settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Events are announced after the commit; what the host's callback raises is
    logged and the request is answered as usual."""
    from devicelink.server import create_app

    def on_event(event: Any) -> None:
        raise ValueError(f"the host's webhook failed on {event.kind}")

    app = create_app(settings, clock=clock, on_event=on_event)
    async with app.router.lifespan_context(app):
        host = Host(
            app=app,
            http=httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://x"),
            clock=clock,
            keys=HostKeyStore(),
        )
        async with host.http:
            key = await host.issue_key("alice")
            assert (await host.me(key)).status_code == 200
            assert (await host.revoke(key)).status_code == 200
            assert (await host.me(key)).status_code == 401
    failures = [r for r in caplog.records if "on_event callback failed" in r.getMessage()]
    assert [r.getMessage().split(" on a ")[1].split(" ")[0] for r in failures] == [
        "approved",
        "key_issued",
        "key_revoked",
    ]
