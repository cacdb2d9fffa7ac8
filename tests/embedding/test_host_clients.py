"""Clients registered from the host's code (``DeviceLink(settings, clients=[...])``),
created or brought in line at start-up, and RFC 8414 ``scopes_supported`` built from
the registered clients' real scopes (issue 17, item 6)."""

from __future__ import annotations

import httpx
import pytest

from devicelink.runtime.clients import ClientSpec
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.server import DeviceLink
from tests.embedding.hosting import PUBLIC_URL, embedded, host_app, issue_key, running

pytestmark = pytest.mark.anyio

ACME = ClientSpec("acme-cli", name="Acme CLI", scopes=("read", "write"))
RESOURCE_SECRET = "resource-server-secret-0123456789"


async def test_a_client_registered_from_code_starts_a_flow(settings: Settings) -> None:
    async with running(host_app(embedded(settings), clients=[ACME])) as host:
        host.sign_in("alice")
        flow, confirm = await host.confirm_page(client_id="acme-cli", scope="read")
        assert "<dd>Acme CLI</dd>" in confirm.text
        assert "read" in confirm.text

        refused = await host.http.post(
            "/auth/oauth/device/authorize", data={"client_id": "acme-cli", "scope": "api"}
        )
        assert refused.json()["error"] == "invalid_scope"  # only the scopes the code gave it

        key = await issue_key(host, client_id="acme-cli")
        me = await host.http.get("/auth/api/me", headers={"Authorization": f"Bearer {key}"})
        assert me.json()["client_id"] == "acme-cli"
        assert me.json()["scope"] == "read write"
        assert flow["verification_uri"] == f"{PUBLIC_URL}/oauth/device/verify"


@pytest.mark.rfc("8414", "2")
async def test_scopes_supported_are_the_registered_clients_scopes(settings: Settings) -> None:
    only_code = embedded(settings, default_client_id="")
    async with running(host_app(only_code, clients=[ACME])) as host:
        metadata = (await host.http.get("/auth/.well-known/oauth-authorization-server")).json()
    assert metadata["scopes_supported"] == ["read", "write"]

    async with running(host_app(embedded(settings), clients=[ACME])) as host:
        metadata = (await host.http.get("/auth/.well-known/oauth-authorization-server")).json()
    assert metadata["scopes_supported"] == ["api", "read", "write"]  # devicelink-cli: api


async def test_the_code_is_the_source_of_truth_at_each_start(settings: Settings) -> None:
    async with running(host_app(embedded(settings), clients=[ACME])) as host:
        first = await host.client("acme-cli")
    assert (first.name, first.scopes, first.key_lifetime) == (
        "Acme CLI",
        ("read", "write"),
        settings.key_lifetime,
    )

    changed = ClientSpec("acme-cli", name="Acme Terminal", scopes=("read",), key_lifetime=0)
    async with running(host_app(embedded(settings), clients=[changed])) as host:
        second = await host.client("acme-cli")
    assert (second.name, second.scopes, second.key_lifetime) == ("Acme Terminal", ("read",), None)
    assert second.created_at == first.created_at


@pytest.mark.rfc("7662", "4")
async def test_a_resource_server_from_code_introspects_and_no_other_client(
    settings: Settings,
) -> None:
    resource = ClientSpec(
        "billing-api", name="Billing", client_secret=RESOURCE_SECRET, resource_server=True
    )
    ci_bot = ClientSpec("ci-bot", name="CI", client_secret=RESOURCE_SECRET)
    async with running(host_app(embedded(settings), clients=[resource, ci_bot])) as host:
        key = await issue_key(host)
        anonymous = await host.http.post("/auth/oauth/introspect", data={"token": key})
        assert anonymous.status_code == 401
        answer = await host.http.post(
            "/auth/oauth/introspect",
            data={"token": key},
            auth=httpx.BasicAuth("billing-api", RESOURCE_SECRET),
        )
        assert answer.json()["active"] is True
        wrong = await host.http.post(
            "/auth/oauth/introspect",
            data={"token": key},
            auth=httpx.BasicAuth("billing-api", RESOURCE_SECRET + "x"),
        )
        assert wrong.status_code == 401
        not_marked = await host.http.post(
            "/auth/oauth/introspect",
            data={"token": key},
            auth=httpx.BasicAuth("ci-bot", RESOURCE_SECRET),
        )
        assert not_marked.status_code == 403
        assert not_marked.json()["error"] == "unauthorized_client"
    unmarked = ClientSpec("billing-api", name="Billing", client_secret=RESOURCE_SECRET)
    async with running(host_app(embedded(settings), clients=[unmarked])) as host:
        assert (await host.client("billing-api")).resource_server is False  # the code decides


async def test_a_spec_naming_the_default_client_wins(settings: Settings) -> None:
    mine = ClientSpec("devicelink-cli", name="Acme CLI", scopes=("api", "deploy"))
    async with running(host_app(embedded(settings), clients=[mine])) as host:
        default = await host.client("devicelink-cli")
    assert (default.name, default.scopes) == ("Acme CLI", ("api", "deploy"))


@pytest.mark.parametrize(
    ("specs", "problem"),
    [
        ([ClientSpec("acme cli")], "a client id is"),
        ([ClientSpec("acme", scopes=("read write",))], "scope tokens"),
        ([ClientSpec("acme", scopes="read")], "not a string"),  # type: ignore[arg-type]
        ([ClientSpec("acme", key_lifetime=-1)], "key_lifetime"),
        ([ClientSpec("acme", client_secret="short")], "client_secret"),
        ([ClientSpec("acme", resource_server=True)], "a resource server authenticates"),
        ([ClientSpec("acme"), ClientSpec("acme")], "registered twice"),
    ],
)
def test_malformed_specs_are_refused_when_the_component_is_built(
    settings: Settings, specs: list[ClientSpec], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        DeviceLink(embedded(settings), clients=specs)
