"""Mounted in a host application, devicelink takes only what it is given: ``/metrics``
and its OpenAPI entries are opt-in, and it never takes over the host's ``/``, ``/login``
or ``/logout`` (an empty prefix is refused). The standalone server is unchanged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server import DeviceLink, create_app
from tests.embedding.hosting import embedded, host_app, running

pytestmark = pytest.mark.anyio


def devicelink_paths(schema: dict[str, Any]) -> set[str]:
    return {path for path in schema.get("paths", {}) if path.startswith("/auth/")}


async def test_embedded_by_default_no_metrics_and_no_schema_entries(settings: Settings) -> None:
    async with running(host_app(embedded(settings))) as host:
        assert (await host.http.get("/auth/metrics")).status_code == 404
        schema = (await host.http.get("/openapi.json")).json()  # the host's own schema
        assert devicelink_paths(schema) == set()
        assert set(schema["paths"]) == {"/", "/login", "/logout"}
        # Everything else is served as before.
        metadata = await host.http.get("/auth/.well-known/oauth-authorization-server")
        assert metadata.status_code == 200
        assert (await host.http.get("/auth/healthz")).status_code == 200


async def test_embedded_opt_in_to_both(settings: Settings) -> None:
    opted_in = embedded(settings, metrics=True, openapi=True)
    async with running(host_app(opted_in)) as host:
        metrics = await host.http.get("/auth/metrics")
        assert metrics.status_code == 200
        assert "devicelink_" in metrics.text
        paths = devicelink_paths((await host.http.get("/openapi.json")).json())
    assert {"/auth/oauth/device/authorize", "/auth/oauth/device/token", "/auth/metrics"} <= paths
    assert not any("verify" in path or "login" in path for path in paths)  # pages never


async def test_embedded_metrics_without_schema_entries(settings: Settings) -> None:
    async with running(host_app(embedded(settings, metrics=True))) as host:
        assert (await host.http.get("/auth/metrics")).status_code == 200
        assert devicelink_paths((await host.http.get("/openapi.json")).json()) == set()


@pytest.mark.parametrize("openapi", [None, False])
async def test_the_standalone_server_is_unchanged(settings: Settings, openapi: bool | None) -> None:
    app = create_app(settings.model_copy(update={"openapi": openapi}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.issuer) as http:
            assert (await http.get("/metrics")).status_code == 200
            schema = await http.get("/openapi.json")
            if openapi is None:  # on by default, as before
                assert "/oauth/device/token" in schema.json()["paths"]
                assert "/metrics" in schema.json()["paths"]
            else:
                assert schema.status_code == 404


@pytest.mark.parametrize("public_url", ["https://app.example.com", "https://app.example.com/"])
def test_an_empty_prefix_is_refused_when_embedded(settings: Settings, public_url: str) -> None:
    at_the_root = settings.model_copy(update={"public_url": public_url.rstrip("/")})
    with pytest.raises(ConfigurationError) as refused:
        DeviceLink(at_the_root)
    message = str(refused.value)
    assert "DEVICELINK_PUBLIC_URL" in message
    assert "/login" in message
    assert "https://app.example.com/auth" in message  # what to set instead


def test_no_public_url_is_refused_when_embedded(settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match="not set"):
        DeviceLink(settings.model_copy(update={"public_url": None}))


async def test_the_hosts_own_pages_stay_the_hosts(settings: Settings) -> None:
    async with running(host_app(embedded(settings))) as host:
        assert (await host.http.get("/")).text == "host home"
        assert (await host.http.get("/login")).text == "host sign-in"
        assert (await host.http.post("/logout")).text == "host sign-out"
        # devicelink's own are under its prefix.
        home = await host.http.get("/auth/")
        assert home.status_code == 303
        assert home.headers["location"] == "/auth/oauth/device/verify"
        assert (await host.http.get("/auth/login")).status_code in (200, 303)
