"""Fixtures of the operations tests: a fresh PostgreSQL database migrated with
``devicelink db upgrade``, a Redis key prefix of their own. Servers are started with the
``launch`` fixture of tests/conftest.py."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres_database
from tests.support.processes import clean_env, run_devicelink


@pytest.fixture
def postgres_url(workdir: Path) -> Iterator[str]:
    """A new database, migrated by the operator's command."""
    with fresh_postgres_database("devicelink_ops", migrate=False) as url:
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
    return os.environ.get("DEVICELINK_TEST_REDIS", "redis://127.0.0.1:6379")
