"""Shared fixtures: real SQLite and PostgreSQL databases, a movable clock, the app.

PostgreSQL is required: the suite fails (it does not skip) when the server at
``DEVICELINK_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
cannot be reached. Deselect with ``-m "not postgres"`` to run without it on purpose.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
import time_machine
from fastapi import FastAPI

from devicelink.core.models import User
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.server.app import create_app
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database

# At the end of the session no code or key the tests handled may be found in clear in the
# logs or the databases (tests/secrets_audit.py).
pytest_plugins = ["secrets_audit"]

ADMIN_POSTGRES_URL = os.environ.get(
    "DEVICELINK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PUBLIC_URL = "https://login.example.com"
TEST_SECRET = "test-secret-" + "x" * 40
TABLES = (
    "audit_events",
    "browser_sessions",
    "api_keys",
    "device_authorizations",
    "users",
    "clients",
)

RFC_CLAUSES_REQUIRED = {
    ("8628", "3.1"),
    ("8628", "3.2"),
    ("8628", "3.3"),
    ("8628", "3.4"),
    ("8628", "3.5"),
    ("8628", "6.1"),
}


# --- the clock moved: no test may depend on the day it runs ---------------------------

CLOCK_SHIFT_ENV = "DEVICELINK_TEST_CLOCK_SHIFT_DAYS"


def pytest_configure(config: pytest.Config) -> None:
    """With ``DEVICELINK_TEST_CLOCK_SHIFT_DAYS=N`` the whole run happens N days from now
    (``scripts/test`` runs the unit and client tests again a year ahead): a test that
    reads the real date instead of passing ``now`` fails there."""
    days = os.environ.get(CLOCK_SHIFT_ENV)
    if days:
        traveller = time_machine.travel(timedelta(days=int(days)), tick=True)
        traveller.start()
        config.add_cleanup(traveller.stop)


# --- markers and the table of RFC clauses covered --------------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    covered: dict[tuple[str, str], int] = {}
    for item in terminalreporter.stats.get("passed", []):
        for mark in getattr(item, "rfc_marks", ()):
            covered[mark] = covered.get(mark, 0) + 1
    if covered:
        terminalreporter.section("RFC clauses checked by passing tests")
        for (rfc, section), count in sorted(covered.items()):
            terminalreporter.write_line(f"RFC {rfc} section {section:<8} {count:>4} tests")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    report.rfc_marks = [tuple(m.args) for m in item.iter_markers("rfc")]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "backend" in getattr(item, "fixturenames", ()) and "[postgres" in item.nodeid:
            item.add_marker(pytest.mark.postgres)


# --- async ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


# --- clock ---------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves; the app and services read it instead of the wall clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# --- databases -----------------------------------------------------------------------


@dataclass
class Database:
    backend: str
    url: str

    async def truncate(self) -> None:
        engine = create_engine_for_url(self.url)
        try:
            async with engine.begin() as conn:
                # DELETE, children first: on tables this small it is much faster than
                # TRUNCATE, which PostgreSQL makes rewrite every table.
                for table in TABLES:
                    await conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608
        finally:
            await engine.dispose()


def _admin_dsn() -> str:
    return ADMIN_POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _pg_admin(statement: str) -> None:
    try:
        conn = await asyncpg.connect(_admin_dsn(), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is required for this suite and {ADMIN_POSTGRES_URL} is unreachable: "
            f"{exc}. Start it, set DEVICELINK_TEST_POSTGRES, or deselect with -m 'not postgres'."
        ) from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session; dropped afterwards."""
    name = f"devicelink_test_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = _admin_dsn().rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        upgrade_database(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "devicelink.db"
        shutil.copyfile(template, path)
        yield Database("sqlite", f"sqlite:///{path}")
        return
    url: str = request.getfixturevalue("postgres_database")
    db = Database("postgres", url)
    asyncio.run(db.truncate())
    yield db


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
        secret_key=TEST_SECRET,
        data_dir=tmp_path / "data",
        auto_migrate=False,
    )


@dataclass
class Server:
    """An app in this process, reached through httpx's ASGI transport."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: FakeClock

    @property
    def runtime(self) -> Runtime:
        return self.app.state.devicelink  # type: ignore[no-any-return]

    async def add_user(self, username: str = "alice") -> User:
        async with self.runtime.store.transaction() as tx:
            return await tx.users.add(username, None, self.clock())

    async def start_flow(self, **form: str) -> dict[str, object]:
        form.setdefault("client_id", "devicelink-cli")
        response = await self.http.post("/oauth/device/authorize", data=form)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def poll(self, device_code: str, **form: str) -> httpx.Response:
        form.setdefault("client_id", "devicelink-cli")
        form.setdefault("grant_type", "urn:ietf:params:oauth:grant-type:device_code")
        return await self.http.post(
            "/oauth/device/token", data={"device_code": device_code, **form}
        )


@pytest.fixture
async def server(settings: Settings, clock: FakeClock) -> AsyncIterator[Server]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 51000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Server(app=app, http=http, clock=clock)
