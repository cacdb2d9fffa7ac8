"""Fifty clients poll one approved device code at the same moment, on PostgreSQL.

The original system read the state, decided, then wrote it back unguarded, and never
consumed the code (DESIGN.md defects 1 and 9): every racing poll got a key. Here a real
``devicelink serve`` process answers real concurrent HTTP requests, and the database is
asked afterwards how many keys exist for the authorization.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from devicelink.core.codes import CodeHasher
from tests.support.accounts import approve_through_service
from tests.support.app import TEST_SECRET
from tests.support.databases import pg_fetch
from tests.support.http import arun, poll, start_flow
from tests.support.processes import clean_env, free_port
from tests.support.servers import ServerProcess, launcher

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.anyio]

POLLERS = 50
SECRET = TEST_SECRET.encode()


@pytest.fixture(scope="module")
def pg_server(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One ``devicelink serve`` on the session's PostgreSQL database."""
    workdir = tmp_path_factory.mktemp("pg-serve")
    port = free_port()
    env = clean_env(
        DEVICELINK_DATABASE_URL=postgres_database,
        DEVICELINK_SECRET_KEY=TEST_SECRET,
        DEVICELINK_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    with launcher(workdir / "logs") as launch:
        yield launch(env=env, cwd=workdir, port=port)


@dataclass(frozen=True)
class Race:
    device_code: str
    responses: list[httpx.Response]


async def race_one_approved_code(server: ServerProcess, database_url: str) -> Race:
    """Start a flow over HTTP, approve it through the service, then send ``POLLERS``
    token requests for it at once; the device code and the responses."""
    limits = httpx.Limits(max_connections=POLLERS + 10, max_keepalive_connections=POLLERS + 10)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as http:
        flow = await arun(http, start_flow())
        await approve_through_service(database_url, SECRET, flow["user_code"])
        # Open the connections first, so the polls below leave together.
        await asyncio.gather(*(http.get("/healthz") for _ in range(POLLERS)))
        responses = await asyncio.gather(
            *(arun(http, poll(flow["device_code"])) for _ in range(POLLERS))
        )
    return Race(flow["device_code"], list(responses))


def assert_exactly_one_winner(responses: list[httpx.Response]) -> str:
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 400: POLLERS - 1}, (
        f"{statuses}: {[r.text for r in responses if r.status_code != 400][:5]}"
    )
    errors = Counter(r.json().get("error") for r in responses if r.status_code == 400)
    assert errors == {"invalid_grant": POLLERS - 1}, errors
    (winner,) = (r for r in responses if r.status_code == 200)
    body = winner.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"].startswith("dlk_")
    assert all("access_token" not in r.text for r in responses if r is not winner)
    return str(body["access_token"])


async def keys_for(database_url: str, device_code: str) -> tuple[int, str]:
    """Rows in api_keys for the device authorization of ``device_code``, and its status."""
    rows = await pg_fetch(
        database_url,
        "SELECT d.status, count(k.id) AS keys FROM device_authorizations d "
        "LEFT JOIN api_keys k ON k.device_authorization_id = d.id "
        "WHERE d.device_code_hash = $1 GROUP BY d.status",
        CodeHasher(SECRET).device_code(device_code),
    )
    assert len(rows) == 1, f"the device authorization is not in the database: {rows}"
    return int(rows[0]["keys"]), str(rows[0]["status"])


@pytest.fixture
async def race(pg_server: ServerProcess, postgres_database: str) -> Race:
    """A fresh approved code, and the answers to ``POLLERS`` polls of it sent at once."""
    return await race_one_approved_code(pg_server, postgres_database)


@pytest.mark.defect(9)
@pytest.mark.rfc("8628", "3.5")
async def test_fifty_concurrent_polls_of_one_approved_code_issue_exactly_one_key(
    race: Race, postgres_database: str
) -> None:
    assert_exactly_one_winner(race.responses)
    assert await keys_for(postgres_database, race.device_code) == (1, "consumed")


@pytest.mark.defect(1)
@pytest.mark.defect(9)
@pytest.mark.rfc("8628", "3.5")
async def test_the_one_key_won_by_fifty_concurrent_polls_works_and_the_code_stays_consumed(
    race: Race, pg_server: ServerProcess, postgres_database: str
) -> None:
    key = assert_exactly_one_winner(race.responses)

    async with httpx.AsyncClient(base_url=pg_server.base_url, timeout=10) as http:
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"
        assert me.json()["client_id"] == "devicelink-cli"
        # A later poll, after the race, gets nothing either.
        late = await arun(http, poll(race.device_code))
        assert late.status_code == 400, late.text
        assert late.json()["error"] == "invalid_grant"

    assert await keys_for(postgres_database, race.device_code) == (1, "consumed")


def test_server_on_postgres_leaves_no_embedded_files_behind(pg_server: ServerProcess) -> None:
    """With DATABASE_URL and SECRET_KEY set, nothing is generated in the working directory."""
    assert not (pg_server.cwd / "devicelink-data").exists()
