"""``require_api_key(scopes=...)``: a valid key without the scope a route needs gets 403
``insufficient_scope`` with the scope named in the challenge (RFC 6750 section 3.1),
checked in the process that runs devicelink and through introspection alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI

from devicelink.http.resource import IntrospectionVerifier, Principal, require_api_key
from devicelink.runtime.clients import ClientSpec
from devicelink.runtime.settings import Settings
from devicelink.server import create_app
from tests.embedding.hosting import HOST, PUBLIC_URL, Host, embedded, host_app, issue_key, running

pytestmark = pytest.mark.anyio

ACME = ClientSpec("acme-cli", name="Acme CLI", scopes=("api", "billing"))
RESOURCE = ClientSpec(
    "billing-api",
    name="Billing",
    client_secret="billing-api-secret-0123456789",
    resource_server=True,
)


def with_routes(app: FastAPI, verifier: IntrospectionVerifier | None = None) -> FastAPI:
    @app.get("/things")
    async def things(who: Principal = Depends(require_api_key(verifier))) -> dict[str, str]:
        return {"user": who.username}

    @app.get("/invoices")
    async def invoices(
        who: Principal = Depends(require_api_key(verifier, scopes=["billing"], cache_seconds=0)),
    ) -> dict[str, str]:
        return {"user": who.username, "scope": " ".join(who.scope)}

    return app


@pytest.fixture
async def host(settings: Settings) -> AsyncIterator[Host]:
    app = with_routes(host_app(embedded(settings), clients=[ACME, RESOURCE]))
    async with running(app) as started:
        yield started


def assert_insufficient_scope(response: httpx.Response) -> None:
    assert response.status_code == 403
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="billing"' in challenge


@pytest.mark.rfc("6750", "3.1")
async def test_a_key_without_the_scope_is_403_and_one_with_it_passes(host: Host) -> None:
    narrow = await issue_key(host, client_id="acme-cli", scope="api")
    wide = await issue_key(host, client_id="acme-cli", scope="api billing")

    refused = await host.http.get("/invoices", headers={"Authorization": f"Bearer {narrow}"})
    assert_insufficient_scope(refused)
    allowed = await host.http.get("/invoices", headers={"Authorization": f"Bearer {wide}"})
    assert allowed.status_code == 200
    assert allowed.json() == {"user": "alice", "scope": "api billing"}
    # A route that asks for no scope takes either.
    things = await host.http.get("/things", headers={"Authorization": f"Bearer {narrow}"})
    assert things.status_code == 200


@pytest.mark.rfc("6750", "3.1")
async def test_an_invalid_key_is_still_401_not_403(host: Host) -> None:
    response = await host.http.get("/invoices", headers={"Authorization": "Bearer dlk_nope"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.rfc("6750", "3.1")
async def test_through_introspection_the_same(host: Host) -> None:
    """Another service asks devicelink (RFC 7662) and refuses the same way."""
    narrow = await issue_key(host, client_id="acme-cli", scope="api")
    wide = await issue_key(host, client_id="acme-cli", scope="api billing")
    to_devicelink = httpx.AsyncClient(transport=httpx.ASGITransport(app=host.app), base_url=HOST)
    verify = IntrospectionVerifier(
        PUBLIC_URL, "billing-api", "billing-api-secret-0123456789", http=to_devicelink
    )
    billing = with_routes(FastAPI(), verify)
    transport = httpx.ASGITransport(app=billing)
    async with httpx.AsyncClient(transport=transport, base_url="https://billing.example") as http:
        refused = await http.get("/invoices", headers={"Authorization": f"Bearer {narrow}"})
        assert_insufficient_scope(refused)
        allowed = await http.get("/invoices", headers={"Authorization": f"Bearer {wide}"})
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["scope"] == "api billing"
    await verify.aclose()


@pytest.mark.rfc("6750", "3.1")
async def test_in_the_standalone_server_the_body_names_the_error_too(settings: Settings) -> None:
    app = with_routes(create_app(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            runtime = app.state.devicelink
            async with runtime.store.transaction() as tx:
                user = await tx.users.add("alice", None, runtime.flows.now())
            flow = (await http.post("/oauth/device/authorize", data={})).json()
            await runtime.flows.approve(flow["user_code"], user_id=user.id)
            token = await http.post(
                "/oauth/device/token", data={"device_code": flow["device_code"]}
            )
            key = token.json()["access_token"]
            refused = await http.get("/invoices", headers={"Authorization": f"Bearer {key}"})
    assert_insufficient_scope(refused)
    assert refused.json()["error"] == "insufficient_scope"


def test_scopes_as_one_string_is_a_mistake_caught_at_once() -> None:
    with pytest.raises(TypeError, match="collection of scope names"):
        require_api_key(scopes="billing")
