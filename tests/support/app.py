"""The app in this process, reached through httpx's ASGI transport, with a clock the
test moves instead of the wall clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from devicelink.core.models import User
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.server.app import create_app
from tests.support.http import arun, poll, start_flow

PUBLIC_URL = "https://login.example.com"
TEST_SECRET = "test-secret-" + "x" * 40
CLIENT_ADDRESS = ("203.0.113.7", 51000)


class FakeClock:
    """A clock the test moves; the app and services read it instead of the wall clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Server:
    """An app in this process and a device's HTTP client to it."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: FakeClock

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.devicelink
        return runtime

    async def add_user(self, username: str = "alice") -> User:
        async with self.runtime.store.transaction() as tx:
            return await tx.users.add(username, None, self.clock())

    async def start_flow(self, **form: str) -> dict[str, Any]:
        return await arun(self.http, start_flow(**form))

    async def poll(self, device_code: str, **form: str) -> httpx.Response:
        return await arun(self.http, poll(device_code, **form))


@asynccontextmanager
async def running(
    settings: Settings, clock: FakeClock, client: tuple[str, int] = CLIENT_ADDRESS
) -> AsyncIterator[Server]:
    """``create_app(settings)`` through its lifespan, seen from the address ``client``."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Server(app=app, http=http, clock=clock)
