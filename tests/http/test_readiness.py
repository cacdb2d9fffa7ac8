"""/readyz names the state of each dependency: the database (required: 503 without it),
the connection that hears of key changes (the fast path's key cache) and Redis (the
shared rate limits). Without either of the last two the server still serves, degraded:
200, ``"status": "degraded"``."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import pytest

from devicelink.runtime.settings import Settings
from tests.support.app import FakeClock, Server, running

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("DEVICELINK_TEST_REDIS", "redis://127.0.0.1:6379")
CLOSED_PORT = "redis://127.0.0.1:9"


async def ready_when(server: Server, key_changes: str, limit: float = 15.0) -> dict[str, object]:
    """/readyz's body once it reports ``key_changes`` (the listener connects in the
    background after the start)."""
    deadline = time.monotonic() + limit
    while True:
        response = await server.http.get("/readyz")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        checks = body["checks"]
        assert isinstance(checks, dict)
        if checks.get("key_changes") == key_changes:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


async def test_readyz_names_the_database(server: Server, backend: str) -> None:
    response = await server.http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert "redis" not in body["checks"]  # no DEVICELINK_REDIS_URL
    if backend == "sqlite":
        assert "key_changes" not in body["checks"]  # no fast path, no key cache


@pytest.mark.parametrize("backend", ["postgres"])  # the key cache runs on PostgreSQL only
async def test_readyz_reports_when_key_changes_go_unheard(settings: Settings) -> None:
    """With the fast path's key cache on PostgreSQL: "listening" once the listener hears;
    when it stops (key checks then go to the database, uncached) the server is degraded,
    still ready."""
    async with running(settings, FakeClock()) as server:
        assert await ready_when(server, "listening") == {
            "status": "ready",
            "checks": {"database": "ok", "key_changes": "listening"},
        }
        listener = server.runtime.key_changes
        assert listener is not None
        await listener.close()
        response = await server.http.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {
            "status": "degraded",
            "checks": {"database": "ok", "key_changes": "not listening"},
        }


async def test_readyz_leaves_the_listener_out_without_a_key_cache(
    settings: Settings, clock: FakeClock
) -> None:
    async with running(settings.model_copy(update={"key_cache_size": 0}), clock) as server:
        response = await server.http.get("/readyz")
    assert response.status_code == 200
    assert "key_changes" not in response.json()["checks"]


@pytest.mark.redis
async def test_readyz_reports_redis_when_it_answers(settings: Settings, clock: FakeClock) -> None:
    shared = settings.model_copy(
        update={
            "redis_url": REDIS_URL,
            "redis_key_prefix": f"devicelink-test-{secrets.token_hex(6)}",
        }
    )
    async with running(shared, clock) as server:
        response = await server.http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == "ok"


async def test_an_unreachable_redis_is_a_degraded_state_not_an_outage(
    settings: Settings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis away: the limits are counted in this process, so the server still serves
    (200), and says so; the next probe within the retry delay sends nothing to Redis."""
    unreachable = settings.model_copy(update={"redis_url": CLOSED_PORT})
    async with running(unreachable, clock) as server:
        first = await server.http.get("/readyz")
        second = await server.http.get("/readyz")
        started = await server.http.post("/oauth/device/authorize", data={})
        metrics = (await server.http.get("/metrics")).text
    for response in (first, second):
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "degraded"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"] == "unreachable"
    assert started.status_code == 200
    assert "Redis is unreachable" in caplog.text
    # Marked down once by the first probe; neither the second probe nor the flow tried again.
    assert "devicelink_rate_limit_fallbacks_total 1.0" in metrics


async def test_a_draining_server_is_not_ready(server: Server) -> None:
    server.runtime.draining = True
    response = await server.http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
