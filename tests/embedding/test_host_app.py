"""The embedding example: a host FastAPI app with its own users and API keys mounts
devicelink under /auth; a device signs in through it and receives the host's key."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from examples.host_app.app import HostKeyStore, build_app

from devicelink.server import Settings
from tests.support.http import decision

pytestmark = pytest.mark.anyio

PUBLIC = "https://app.example.com"


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    assert match, page.text[:400]
    return match.group(1)


@pytest.fixture
async def host(tmp_path: Path, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    embedded = settings.model_copy(update={"public_url": f"{PUBLIC}/auth"})
    app = build_app(embedded)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC) as http:
            yield http


def key_store(http: httpx.AsyncClient) -> HostKeyStore:
    return http._transport.app.state.host_keys  # type: ignore[attr-defined,no-any-return]


async def test_device_gets_the_hosts_key_and_revoking_the_device_revokes_it_there(
    host: httpx.AsyncClient,
) -> None:
    metadata = (await host.get("/auth/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == f"{PUBLIC}/auth"
    assert metadata["token_endpoint"] == f"{PUBLIC}/auth/oauth/token"  # both grants (issue 12)

    flow = (await host.post("/auth/oauth/device/authorize", data={})).json()
    assert flow["verification_uri"] == f"{PUBLIC}/auth/oauth/device/verify"

    # The user is signed in to the host: devicelink asks for no second sign-in.
    await host.post("/host/login", params={"username": "alice"})
    code_page = await host.get(flow["verification_uri_complete"])
    assert code_page.status_code == 200, code_page.headers.get("location")
    assert 'action="/auth/oauth/device/verify"' in code_page.text
    confirm = await host.post(
        "/auth/oauth/device/verify",
        data={"user_code": flow["user_code"], "csrf_token": csrf_of(code_page)},
    )
    assert "Is this your device?" in confirm.text
    assert "alice" in confirm.text
    approved = await host.post("/auth/oauth/device/decide", data=decision(confirm, "approve"))
    assert "Device approved" in approved.text

    token = await host.post(
        "/auth/oauth/device/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": flow["device_code"],
        },
    )
    assert token.status_code == 200, token.text
    key = token.json()["access_token"]
    assert key.startswith("host_")  # minted by the host's own key system
    assert 80 * 86_400 < token.json()["expires_in"] <= 90 * 86_400
    auth = {"Authorization": f"Bearer {key}"}
    assert (await host.get("/host/whoami", headers=auth)).json() == {"user": "alice"}

    # The user revokes the device on devicelink's page: the host's revocation runs.
    devices = await host.get("/auth/devices")
    assert "devicelink CLI" in devices.text
    revoked = await host.post(
        "/auth/devices", data={"revoke": "all", "csrf_token": csrf_of(devices)}
    )
    assert "Revoked 1 device" in revoked.text
    assert key_store(host).revocations == ["hk1"]
    assert (await host.get("/host/whoami", headers=auth)).status_code == 401


async def test_signing_out_of_the_host_signs_out_of_devicelink(host: httpx.AsyncClient) -> None:
    await host.post("/host/login", params={"username": "alice"})
    assert (await host.get("/auth/oauth/device/verify")).status_code == 200
    host.cookies.delete("host_session")
    page = await host.get("/auth/oauth/device/verify")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=%2Fauth%2F")


async def test_a_different_host_user_is_not_the_previous_one(host: httpx.AsyncClient) -> None:
    await host.post("/host/login", params={"username": "alice"})
    assert "alice" in (await host.get("/auth/oauth/device/verify")).text
    await host.post("/host/login", params={"username": "bob"})
    page = await host.get("/auth/oauth/device/verify")
    assert "bob" in page.text
    assert ">alice<" not in page.text


async def test_host_routes_are_left_alone(host: httpx.AsyncClient) -> None:
    """devicelink's error handling and headers stay on its own routes."""
    response = await host.get("/host/whoami")
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid API key"}
    assert "X-Frame-Options" not in response.headers
    ours = await host.post("/auth/oauth/device/token", data={"device_code": "x"})
    assert ours.json()["error"] == "invalid_grant"
    assert ours.headers["X-Frame-Options"] == "DENY"
