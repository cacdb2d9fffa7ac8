"""Fixtures of the operations tests: ``devicelink serve`` processes, a fresh PostgreSQL
database migrated with ``devicelink db upgrade``, a Redis key prefix of their own."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from ops_support import (
    REDIS_URL,
    RUNNING,
    Launcher,
    clean_env,
    fresh_postgres_database,
    launcher,
    run_devicelink,
)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """``launch(*args, env=..., cwd=...)`` starts a server, stopped at teardown."""
    with launcher(tmp_path / "server-logs") as start:
        yield start


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def postgres_url(workdir: Path) -> Iterator[str]:
    """A new database, migrated by the operator's command."""
    with fresh_postgres_database() as url:
        result = run_devicelink(
            "db", "upgrade", env=clean_env(DEVICELINK_DATABASE_URL=url), cwd=workdir
        )
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
        yield url


@pytest.fixture
def redis_prefix() -> str:
    return f"devicelink-ops-{secrets.token_hex(6)}"


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in list(RUNNING):
            report.sections.append(
                (f"devicelink serve on port {server.port} ({report.when})", server.logs())
            )
