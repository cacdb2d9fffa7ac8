"""Rate limits shared through Redis: several server processes count together.

Needs the Redis server at ``DEVICELINK_TEST_REDIS`` (default redis://127.0.0.1:6379);
like PostgreSQL, an unreachable Redis fails these tests rather than skipping them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from devicelink.idp.local import hash_password
from devicelink.runtime.settings import Settings
from devicelink.server.app import create_app
from tests.support.http import PASSWORD, csrf_of

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

REDIS_URL = os.environ.get("DEVICELINK_TEST_REDIS", "redis://127.0.0.1:6379")


@asynccontextmanager
async def two_processes(settings: Settings, clock: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two apps with separate memories, sharing the database and Redis: two processes."""
    shared = settings.model_copy(
        update={
            "redis_url": REDIS_URL,
            "redis_key_prefix": f"devicelink-test-{secrets.token_hex(6)}",
            "start_rate_limit": "3/minute",
            "code_entry_limit_session": "100/hour",
            "code_entry_limit_ip": "100/hour",
            "code_entry_limit_account": "4/hour",
        }
    )
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = create_app(shared, clock=clock)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=("198.51.100.5", 40000))
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url=shared.issuer)
                )
            )
        yield clients


async def test_starting_flows_is_limited_across_processes(settings: Settings, clock: Any) -> None:
    async with two_processes(settings, clock) as (first, second):
        answers = [
            (await http.post("/oauth/device/authorize", data={})).status_code
            for http in (first, second, first, second)
        ]
    assert answers == [200, 200, 200, 429]


async def test_failed_code_entries_count_across_processes(settings: Settings, clock: Any) -> None:
    async with two_processes(settings, clock) as (first, second):
        runtime = first._transport.app.state.devicelink  # type: ignore[attr-defined]
        async with runtime.store.transaction() as tx:
            await tx.users.add("alice", hash_password(PASSWORD), clock())
        flow = (await first.post("/oauth/device/authorize", data={})).json()
        for http in (first, second):
            login = await http.get("/login")
            await http.post(
                "/login",
                data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_of(login)},
            )
        for http in (first, second, first, second):
            page = await http.get("/oauth/device/verify")
            wrong = await http.post(
                "/oauth/device/verify", data={"user_code": "BCDF-GHJK", "csrf_token": csrf_of(page)}
            )
            assert wrong.status_code == 400
        page = await second.get("/oauth/device/verify")
        right = await second.post(
            "/oauth/device/verify",
            data={"user_code": flow["user_code"], "csrf_token": csrf_of(page)},
        )
    assert right.status_code == 429


async def test_without_redis_the_limits_still_hold_in_this_process(
    settings: Settings, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable: flows keep starting, the limit is counted locally, and the
    log and the metrics say so."""
    unreachable = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:9", "start_rate_limit": "3/minute"}
    )
    app = create_app(unreachable, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.5", 40000))
        async with httpx.AsyncClient(transport=transport, base_url=unreachable.issuer) as http:
            answers = [
                (await http.post("/oauth/device/authorize", data={})).status_code for _ in range(4)
            ]
            metrics = (await http.get("/metrics")).text
    assert answers == [200, 200, 200, 429]
    assert "Redis is unreachable" in caplog.text
    assert "devicelink_rate_limit_fallbacks_total 1.0" in metrics
