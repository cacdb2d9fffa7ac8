"""/metrics counts what happened: flows, polls by answer, keys, refusals, latency,
requests by route and status; and names the build and the process."""

from __future__ import annotations

import re
from contextlib import nullcontext
from importlib.metadata import version

import pytest
from pydantic import SecretStr

from devicelink.runtime.checks import public_url_problems
from devicelink.runtime.settings import ConfigurationError, Settings
from tests.http.contract import assert_oauth_error
from tests.pages.pagetools import Browser, Site
from tests.support.app import PUBLIC_URL, TEST_SECRET, FakeClock, running
from tests.support.http import csrf_of

pytestmark = pytest.mark.anyio


def sample(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+]+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


async def test_a_complete_flow_is_counted(site: Site, browser: Browser) -> None:
    await site.add_user()
    approved = await site.start_flow()
    denied = await site.start_flow()
    await site.poll(approved["device_code"])
    site.clock.advance(1)
    await site.poll(approved["device_code"])  # too early: slow_down
    await browser.sign_in()
    await browser.decide(await browser.enter_code(approved["user_code"]), "approve")
    await browser.decide(await browser.enter_code(denied["user_code"]), "deny")
    await browser.enter_code("BCDF-GHJK")
    site.clock.advance(10)
    key = (await site.poll(approved["device_code"])).json()["access_token"]
    await site.poll(denied["device_code"])
    page = await browser.http.get("/devices")
    await browser.http.post("/devices", data={"revoke": "all", "csrf_token": csrf_of(page)})

    response = await site.device.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "devicelink_flows_total", outcome="started") == 2
    assert sample(text, "devicelink_flows_total", outcome="approved") == 1
    assert sample(text, "devicelink_flows_total", outcome="denied") == 1
    assert sample(text, "devicelink_polls_total", answer="authorization_pending") == 1
    assert sample(text, "devicelink_polls_total", answer="slow_down") == 1
    assert sample(text, "devicelink_polls_total", answer="issued") == 1
    assert sample(text, "devicelink_polls_total", answer="access_denied") == 1
    assert sample(text, "devicelink_keys_total", event="issued") == 1
    assert sample(text, "devicelink_keys_total", event="revoked") == 1
    assert (
        sample(text, "devicelink_request_duration_seconds_count", route="/oauth/device/token") == 4
    )
    assert key not in text
    assert approved["device_code"] not in text


async def test_refusals_are_counted(site: Site) -> None:
    """30 starts a minute from one address: the limit is a sliding window counter, whose
    estimate may let one more through when the burst straddles two of its windows (it
    weighs the previous window's count by the time left): so 32 requests, and the
    metrics count exactly what was answered, whatever the time of day."""
    answers = [
        (await site.device.post("/oauth/device/authorize", data={})).status_code for _ in range(32)
    ]
    assert answers[:30] == [200] * 30
    assert 429 in answers[30:]
    text = (await site.device.get("/metrics")).text
    assert sample(text, "devicelink_rate_limited_total", limit="start") == answers.count(429)
    assert sample(text, "devicelink_flows_total", outcome="started") == answers.count(200)


async def test_unknown_paths_share_one_latency_series(site: Site) -> None:
    for n in range(5):
        await site.device.get(f"/nowhere-{n}")
    text = (await site.device.get("/metrics")).text
    assert "nowhere" not in text
    assert sample(text, "devicelink_request_duration_seconds_count", route="other") == 5


async def test_requests_are_counted_by_route_template_and_status(site: Site) -> None:
    """Counted once each, whether the fast path answers them (on PostgreSQL) or the full
    stack; by the route's template, never the raw path."""
    flow = await site.start_flow()
    await site.poll(flow["device_code"])
    await site.poll(flow["device_code"])
    await site.device.get("/api/me")  # no key: handed to the full stack
    await site.device.get("/api/me", headers={"Authorization": "Bearer dlk_unknown"})
    await site.device.delete("/api/keys/12345", headers={"Authorization": "Bearer dlk_unknown"})
    for n in range(3):
        await site.device.get(f"/nowhere-{n}")
    await site.device.get("/healthz")

    text = (await site.device.get("/metrics")).text

    def requests(route: str, status: str) -> float:
        return sample(text, "devicelink_requests_total", route=route, status=status)

    assert requests("/oauth/device/authorize", "200") == 1
    assert requests("/oauth/device/token", "400") == 2
    assert requests("/api/me", "401") == 2
    assert requests("/api/keys/{key_id}", "401") == 1
    assert requests("other", "404") == 3
    assert requests("/healthz", "200") == 1
    assert "12345" not in text
    assert "nowhere" not in text


async def test_metrics_name_the_build_and_the_process(site: Site) -> None:
    text = (await site.device.get("/metrics")).text
    assert sample(text, "devicelink_build_info", version=version("devicelink")) == 1
    assert sample(text, "process_resident_memory_bytes") > 0
    assert sample(text, "process_open_fds") > 0
    assert "process_cpu_seconds_total" in text
    assert "python_info{" in text


METRICS_TOKEN = "metrics-token-" + "k3Y9" * 8


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer wrong-token", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x"],
    ids=["none", "empty", "wrong", "other scheme", "longer"],
)
async def test_with_a_metrics_token_metrics_answer_only_its_bearer(
    settings: Settings, clock: FakeClock, authorization: str | None
) -> None:
    guarded = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    async with running(guarded, clock) as server:
        headers = {"Authorization": authorization} if authorization else {}
        refused = await server.http.get("/metrics", headers=headers)
        assert_oauth_error(refused, 401, "invalid_token")
        assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
        assert "devicelink_" not in refused.text
        answered = await server.http.get(
            "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert answered.status_code == 200
        assert "devicelink_flows_total" in answered.text


async def test_without_a_metrics_token_metrics_stay_open(site: Site) -> None:
    assert (await site.device.get("/metrics")).status_code == 200


@pytest.mark.parametrize("token", ["metrics", "short-token", "ab" * 20])
def test_a_weak_metrics_token_is_refused_outside_development(token: str) -> None:
    def refusals(metrics_token: str) -> list[str]:
        settings = Settings(
            public_url=PUBLIC_URL,
            secret_key=SecretStr(TEST_SECRET),
            metrics_token=SecretStr(metrics_token),
        )
        with pytest.raises(ConfigurationError) if metrics_token == token else nullcontext():
            settings.check()
        return [p for p in public_url_problems(settings) if "DEVICELINK_METRICS_TOKEN" in p]

    assert refusals(token) == [
        "DEVICELINK_METRICS_TOKEN is too weak: use 32 or more random characters "
        "(`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
    ]
    assert refusals(METRICS_TOKEN) == []
