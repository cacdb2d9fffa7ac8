"""A host's key system plugged into devicelink, for the tests of issue 17: the example
host app's key store and issuer (``host_...`` keys of its own shape), devicelink
running in this process with it, and the steps that get a device its key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from examples.host_app.app import HostKeyIssuer, HostKeyStore
from fastapi import FastAPI

from devicelink.core.events import DeviceLinkEvent
from devicelink.core.models import Client
from devicelink.core.ports import KeyIssuer
from devicelink.runtime.settings import Settings
from devicelink.runtime.wiring import Runtime
from devicelink.server import DeviceLink, create_app
from tests.support.app import CLIENT_ADDRESS, FakeClock
from tests.support.http import token_form

PUBLIC = "https://login.example.com"
RESOURCE_SERVER = ("things-api", "things-secret")


@dataclass
class Host:
    """devicelink (``create_app``) with a host's key issuer, and a device's client."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: FakeClock
    keys: HostKeyStore
    events: list[DeviceLinkEvent] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        return DeviceLink.runtime_of(self.app)

    async def add_user(self, username: str = "alice") -> int:
        async with self.runtime.store.transaction() as tx:
            return (await tx.users.add(username, None, self.clock())).id

    async def approved_flow(self, user_id: int) -> dict[str, Any]:
        flow: dict[str, Any] = (await self.http.post("/oauth/device/authorize", data={})).json()
        assert await self.runtime.flows.approve(flow["user_code"], user_id=user_id) == "ok"
        return flow

    async def poll(self, device_code: str) -> httpx.Response:
        self.clock.advance(5)
        return await self.http.post("/oauth/device/token", data=token_form(device_code))

    async def issue_key(self, username: str = "alice") -> str:
        """A whole device flow for a new user ``username``: the key the device receives."""
        flow = await self.approved_flow(await self.add_user(username))
        token = await self.poll(flow["device_code"])
        assert token.status_code == 200, token.text
        key: str = token.json()["access_token"]
        return key

    async def me(self, key: str) -> httpx.Response:
        return await self.http.get("/api/me", headers={"Authorization": f"Bearer {key}"})

    async def revoke(self, key: str) -> httpx.Response:
        return await self.http.post(
            "/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"}
        )

    async def add_resource_server(self) -> httpx.BasicAuth:
        """A confidential client that may introspect keys; its credentials."""
        client_id, secret = RESOURCE_SERVER
        async with self.runtime.store.transaction() as tx:
            await tx.clients.add(
                Client(
                    client_id=client_id,
                    name="Things API",
                    scopes=(),
                    key_lifetime=None,
                    confidential=True,
                    secret_hash=self.runtime.hasher.client_secret(secret),
                    created_at=self.clock(),
                    resource_server=True,
                )
            )
        return httpx.BasicAuth(client_id, secret)

    async def pending_revocations(self) -> int:
        async with self.runtime.store.transaction() as tx:
            return await tx.issuer_revocations.count()


@asynccontextmanager
async def hosting(
    settings: Settings,
    clock: FakeClock,
    *,
    issuer: KeyIssuer | None = None,
    keys: HostKeyStore | None = None,
    **overrides: Any,
) -> AsyncIterator[Host]:
    """devicelink in this process with the host's issuer (by default the example's, on
    ``keys``), drained only at start-up unless ``overrides`` say otherwise."""
    keys = keys if keys is not None else HostKeyStore()
    events: list[DeviceLinkEvent] = []
    configured = settings.model_copy(update={"revocation_drain_interval": 0, **overrides})
    app = create_app(
        configured,
        key_issuer=issuer if issuer is not None else HostKeyIssuer(keys),
        clock=clock,
        on_event=events.append,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=CLIENT_ADDRESS)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
            yield Host(app=app, http=http, clock=clock, keys=keys, events=events)
