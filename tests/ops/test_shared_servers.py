"""Two ``devicelink serve`` processes on different ports behind one PostgreSQL database
(fresh, migrated with ``devicelink db upgrade``) and one Redis: either one serves any
request of a flow, and the limits count across both (DESIGN.md, "Scale")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ops_support import (
    PASSWORD,
    STRONG_SECRET,
    Launcher,
    ServerProcess,
    add_user,
    approve,
    clean_env,
    enter_code,
    pg_fetch,
    poll,
    sign_in,
    start_flow,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def shared_env(postgres_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return clean_env(
        DEVICELINK_DATABASE_URL=postgres_url,
        DEVICELINK_REDIS_URL=redis_url,
        DEVICELINK_REDIS_KEY_PREFIX=redis_prefix,
        # Both must hash codes and keys with the same secret.
        DEVICELINK_SECRET_KEY=STRONG_SECRET,
        DEVICELINK_CODE_ENTRY_LIMIT_ACCOUNT="3/hour",
        DEVICELINK_LOG_FORMAT="json",
    )


@pytest.fixture
def two_servers(
    shared_env: dict[str, str], workdir: Path, launch: Launcher
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    add_user(shared_env, workdir, "alice")
    first = launch(env=shared_env, cwd=workdir, wait_for=None)
    second = launch(env=shared_env, cwd=workdir, wait_for=None)
    for server in (first, second):
        launch.wait_until_answering(server)
    assert first.port != second.port
    yield first, second


def test_a_flow_started_on_one_server_is_approved_on_the_other_and_pays_out_once(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    first, second = two_servers
    with (
        httpx.Client(base_url=first.base_url, timeout=10) as device_a,
        httpx.Client(base_url=second.base_url, timeout=10) as device_b,
        httpx.Client(base_url=second.base_url, timeout=10) as browser,
    ):
        flow = start_flow(device_a)
        code = flow["device_code"]

        # The polling state is shared: a poll on A, then one on B too soon, earns a
        # slow_down on B; the next one on A, still too soon, continues from B's interval.
        assert poll(device_a, code).json()["error"] == "authorization_pending"
        slowed = poll(device_b, code).json()
        assert slowed["error"] == "slow_down"
        assert slowed["interval"] == 10
        again = poll(device_a, code).json()
        assert again["error"] == "slow_down"
        assert again["interval"] == 15, "A did not see the slow_down B gave"

        # The user signs in and approves on the other server, through its pages.
        sign_in(browser, "alice", PASSWORD)
        approve(browser, flow["user_code"])

        answers = [poll(device, code) for device in (device_b, device_a, device_b, device_a)]
        granted = [a for a in answers if a.status_code == 200]
        assert len(granted) == 1, [a.text for a in answers]
        assert answers[0].status_code == 200, "approval is reported before slow_down"
        assert [a.json()["error"] for a in answers if a.status_code != 200] == ["invalid_grant"] * 3
        key = granted[0].json()["access_token"]

        for device in (device_a, device_b):
            me = device.get("/api/me", headers={"Authorization": f"Bearer {key}"})
            assert me.status_code == 200, me.text
            assert me.json()["username"] == "alice"

    rows = pg_fetch(postgres_url, "SELECT count(*) AS n FROM api_keys")
    assert rows[0]["n"] == 1


def test_wrong_code_entries_on_both_servers_count_against_one_limit(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_servers
    with (
        httpx.Client(base_url=first.base_url, timeout=10) as device,
        httpx.Client(base_url=first.base_url, timeout=10) as browser_a,
        httpx.Client(base_url=second.base_url, timeout=10) as browser_b,
    ):
        flow = start_flow(device)
        # Two browser sessions, one on each server, of the same account: the limit
        # per account (3/hour) is the one that must hold across processes.
        sign_in(browser_a, "alice", PASSWORD)
        sign_in(browser_b, "alice", PASSWORD)
        wrong = "BCDF-GHJK" if flow["user_code"] != "BCDF-GHJK" else "ZXWV-TSRQ"
        statuses = [enter_code(b, wrong).status_code for b in (browser_a, browser_b, browser_a)]
        assert statuses == [400, 400, 400]

        # The fourth entry, on B, is refused even though it is the right code.
        limited = enter_code(browser_b, flow["user_code"])
        assert limited.status_code == 429, limited.text
        assert "Too many wrong codes" in limited.text
        assert int(limited.headers["Retry-After"]) > 0
        # ... and on A as well.
        assert enter_code(browser_a, flow["user_code"]).status_code == 429

        # Nothing was approved.
        assert poll(device, flow["device_code"]).json()["error"] == "authorization_pending"
