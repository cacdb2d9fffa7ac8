"""A small host application for the embedding tests: its own pages at ``/``, ``/login``
and ``/logout``, its own sign-in (a cookie naming the user), and devicelink mounted at
``/auth`` with whatever :class:`DeviceLink` options the test gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from devicelink.core.models import Client, Identity
from devicelink.runtime.wiring import Runtime
from devicelink.server import DeviceLink, Settings
from tests.support.http import csrf_of

HOST = "https://app.example.com"
PUBLIC_URL = f"{HOST}/auth"
HOST_USER_COOKIE = "host_user"
FAILING_USER = "resolver-fails"
"""A host user whose lookup raises, as a host's broken session store would."""


async def host_user(request: Request) -> Identity | None:
    name = request.cookies.get(HOST_USER_COOKIE)
    if name == FAILING_USER:
        raise RuntimeError("the host's session store is down")
    return Identity(provider="host", subject=name, username=name) if name else None


def host_app(settings: Settings, **options: Any) -> FastAPI:
    """The host, with devicelink at the path of ``settings.public_url``."""
    devicelink = DeviceLink(settings, resolve_user=host_user, **options)
    app = FastAPI(lifespan=devicelink.lifespan)
    app.include_router(devicelink.router, prefix=devicelink.prefix)

    @app.get("/")
    async def home() -> PlainTextResponse:
        return PlainTextResponse("host home")

    @app.get("/login")
    async def login() -> PlainTextResponse:
        return PlainTextResponse("host sign-in")

    @app.post("/logout")
    async def logout() -> PlainTextResponse:
        return PlainTextResponse("host sign-out")

    return app


def embedded(settings: Settings, **updates: Any) -> Settings:
    """The test's settings with devicelink under ``/auth`` of the host."""
    return settings.model_copy(update={"public_url": PUBLIC_URL, **updates})


@dataclass
class Host:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        return DeviceLink.runtime_of(self.app)

    async def client(self, client_id: str) -> Client:
        """The stored client ``client_id`` (which must exist)."""
        async with self.runtime.store.transaction() as tx:
            client = await tx.clients.get(client_id)
        assert client is not None, f"no client {client_id!r}"
        return client

    def sign_in(self, username: str = "alice") -> None:
        """Signed in to the host (devicelink believes the host's resolver)."""
        self.http.cookies.set(HOST_USER_COOKIE, username)

    async def confirm_page(self, **form: str) -> tuple[dict[str, Any], httpx.Response]:
        """A device's flow started with ``form``, its code typed by the signed-in user."""
        flow = (await self.http.post("/auth/oauth/device/authorize", data=form)).json()
        assert "user_code" in flow, flow
        page = await self.http.get("/auth/oauth/device/verify")
        confirm = await self.http.post(
            "/auth/oauth/device/verify",
            data={"user_code": flow["user_code"], "csrf_token": csrf_of(page)},
        )
        return flow, confirm


@asynccontextmanager
async def running(app: FastAPI, base_url: str = HOST) -> AsyncIterator[Host]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield Host(app, http)


async def issue_key(host: Host, *, username: str = "alice", **form: str) -> str:
    """A key issued through the device flow for ``username`` (approved by the service)."""
    runtime = host.runtime
    async with runtime.store.transaction() as tx:
        user = await tx.users.get_by_username(username)
        if user is None:
            user = await tx.users.add(username, None, runtime.flows.now())
    flow = (await host.http.post("/auth/oauth/device/authorize", data=form)).json()
    await runtime.flows.approve(flow["user_code"], user_id=user.id)
    token = await host.http.post(
        "/auth/oauth/device/token", data={"device_code": flow["device_code"], **form}
    )
    assert token.status_code == 200, token.text
    key: str = token.json()["access_token"]
    return key
