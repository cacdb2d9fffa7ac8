"""Fixtures for the HTTP contract tests: servers with varied settings, clients, users.

The top-level ``server`` fixture (tests/conftest.py) is the default app on both backends;
``make_server`` builds another app on the same database with some settings changed, and
``sqlite_server`` is an app that does not depend on the ``backend`` parametrisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from devicelink.core.models import User
from devicelink.runtime.settings import Settings
from devicelink.storage import upgrade_database
from tests.http.contract import Flow, MakeServer, RegisterClient, add_client, approved_flow
from tests.support.app import PUBLIC_URL, FakeClock, Server, running


@pytest.fixture
def make_server(settings: Settings, clock: FakeClock) -> MakeServer:
    """The test database, the test secret and PUBLIC_URL, with the given settings
    changed (and validated)."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[Server]:
        return running(Settings(**{**settings.model_dump(), **overrides}), clock)

    return make


@pytest.fixture
def standalone_sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of its own (migrated here: ``upgrade_database`` runs its
    own event loop, so not inside an async fixture)."""
    url = f"sqlite:///{tmp_path / 'standalone.db'}"
    upgrade_database(url)
    return url


@pytest.fixture
async def sqlite_server(
    standalone_sqlite_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Server]:
    """An app on its own migrated SQLite file, outside the backend parametrisation."""
    settings = Settings(
        database_url=standalone_sqlite_url,
        public_url=PUBLIC_URL,
        secret_key=SecretStr("standalone-secret-" + "y" * 40),
        data_dir=tmp_path / "data",
        auto_migrate=False,
        start_rate_limit="100000/minute",
    )
    async with running(settings, clock) as app:
        yield app


@pytest.fixture
def register_client() -> RegisterClient:
    return add_client


@pytest.fixture
async def alice(server: Server) -> User:
    return await server.add_user("alice")


@pytest.fixture
async def approved(server: Server, alice: User) -> Flow:
    """A flow of the default client, approved by ``alice``."""
    return await approved_flow(server, alice)


@pytest.fixture
async def bob(server: Server) -> User:
    return await server.add_user("bob")


@pytest.fixture
def web(sqlite_server: Server) -> Server:
    """For checks of the HTTP layer that never reach the database (media type, size,
    encoding, routing, request id): one backend is enough."""
    return sqlite_server
