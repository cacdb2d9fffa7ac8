"""PostgreSQL stops while devices poll and users approve, then comes back.

A real ``devicelink serve`` runs on a private PostgreSQL server (see cluster.py: never
the machine's shared one), which the scenario stops with ``pg_ctl stop -m fast``
and starts again. Before the outage, on each server: flow A is approved through the
pages and has its key; flow B is approved but not yet polled; flows C and D are
pending. Three tasks per server keep polling (C, D and an unknown code) from before
the stop until after the restart. During the outage every endpoint is probed once.

Two servers live through the same outage, side by side on one database: one with the
fast path of the hot paths (the default), one with the general routes alone
(``DEVICELINK_FAST_PATH=false``); each has its own flows A to D and pollers. The tests
below judge what the scenario recorded, per server. What the hardening
issue asks: machine endpoints answer 503 ``temporarily_unavailable`` JSON with
Retry-After; readiness false, liveness true; pages a friendly error; once PostgreSQL is
back, flows continue: no approval lost, no key issued twice, pending flows still pending.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.faults.answers import (
    Answer,
    assert_friendly_page,
    assert_temporarily_unavailable,
    observe,
    response_of,
)
from tests.faults.cluster import Cluster, Deployment, PrivatePostgres
from tests.support.databases import pg_fetch
from tests.support.http import approve, arun, csrf_of, poll, sign_in, start_flow, token_form
from tests.support.servers import wait_until_answering

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OUTAGE_SECONDS = 1.5
"""How long PostgreSQL stays down after ``pg_ctl stop`` returns (pollers keep going)."""
RECOVERY_DEADLINE = 15.0
POLLERS_PAUSE = 0.02

BUG_CONNECT = (
    "bug: src/devicelink/storage/database.py, SqlStore.transaction (line 131) turns only "
    "OperationalError/InterfaceError/OSError/TimeoutError met while connecting into "
    "StorageUnavailable; asyncpg's CannotConnectNowError (SQLSTATE 57P03, 'the database "
    "system is shutting down' / 'is starting up') reaches it as a plain sqlalchemy DBAPIError: "
    "polls during a PostgreSQL stop or start get 500 server_error (timing-dependent here; "
    "shown deterministically by test_storage_faults.py)"
)


@dataclass
class Outage:
    """What the clients of one server saw before, during and after the outage."""

    config: str
    deployment: Deployment
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    key_a: str = ""
    during: dict[str, Answer] = field(default_factory=dict)
    pollers: list[tuple[str, Answer]] = field(default_factory=list)
    """(phase, answer) of every background poll; phase is before, outage or after."""
    recovery_polls_b: list[Answer] = field(default_factory=list)
    after: dict[str, Answer] = field(default_factory=dict)
    recovered_after: float = 0.0
    statuses: dict[str, str] = field(default_factory=dict)
    keys_per_flow: dict[str, int] = field(default_factory=dict)
    key_issued_events: int = 0
    exit_code: int | None = None
    """The server's exit code if it died during the scenario (None: still running)."""
    logs: str = ""

    @property
    def base_url(self) -> str:
        return self.deployment.base_url


class Phase:
    """The phase the background pollers record their answers under."""

    name = "before"


async def _prepare(outage: Outage) -> httpx.Cookies:
    """Flows A to D: A approved through the pages and its key received, B approved and
    not yet polled, C and D pending (polled once). The browser's cookies."""
    async with (
        httpx.AsyncClient(base_url=outage.base_url, timeout=20) as device,
        httpx.AsyncClient(base_url=outage.base_url, timeout=20) as browser,
    ):
        flows = {name: await arun(device, start_flow()) for name in "ABCD"}
        outage.flows = flows
        await arun(browser, sign_in("alice"))
        await arun(browser, approve(flows["A"]["user_code"]))
        await arun(browser, approve(flows["B"]["user_code"]))
        got_a = await arun(device, poll(flows["A"]["device_code"]))
        assert got_a.status_code == 200, got_a.text
        outage.key_a = got_a.json()["access_token"]
        me = await device.get("/api/me", headers={"Authorization": f"Bearer {outage.key_a}"})
        assert me.status_code == 200, me.text
        for name in "CD":
            pending = await arun(device, poll(flows[name]["device_code"]))
            assert pending.json()["error"] == "authorization_pending", pending.text
        return browser.cookies


async def _keep_polling(
    outage: Outage, device_code: str, phase: Phase, stop: asyncio.Event
) -> None:
    # A device of its own: its own connection, kept alive as a CLI's would be.
    async with httpx.AsyncClient(base_url=outage.base_url, timeout=20) as own:
        while not stop.is_set():
            answer = await observe(
                "poll", own.post("/oauth/device/token", data=token_form(device_code))
            )
            outage.pollers.append((phase.name, answer))
            await asyncio.sleep(POLLERS_PAUSE)


async def _probe_everything(outage: Outage, cookies: httpx.Cookies) -> None:
    """Each endpoint once, each on a connection of its own."""
    flows = outage.flows

    async def probe(
        label: str, method: str, path: str, *, signed_in: bool = False, **kwargs: Any
    ) -> None:
        jar = cookies if signed_in else None
        async with httpx.AsyncClient(base_url=outage.base_url, timeout=20, cookies=jar) as http:
            outage.during[label] = await observe(label, http.request(method, path, **kwargs))

    token = "/oauth/device/token"
    await probe("poll B", "POST", token, data=token_form(flows["B"]["device_code"]))
    await probe("poll C", "POST", token, data=token_form(flows["C"]["device_code"]))
    start_form = {"client_id": "devicelink-cli"}
    await probe("authorize", "POST", "/oauth/device/authorize", data=start_form)
    await probe("me A", "GET", "/api/me", headers={"Authorization": f"Bearer {outage.key_a}"})
    await probe("readyz", "GET", "/readyz")
    await probe("healthz", "GET", "/healthz")
    await probe("verify page", "GET", "/oauth/device/verify", signed_in=True)
    await probe("devices page", "GET", "/devices", signed_in=True)
    # A new visitor's sign-in page needs no database (nothing is stored for a visit);
    # signing in does.
    async with httpx.AsyncClient(base_url=outage.base_url, timeout=20) as visitor:
        page = await observe("login page", visitor.get("/login"))
        outage.during["login page"] = page
        form = {"username": "nobody", "password": "a password", "csrf_token": ""}
        if page.status == 200:
            form["csrf_token"] = csrf_of(response_of(page))
        outage.during["sign in"] = await observe("sign in", visitor.post("/login", data=form))


async def _recover(outage: Outage, restarted: float) -> None:
    """The approved device's next polls: 503 until the database answers, then its key,
    once."""
    code = outage.flows["B"]["device_code"]
    async with httpx.AsyncClient(base_url=outage.base_url, timeout=20) as device_b:
        while time.monotonic() - restarted < RECOVERY_DEADLINE:
            answer = await observe("poll B", arun(device_b, poll(code)))
            outage.recovery_polls_b.append(answer)
            if answer.status is not None and answer.status < 500:
                break
            await asyncio.sleep(0.2)
        outage.recovered_after = time.monotonic() - restarted
        outage.after["poll B again"] = await observe("poll B again", arun(device_b, poll(code)))


async def _after(outage: Outage, cookies: httpx.Cookies) -> None:
    async with httpx.AsyncClient(base_url=outage.base_url, timeout=20, cookies=cookies) as fresh:
        deadline = time.monotonic() + RECOVERY_DEADLINE
        while True:
            ready = await observe("readyz", fresh.get("/readyz"))
            if ready.status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        outage.after["readyz"] = ready
        for name in "CD":
            outage.after[f"poll {name}"] = await observe(
                f"poll {name}", arun(fresh, poll(outage.flows[name]["device_code"]))
            )
        outage.after["me A"] = await observe(
            "me A", fresh.get("/api/me", headers={"Authorization": f"Bearer {outage.key_a}"})
        )
        outage.after["verify page"] = await observe(
            "verify page", fresh.get("/oauth/device/verify")
        )


async def _record_database(outage: Outage) -> None:
    """Each flow's status, key rows and key_issued audit events, as stored."""
    hasher = outage.deployment.hasher()
    hashes = {name: hasher.device_code(flow["device_code"]) for name, flow in outage.flows.items()}
    rows = await pg_fetch(
        outage.deployment.database_url,
        "SELECT d.device_code_hash, d.status, "
        "(SELECT count(*) FROM api_keys k WHERE k.device_authorization_id = d.id) AS keys, "
        "(SELECT count(*) FROM audit_events a WHERE a.device_authorization_id = d.id "
        " AND a.event = 'key_issued') AS issued "
        "FROM device_authorizations d WHERE d.device_code_hash = ANY($1::bytea[])",
        list(hashes.values()),
    )
    by_hash = {bytes(row["device_code_hash"]): row for row in rows}
    for name, code_hash in hashes.items():
        row = by_hash[code_hash]
        outage.statuses[name] = row["status"]
        outage.keys_per_flow[name] = row["keys"]
        outage.key_issued_events += row["issued"]


async def _run(outages: list[Outage], postgres: PrivatePostgres) -> None:
    """One PostgreSQL outage, lived through by every server at once."""
    cookies = await asyncio.gather(*(_prepare(outage) for outage in outages))
    phase = Phase()
    stop = asyncio.Event()
    pollers = [
        asyncio.create_task(_keep_polling(outage, flow["device_code"], phase, stop))
        for outage in outages
        for flow in (outage.flows["C"], outage.flows["D"], {"device_code": "unknown-code"})
    ]
    try:
        await asyncio.sleep(0.3)
        phase.name = "outage"
        # In a thread: the pollers keep polling while PostgreSQL shuts down.
        await asyncio.to_thread(postgres.stop, "fast")
        await asyncio.gather(
            *(_probe_everything(o, c) for o, c in zip(outages, cookies, strict=True))
        )
        await asyncio.sleep(OUTAGE_SECONDS)
        phase.name = "after"
        await asyncio.to_thread(postgres.start)
        restarted = time.monotonic()
        await asyncio.gather(*(_recover(outage, restarted) for outage in outages))
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*pollers, return_exceptions=True)
        if not postgres.running:
            postgres.start()
    await asyncio.gather(*(_after(o, c) for o, c in zip(outages, cookies, strict=True)))
    for outage in outages:
        await _record_database(outage)


@pytest.fixture(scope="module")
def outages(cluster: Cluster, all_servers: dict[str, Deployment]) -> dict[str, Outage]:
    """The scenario, run once for the module with every server variant at once."""
    cluster.ensure_running()
    for dep in all_servers.values():
        wait_until_answering(dep.server, "/readyz")
    recorded = {config: Outage(config, dep) for config, dep in all_servers.items()}
    asyncio.run(_run(list(recorded.values()), cluster.postgres))
    for outage in recorded.values():
        outage.exit_code = outage.deployment.server.process.poll()
        outage.logs = outage.deployment.logs()
    return recorded


@pytest.fixture(params=["fast_path", "general_path"])
def outage(request: pytest.FixtureRequest, outages: dict[str, Outage]) -> Outage:
    return outages[request.param]


def _unhandled(logs: str) -> str:
    lines = [line for line in logs.splitlines() if "unhandled" in line or "Exception in" in line]
    return "\n".join(line[:300] for line in lines[:10])


# --- during the outage ---------------------------------------------------------------------


def test_token_endpoint_answers_temporarily_unavailable(
    outage: Outage, request: pytest.FixtureRequest
) -> None:
    for label in ("poll B", "poll C"):
        answer = outage.during[label]
        assert answer.status is not None, f"{answer}\n{_unhandled(outage.logs)}"
        assert_temporarily_unavailable(response_of(answer))
        assert "x-request-id" in answer.headers, answer.headers


def test_device_authorization_endpoint_answers_temporarily_unavailable(outage: Outage) -> None:
    answer = outage.during["authorize"]
    assert_temporarily_unavailable(response_of(answer))
    assert "x-request-id" in answer.headers, answer.headers


def test_a_key_check_answers_503_and_never_401(
    outage: Outage, request: pytest.FixtureRequest
) -> None:
    """A valid key must not read as unknown (401) while the database is away: a CLI that
    believes its key revoked throws it away."""
    answer = outage.during["me A"]
    assert answer.status != 401, str(answer)
    assert_temporarily_unavailable(response_of(answer))


def test_readiness_turns_false(outage: Outage, request: pytest.FixtureRequest) -> None:
    answer = outage.during["readyz"]
    assert answer.status == 503, f"{answer}\n{_unhandled(outage.logs)}"
    assert answer.error == "temporarily_unavailable", str(answer)


def test_liveness_stays_true(outage: Outage) -> None:
    answer = outage.during["healthz"]
    assert answer.status == 200, str(answer)


def test_a_new_visitor_still_gets_the_sign_in_form(outage: Outage) -> None:
    answer = outage.during["login page"]
    assert answer.status == 200, str(answer)
    assert 'name="csrf_token"' in answer.text


@pytest.mark.parametrize("page", ["verify page", "devices page", "sign in"])
def test_pages_show_a_friendly_error(outage: Outage, page: str) -> None:
    answer = outage.during[page]
    response = response_of(answer)
    assert_friendly_page(response, 503)
    assert "Temporarily unavailable" in response.text
    assert answer.headers.get("retry-after", "").isdigit(), answer.headers
    assert answer.headers.get("x-frame-options") == "DENY", answer.headers


def test_devices_polling_through_the_outage_never_see_a_500_or_a_dropped_connection(
    outage: Outage, request: pytest.FixtureRequest
) -> None:
    during = [answer for phase, answer in outage.pollers if phase == "outage"]
    assert len(during) >= 10, f"only {len(during)} polls during the outage"
    everything = [answer for _phase, answer in outage.pollers] + outage.recovery_polls_b
    bad = [
        str(answer)
        for answer in everything
        if answer.status is None or (answer.status >= 500 and answer.status != 503)
    ]
    assert not bad, f"{len(bad)} bad answers, first: {bad[:3]}\n{_unhandled(outage.logs)}"
    for answer in during + outage.recovery_polls_b:
        if answer.status == 503:
            assert_temporarily_unavailable(response_of(answer))
    assert any(answer.status == 503 for answer in during), "the outage was never noticed"


# --- after the outage ----------------------------------------------------------------------


def test_the_approved_device_gets_its_key_exactly_once_when_the_database_is_back(
    outage: Outage,
) -> None:
    polls = outage.recovery_polls_b
    assert polls, "no poll after the restart"
    final = polls[-1]
    assert final.status == 200, f"{final} after {outage.recovered_after:.1f} s\n{outage.logs}"
    assert final.json()["access_token"].startswith("dlk_")
    assert final.json()["access_token"] != outage.key_a
    # (What came before the key is judged with the other polls, below: never a 500.)
    assert outage.recovered_after < 5, f"polls worked again only after {outage.recovered_after}"
    again = outage.after["poll B again"]
    assert again.status == 400, str(again)
    assert again.error == "invalid_grant", str(again)
    assert outage.statuses["B"] == "consumed"
    assert outage.keys_per_flow == {"A": 1, "B": 1, "C": 0, "D": 0}
    assert outage.key_issued_events == 2


def test_no_approval_is_lost_and_pending_flows_are_still_pending(outage: Outage) -> None:
    assert outage.statuses == {"A": "consumed", "B": "consumed", "C": "pending", "D": "pending"}
    for name in "CD":
        answer = outage.after[f"poll {name}"]
        assert answer.status == 400, str(answer)
        # slow_down: the background pollers polled the same codes a moment ago.
        assert answer.error in ("authorization_pending", "slow_down"), str(answer)


def test_everything_answers_again_after_the_outage(outage: Outage) -> None:
    assert outage.exit_code is None, f"the server exited ({outage.exit_code})\n{outage.logs}"
    assert outage.after["readyz"].status == 200, str(outage.after["readyz"])
    me = outage.after["me A"]
    assert me.status == 200, str(me)
    assert me.json()["username"] == "alice", str(me)
    page = outage.after["verify page"]
    assert page.status == 200, str(page)
    assert 'name="csrf_token"' in page.text, str(page)
    after = [answer for phase, answer in outage.pollers if phase == "after"]
    assert after, "no poll after the outage"
    assert after[-1].status == 400, [str(a) for a in after[-3:]]


# --- a restart nobody saw --------------------------------------------------------------------


@pytest.mark.parametrize("config", ["fast_path", "general_path"])
def test_requests_after_a_quiet_restart_work_after_at_most_one_retry(
    servers: dict[str, Deployment], config: str
) -> None:
    """PostgreSQL restarts (a failover, a minor upgrade) while nobody uses devicelink;
    a second later devices come. The connections pooled before the restart are dead:
    the pool has no pre-ping (src/devicelink/storage/database.py, create_engine_for_url),
    so the first request that takes one may fail, but as a 503 the client retries, never
    a 500, and the pool is renewed at once (SQLAlchemy invalidates it on that error)."""
    dep = servers[config]
    dep.postgres.stop("fast")
    dep.postgres.start()
    time.sleep(1.0)
    with httpx.Client(base_url=dep.base_url, timeout=20) as device:
        answers = [
            device.post("/oauth/device/authorize", data={"client_id": "devicelink-cli"})
            for _ in range(3)
        ]
    statuses = [answer.status_code for answer in answers]
    # Which request meets the first dead connection depends on the pool's order; the
    # first such error invalidates the whole pool, so there is at most one.
    assert set(statuses) <= {200, 503}, [a.text for a in answers]
    assert statuses.count(503) <= 1, [a.text for a in answers]
    for answer in answers:
        if answer.status_code == 503:
            assert_temporarily_unavailable(answer)
