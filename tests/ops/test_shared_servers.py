"""Two ``devicelink serve`` processes on different ports behind one PostgreSQL database
(fresh, migrated with ``devicelink db upgrade``) and one Redis: either one serves any
request of a flow, and the limits count across both (DESIGN.md, "Scale")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import add_user
from tests.support.databases import pg_fetch_now
from tests.support.http import approve, enter_code, poll, run, sign_in, start_flow
from tests.support.processes import clean_env
from tests.support.servers import STRONG_SECRET, Launcher, ServerProcess, wait_until_answering

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
) -> tuple[ServerProcess, ServerProcess]:
    add_user(shared_env, workdir, "alice")
    first = launch(env=shared_env, cwd=workdir, wait_for=None)
    second = launch(env=shared_env, cwd=workdir, wait_for=None)
    for server in (first, second):
        wait_until_answering(server)
    assert first.port != second.port
    return first, second


@contextmanager
def clients(*servers: ServerProcess) -> Iterator[list[httpx.Client]]:
    """One client per server given, in order, each with its own cookies and connection."""
    with ExitStack() as stack:
        yield [stack.enter_context(httpx.Client(base_url=s.base_url, timeout=10)) for s in servers]


def test_a_flow_started_on_one_server_is_approved_on_the_other_and_pays_out_once(
    two_servers: tuple[ServerProcess, ServerProcess], postgres_url: str
) -> None:
    first, second = two_servers
    with clients(first, second, second) as (device_a, device_b, browser):
        flow = run(device_a, start_flow())
        code = flow["device_code"]

        # The polling state is shared: a poll on A, then one on B too soon, earns a
        # slow_down on B; the next one on A, still too soon, continues from B's interval.
        assert run(device_a, poll(code)).json()["error"] == "authorization_pending"
        slowed = run(device_b, poll(code)).json()
        assert slowed["error"] == "slow_down"
        assert slowed["interval"] == 10
        again = run(device_a, poll(code)).json()
        assert again["error"] == "slow_down"
        assert again["interval"] == 15, "A did not see the slow_down B gave"

        # The user signs in and approves on the other server, through its pages.
        run(browser, sign_in("alice"))
        run(browser, approve(flow["user_code"]))

        answers = [run(device, poll(code)) for device in (device_b, device_a, device_b, device_a)]
        granted = [a for a in answers if a.status_code == 200]
        assert len(granted) == 1, [a.text for a in answers]
        assert answers[0].status_code == 200, "approval is reported before slow_down"
        assert [a.json()["error"] for a in answers if a.status_code != 200] == ["invalid_grant"] * 3
        key = granted[0].json()["access_token"]

        for device in (device_a, device_b):
            me = device.get("/api/me", headers={"Authorization": f"Bearer {key}"})
            assert me.status_code == 200, me.text
            assert me.json()["username"] == "alice"

    rows = pg_fetch_now(postgres_url, "SELECT count(*) AS n FROM api_keys")
    assert rows[0]["n"] == 1


def test_wrong_code_entries_on_both_servers_count_against_one_limit(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_servers
    with clients(first, first, second) as (device, browser_a, browser_b):
        flow = run(device, start_flow())
        # Two browser sessions, one on each server, of the same account: the limit
        # per account (3/hour) is the one that must hold across processes.
        run(browser_a, sign_in("alice"))
        run(browser_b, sign_in("alice"))
        wrong = "BCDF-GHJK" if flow["user_code"] != "BCDF-GHJK" else "ZXWV-TSRQ"
        statuses = [
            run(browser, enter_code(wrong)).status_code
            for browser in (browser_a, browser_b, browser_a)
        ]
        assert statuses == [400, 400, 400]

        # The fourth entry, on B, is refused even though it is the right code.
        limited = run(browser_b, enter_code(flow["user_code"]))
        assert limited.status_code == 429, limited.text
        assert "Too many wrong codes" in limited.text
        assert int(limited.headers["Retry-After"]) > 0
        # ... and on A as well.
        assert run(browser_a, enter_code(flow["user_code"])).status_code == 429

        # Nothing was approved.
        assert run(device, poll(flow["device_code"])).json()["error"] == "authorization_pending"
