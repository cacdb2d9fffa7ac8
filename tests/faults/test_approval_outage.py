"""A database error in the middle of an approval: the user gets a friendly page, nothing
is changed, and once the database is back the same confirm page works.

Two ways: a real ``devicelink serve`` whose private PostgreSQL is stopped between the
confirm page and the press of Approve (or Deny); and, in this process on both databases,
a connection lost inside the approval's transaction itself, after the compare-and-set
that marked the code approved and before the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from devicelink.core.models import AuditEvent, AuditKind
from devicelink.idp.local import hash_password
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.server.app import create_app
from devicelink.storage.repositories import SqlAuditLog
from tests.faults.answers import assert_friendly_page
from tests.faults.cluster import Deployment
from tests.support.databases import pg_fetch
from tests.support.http import PASSWORD, arun, confirm_page, poll, press, sign_in, start_flow

pytestmark = pytest.mark.anyio

# --- a real server, PostgreSQL stopped between the confirm page and the decision -----------


async def _flow_row(dep: Deployment, device_code: str) -> dict[str, Any]:
    code_hash = dep.hasher().device_code(device_code)
    rows = await pg_fetch(
        dep.database_url,
        "SELECT d.status, d.user_id, "
        "(SELECT count(*) FROM api_keys k WHERE k.device_authorization_id = d.id) AS keys, "
        "(SELECT count(*) FROM audit_events a WHERE a.device_authorization_id = d.id "
        " AND a.event IN ('approved', 'denied', 'key_issued')) AS decisions "
        "FROM device_authorizations d WHERE d.device_code_hash = $1",
        code_hash,
    )
    assert len(rows) == 1
    return dict(rows[0])


async def _wait_until_ready(http: httpx.AsyncClient, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        response = await http.get("/readyz")
        if response.status_code == 200:
            return
        assert time.monotonic() < deadline, f"not ready again: {response.status_code}"
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.postgres
async def test_postgresql_stopped_before_approve_shows_a_friendly_page_and_changes_nothing(
    servers: dict[str, Deployment],
) -> None:
    dep = servers["fast_path"]
    async with (
        httpx.AsyncClient(base_url=dep.base_url, timeout=20) as device,
        httpx.AsyncClient(base_url=dep.base_url, timeout=20) as browser,
    ):
        flow = await arun(device, start_flow())
        await arun(browser, sign_in("alice"))
        confirm = await arun(browser, confirm_page(flow["user_code"]))

        await asyncio.to_thread(dep.postgres.stop, "fast")
        try:
            for action in ("approve", "deny"):
                answer = await arun(browser, press(confirm, action))
                assert_friendly_page(answer, 503)
                assert "Temporarily unavailable" in answer.text
                assert "Device approved" not in answer.text
                assert answer.headers.get("retry-after", "").isdigit(), answer.headers
        finally:
            await asyncio.to_thread(dep.postgres.start)

        await _wait_until_ready(device)
        row = await _flow_row(dep, flow["device_code"])
        assert row == {"status": "pending", "user_id": None, "keys": 0, "decisions": 0}
        pending = await arun(device, poll(flow["device_code"]))
        assert pending.status_code == 400, pending.text
        assert pending.json()["error"] == "authorization_pending"

        # The same confirm page, pressed again now that the database is back, works.
        done = await arun(browser, press(confirm, "approve"))
        assert done.status_code == 200, done.text
        assert "Device approved" in done.text
        issued = await arun(device, poll(flow["device_code"]))
        assert issued.status_code == 200, issued.text
        again = await arun(device, poll(flow["device_code"]))
        assert again.json()["error"] == "invalid_grant", again.text
        row = await _flow_row(dep, flow["device_code"])
        assert row["status"] == "consumed"
        assert row["keys"] == 1
        assert row["decisions"] == 2  # approved once, key issued once


# --- in this process: the connection lost inside the approval's transaction ---------------


@pytest.fixture
async def site(
    settings: Settings, clock: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, httpx.AsyncClient]]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        rt: Runtime = app.state.devicelink
        async with rt.store.transaction() as tx:
            await tx.users.add("alice", hash_password(PASSWORD), clock())
        # The https PUBLIC_URL, so the Secure session cookie flows as in a browser.
        browser_transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 40000))
        device_transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
        async with (
            httpx.AsyncClient(transport=browser_transport, base_url=settings.issuer) as browser,
            httpx.AsyncClient(transport=device_transport, base_url=settings.issuer) as device,
        ):
            yield rt, browser, device


async def test_a_connection_lost_inside_the_approval_rolls_it_back(
    site: tuple[Runtime, httpx.AsyncClient, httpx.AsyncClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt, browser, device = site
    flow = await arun(device, start_flow())
    await arun(browser, sign_in("alice", PASSWORD))
    confirm = await arun(browser, confirm_page(flow["user_code"]))

    original = SqlAuditLog.record
    lost = []

    async def record(self: SqlAuditLog, event: AuditEvent) -> None:
        if event.kind in (AuditKind.APPROVED, AuditKind.DENIED):
            # After the UPDATE that approved the code, before the commit.
            lost.append(event.kind)
            raise OperationalError(
                "INSERT INTO audit_events ...", None, ConnectionResetError("connection lost")
            )
        await original(self, event)

    monkeypatch.setattr(SqlAuditLog, "record", record)
    for action in ("approve", "deny"):
        answer = await arun(browser, press(confirm, action))
        assert_friendly_page(answer, 503)
        assert "Temporarily unavailable" in answer.text
    assert lost == [AuditKind.APPROVED, AuditKind.DENIED]

    review = await rt.flows.review(flow["user_code"])
    assert review.authorization is not None
    assert review.authorization.status.value == "pending"
    assert review.authorization.user_id is None
    pending = await arun(device, poll(flow["device_code"]))
    assert pending.json()["error"] == "authorization_pending", pending.text

    monkeypatch.setattr(SqlAuditLog, "record", original)
    done = await arun(browser, press(confirm, "approve"))
    assert done.status_code == 200, done.text
    assert "Device approved" in done.text
    issued = await arun(device, poll(flow["device_code"]))
    assert issued.status_code == 200, issued.text
    assert issued.json()["access_token"].startswith("dlk_")
