"""Shared fixtures: real SQLite and PostgreSQL databases, a movable clock, the app.

PostgreSQL is required: the suite fails (it does not skip) when the server at
``DEVICELINK_TEST_POSTGRES`` cannot be reached. Where that variable is unset and nothing
answers at the default ``postgresql://postgres@127.0.0.1:5432/postgres``, the run starts
a private server of its own, and likewise for Redis (``DEVICELINK_TEST_REDIS``, default
``redis://127.0.0.1:6379``): tests/support/private_servers.py.
The helpers behind these fixtures are in tests/support/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from pydantic import SecretStr

from devicelink.runtime.settings import Settings
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from tests.support.app import PUBLIC_URL, TEST_SECRET, FakeClock, Server, running
from tests.support.databases import Database, fresh_postgres_database
from tests.support.private_servers import redis_for_run, report_lines
from tests.support.servers import Launcher, attach_logs, launcher

# At the end of the session no code or key the tests handled may be found in clear in the
# logs or the databases.
pytest_plugins = ["tests.support.secrets_audit"]


# --- the clock moved: no test may depend on the day it runs ---------------------------

CLOCK_SHIFT_ENV = "DEVICELINK_TEST_CLOCK_SHIFT_DAYS"


def pytest_configure(config: pytest.Config) -> None:
    """With ``DEVICELINK_TEST_CLOCK_SHIFT_DAYS=N`` the whole run happens N days from now
    (``scripts/test`` runs the unit and client tests again a year ahead): a test that
    reads the real date instead of passing ``now`` fails there.

    Redis is settled here, before the test modules that read ``DEVICELINK_TEST_REDIS``
    are imported (PostgreSQL is, as tests/support/databases.py is imported)."""
    redis_for_run()
    days = os.environ.get(CLOCK_SHIFT_ENV)
    if days:
        traveller = time_machine.travel(timedelta(days=int(days)), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


# --- reports: the RFC clauses covered, the output of the servers a failed test left ------


def pytest_report_header() -> list[str]:
    """Which PostgreSQL and Redis the run uses (private ones where the machine has none)."""
    return report_lines()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    covered: dict[tuple[str, str], int] = {}
    for report in terminalreporter.stats.get("passed", []):
        for name, clause in report.user_properties:
            if name == "rfc":
                covered[clause] = covered.get(clause, 0) + 1
    if covered:
        terminalreporter.section("RFC clauses checked by passing tests")
        for (rfc, section), count in sorted(covered.items()):
            terminalreporter.write_line(f"RFC {rfc} section {section:<8} {count:>4} tests")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    attach_logs(report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "backend" in getattr(item, "fixturenames", ()) and "[postgres" in item.nodeid:
            item.add_marker(pytest.mark.postgres)
        # Carried by every report of the test, for the table of clauses above.
        item.user_properties += [("rfc", tuple(mark.args)) for mark in item.iter_markers("rfc")]


# --- async and the clock ---------------------------------------------------------------


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- databases -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session; dropped afterwards."""
    with fresh_postgres_database("devicelink_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "devicelink.db"
        shutil.copyfile(template, path)
        return Database("sqlite", f"sqlite:///{path}")
    url: str = request.getfixturevalue("postgres_database")
    db = Database("postgres", url)
    asyncio.run(db.truncate())
    return db


@pytest.fixture
async def store(database: Database) -> AsyncIterator[SqlStore]:
    sql_store = SqlStore(create_engine_for_url(database.url))
    try:
        yield sql_store
    finally:
        await sql_store.dispose()


# --- the application -----------------------------------------------------------------


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database.url,
        public_url=PUBLIC_URL,
        secret_key=SecretStr(TEST_SECRET),
        data_dir=tmp_path / "data",
        auto_migrate=False,
    )


@pytest.fixture
async def server(settings: Settings, clock: FakeClock) -> AsyncIterator[Server]:
    async with running(settings, clock) as started:
        yield started


# --- devicelink serve processes --------------------------------------------------------


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """``launch(*args, env=..., cwd=...)`` starts a ``devicelink serve``, stopped at
    teardown (tests/support/servers.py)."""
    with launcher(tmp_path / "server-logs") as start:
        yield start


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory for the processes a test starts."""
    path = tmp_path / "work"
    path.mkdir()
    return path
