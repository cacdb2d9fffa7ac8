"""require_api_key: a resource server's own routes protected by devicelink keys,
checked locally or through introspection, with a documented staleness bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI

from devicelink.core.models import Client
from devicelink.http.resource import IntrospectionVerifier, Principal, require_api_key
from devicelink.server import DeviceLink, Settings, create_app
from devicelink.service.admin import AdminService

pytestmark = pytest.mark.anyio
PUBLIC = "https://login.example.com"


async def issue_key(app: FastAPI, http: httpx.AsyncClient, username: str = "alice") -> str:
    runtime = DeviceLink.runtime_of(app)
    async with runtime.store.transaction() as tx:
        user = await tx.users.add(username, None, runtime.flows.now())
    flow = (await http.post("/oauth/device/authorize", data={})).json()
    await runtime.flows.approve(flow["user_code"], user_id=user.id)
    token = await http.post("/oauth/device/token", data={"device_code": flow["device_code"]})
    key: str = token.json()["access_token"]
    return key


def protected_app(settings: Settings, cache_seconds: float) -> FastAPI:
    """devicelink's own server with one more route of the application's."""
    app = create_app(settings)

    @app.get("/things")
    async def things(
        who: Principal = Depends(require_api_key(cache_seconds=cache_seconds)),
    ) -> dict[str, object]:
        return {"user": who.username, "client": who.client_id, "scope": list(who.scope)}

    return app


Local = tuple[FastAPI, httpx.AsyncClient]
"""devicelink with a route of the application's, and a client of it."""


@pytest.fixture
async def local(settings: Settings) -> AsyncIterator[Local]:
    app = protected_app(settings, cache_seconds=0.3)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
            yield app, http


async def test_a_valid_key_reaches_the_route(local: Local) -> None:
    app, http = local
    key = await issue_key(app, http)
    response = await http.get("/things", headers={"Authorization": f"Bearer {key}"})
    assert response.json() == {"user": "alice", "client": "devicelink-cli", "scope": ["api"]}


@pytest.mark.rfc("6750", "3.1")
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer dlk_nope", "Basic abc"])
async def test_no_valid_key_is_401_with_a_bearer_challenge(
    local: Local, header: str | None
) -> None:
    _, http = local
    headers = {"Authorization": header} if header else {}
    response = await http.get("/things", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_revoked_key_stops_working_within_the_cache_bound(local: Local) -> None:
    app, http = local
    key = await issue_key(app, http)
    auth = {"Authorization": f"Bearer {key}"}
    assert (await http.get("/things", headers=auth)).status_code == 200
    await http.post("/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"})
    # devicelink itself refuses it at once; the cached answer lasts at most the bound.
    assert (await http.get("/api/me", headers=auth)).status_code == 401
    await asyncio.sleep(0.35)
    assert (await http.get("/things", headers=auth)).status_code == 401


async def test_without_a_cache_a_disabled_user_is_refused_at_once(settings: Settings) -> None:
    app = protected_app(settings, cache_seconds=0)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http,
    ):
        key = await issue_key(app, http)
        auth = {"Authorization": f"Bearer {key}"}
        assert (await http.get("/things", headers=auth)).status_code == 200
        await AdminService(DeviceLink.runtime_of(app).store).disable_user("alice")
        assert (await http.get("/things", headers=auth)).status_code == 401


@pytest.mark.rfc("7662", "2.1")
async def test_a_remote_resource_server_checks_keys_by_introspection(settings: Settings) -> None:
    devicelink = create_app(settings)
    async with devicelink.router.lifespan_context(devicelink):
        runtime = DeviceLink.runtime_of(devicelink)
        async with runtime.store.transaction() as tx:
            await tx.clients.add(
                Client(
                    client_id="things-api",
                    name="Things API",
                    scopes=(),
                    key_lifetime=None,
                    confidential=True,
                    secret_hash=runtime.hasher.client_secret("things-secret"),
                    created_at=runtime.flows.now(),
                    resource_server=True,
                )
            )
        to_devicelink = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=devicelink), base_url=PUBLIC
        )
        verifier = IntrospectionVerifier(PUBLIC, "things-api", "things-secret", http=to_devicelink)
        resource = FastAPI()

        @resource.get("/things")
        async def things(
            who: Principal = Depends(require_api_key(verifier, cache_seconds=0)),
        ) -> dict[str, object]:
            return {"user": who.username}

        async with (
            to_devicelink,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=resource), base_url="https://things.example.com"
            ) as http,
        ):
            key = await issue_key(devicelink, to_devicelink)
            auth = {"Authorization": f"Bearer {key}"}
            assert (await http.get("/things", headers=auth)).json() == {"user": "alice"}
            await to_devicelink.post(
                "/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"}
            )
            assert (await http.get("/things", headers=auth)).status_code == 401

        wrong = IntrospectionVerifier(
            PUBLIC,
            "things-api",
            "wrong",
            http=httpx.AsyncClient(transport=httpx.ASGITransport(app=devicelink), base_url=PUBLIC),
        )
        refused = FastAPI()

        @refused.get("/things")
        async def refused_things(
            who: Principal = Depends(require_api_key(wrong)),
        ) -> dict[str, object]:
            return {}

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=refused), base_url="https://things.example.com"
        ) as http:
            response = await http.get("/things", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 503
        await wrong.aclose()
