"""Connections to PostgreSQL per server process (issue 18, item 9): the pool sizes are
settings that reach the pools, a process under load never holds more connections than
``config check`` states, and a bad size is refused with what to set."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from devicelink.runtime.settings import Settings
from devicelink.storage import SqlStore
from devicelink.storage.fast_path import AsyncpgFastPath
from tests.support.app import PUBLIC_URL, TEST_SECRET, FakeClock, Server, running
from tests.support.databases import dsn, fresh_postgres_database
from tests.support.processes import clean_env, config_check
from tests.support.servers import STRONG_SECRET

pytestmark = pytest.mark.postgres

PRODUCTION = {
    "DEVICELINK_PUBLIC_URL": "https://login.example.com",
    "DEVICELINK_SECRET_KEY": STRONG_SECRET,
    "DEVICELINK_DATABASE_URL": "postgresql://devicelink:Xq7-unguessable@db.internal/devicelink",
    "DEVICELINK_REDIS_URL": "redis://redis.internal:6379/0",
}


@pytest.fixture
def own_database() -> Iterator[str]:
    """A migrated database of this test alone: every connection to it is the server's."""
    with fresh_postgres_database("devicelink_connections") as url:
        yield url


async def _connections(url: str, watcher: asyncpg.Connection) -> int:
    """Connections to the database at ``url`` other than ``watcher`` itself."""
    count: int = await watcher.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return count


async def _busy_worker(server: Server, rounds: int, width: int) -> list[int]:
    """Requests of both paths, ``width`` at a time: new flows and polls on the fast path,
    readiness checks on the general path. The status of each."""
    statuses: list[int] = []
    for _ in range(rounds):
        flows = await asyncio.gather(*(server.start_flow() for _ in range(width)))
        answers: list[httpx.Response] = await asyncio.gather(
            *(server.poll(flow["device_code"]) for flow in flows),
            *(server.http.get("/readyz") for _ in range(width)),
        )
        statuses += [200] * len(flows)  # start_flow asserts its own 200
        statuses += [answer.status_code for answer in answers]
    return statuses


@pytest.mark.anyio
async def test_a_worker_stays_within_the_connections_config_check_states(
    own_database: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=own_database,
        public_url=PUBLIC_URL,
        secret_key=SecretStr(TEST_SECRET),
        data_dir=tmp_path / "data",
        auto_migrate=False,
        start_rate_limit="10000/minute",
        database_pool_size=2,
        database_max_overflow=1,
        fast_path_pool_size=2,
    )
    assert settings.max_connections_per_worker() == 2 + 1 + 2 + 1
    watcher = await asyncpg.connect(dsn(own_database))
    seen: list[int] = []
    try:
        async with running(settings, FakeClock()) as server:
            store = server.runtime.store
            assert isinstance(store, SqlStore)
            assert store.engine.pool.size() == 2  # type: ignore[attr-defined]
            fast_path = server.runtime.flows._fast_path
            assert isinstance(fast_path, AsyncpgFastPath)
            assert fast_path._pool.get_max_size() == 2

            busy = asyncio.ensure_future(_busy_worker(server, rounds=5, width=12))
            while not busy.done():
                seen.append(await _connections(own_database, watcher))
            statuses = await busy
            seen.append(await _connections(own_database, watcher))
    finally:
        await watcher.close()

    # Requests beyond the pools wait for a connection: none fails.
    assert set(statuses) <= {200, 400}, statuses
    assert statuses.count(200) == 5 * 12 * 2  # every start and every readiness check
    assert max(seen) <= 6, seen
    assert max(seen) >= 2, "the test never saw the worker's connections"


def test_config_check_states_the_connections_of_the_workers(workdir: Path) -> None:
    env = clean_env(
        **PRODUCTION,
        DEVICELINK_DATABASE_POOL_SIZE="4",
        DEVICELINK_DATABASE_MAX_OVERFLOW="1",
        DEVICELINK_FAST_PATH_POOL_SIZE="4",
    )
    code, output = config_check(env, workdir, "--workers", "4")
    assert code == 0, output
    assert "at most 10 per worker, 40 for 4 workers" in output
    assert "warning" not in output


def test_config_check_warns_when_one_machine_passes_postgresql_defaults(workdir: Path) -> None:
    code, output = config_check(clean_env(**PRODUCTION), workdir, "--workers", "4")
    assert code == 0, output
    assert "at most 26 per worker, 104 for 4 workers" in output
    assert "warning: 104 connections to PostgreSQL" in output
    assert "raise max_connections, or lower DEVICELINK_DATABASE_POOL_SIZE" in output


def test_config_check_says_nothing_of_postgresql_on_sqlite(workdir: Path) -> None:
    env = clean_env(DEVICELINK_PUBLIC_URL="http://127.0.0.1:8000")
    code, output = config_check(env, workdir)
    assert code == 0, output
    assert "postgres connections" not in output


@pytest.mark.parametrize(
    ("variable", "value", "refusal"),
    [
        ("DEVICELINK_DATABASE_POOL_SIZE", "0", "must be between 1 and 100"),
        ("DEVICELINK_DATABASE_MAX_OVERFLOW", "-1", "must be between 0 and 100"),
        ("DEVICELINK_FAST_PATH_POOL_SIZE", "1000", "must be between 1 and 100"),
    ],
)
def test_a_pool_size_out_of_range_is_refused(
    workdir: Path, variable: str, value: str, refusal: str
) -> None:
    code, output = config_check(clean_env(**PRODUCTION, **{variable: value}), workdir)
    assert code != 0
    assert f"{variable} {refusal}" in output
    assert "Traceback" not in output
