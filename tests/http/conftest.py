"""Fixtures for the HTTP contract tests: servers with varied settings, clients, flows.

The top-level ``server`` fixture (tests/conftest.py) is the default app on both backends;
``make_server`` builds another app on the same database with some settings changed, and
``sqlite_server`` is an app that does not depend on the ``backend`` parametrisation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from devicelink.core.models import Client, User
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.server.app import create_app
from devicelink.storage import upgrade_database

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CLIENT_ADDRESS = ("203.0.113.7", 51000)


@dataclass
class App:
    """An app in this process reached through httpx's ASGI transport (same interface as
    the top-level ``Server``)."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: Any

    @property
    def runtime(self) -> Runtime:
        return self.app.state.devicelink  # type: ignore[no-any-return]

    async def add_user(self, username: str = "alice") -> User:
        async with self.runtime.store.transaction() as tx:
            return await tx.users.add(username, None, self.clock())

    async def start_flow(self, **form: str) -> dict[str, Any]:
        form.setdefault("client_id", "devicelink-cli")
        response = await self.http.post("/oauth/device/authorize", data=form)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def poll(self, device_code: str, **form: str) -> httpx.Response:
        form.setdefault("client_id", "devicelink-cli")
        form.setdefault("grant_type", DEVICE_GRANT)
        return await self.http.post(
            "/oauth/device/token", data={"device_code": device_code, **form}
        )


@asynccontextmanager
async def running(settings: Settings, clock: Any) -> AsyncIterator[App]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield App(app=app, http=http, clock=clock)


MakeServer = Callable[..., AbstractAsyncContextManager[App]]


@pytest.fixture
def make_server(settings: Settings, clock: Any) -> MakeServer:
    """``async with make_server(default_client_id=None) as srv:`` -- the test database,
    the test secret and PUBLIC_URL, with the given settings changed (and validated)."""

    def make(**overrides: Any) -> AbstractAsyncContextManager[App]:
        values = settings.model_dump()
        values.update(overrides)
        return running(Settings(**values), clock)

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
    standalone_sqlite_url: str, tmp_path: Path, clock: Any
) -> AsyncIterator[App]:
    """An app on its own migrated SQLite file, outside the backend parametrisation."""
    settings = Settings(
        database_url=standalone_sqlite_url,
        public_url="https://login.example.com",
        secret_key="standalone-secret-" + "y" * 40,
        data_dir=tmp_path / "data",
        auto_migrate=False,
        start_rate_limit="100000/minute",
    )
    async with running(settings, clock) as app:
        yield app


async def add_client(srv: Any, client: Client) -> Client:
    async with srv.runtime.store.transaction() as tx:
        await tx.clients.add(client)
    return client


@pytest.fixture
def register_client() -> Callable[..., Any]:
    """``await register_client(server, "ci-bot", secret="s3cret", key_lifetime=None)``."""

    async def register(
        srv: Any,
        client_id: str,
        *,
        secret: str | None = None,
        scopes: tuple[str, ...] = ("api",),
        key_lifetime: int | None = 30 * 86_400,
    ) -> Client:
        return await add_client(
            srv,
            Client(
                client_id=client_id,
                name=f"{client_id} (test)",
                scopes=scopes,
                key_lifetime=key_lifetime,
                confidential=secret is not None,
                secret_hash=srv.runtime.hasher.client_secret(secret) if secret else None,
                created_at=srv.clock(),
            ),
        )

    return register


@pytest.fixture
async def alice(server: Any) -> User:
    return await server.add_user("alice")


@pytest.fixture
def web(sqlite_server: App) -> App:
    """For checks of the HTTP layer that never reach the database (media type, size,
    encoding, routing, request id): one backend is enough."""
    return sqlite_server
