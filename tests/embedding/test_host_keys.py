"""A host's keys are devicelink keys in every respect (issue 17, item 1; DESIGN.md
"Architecture"): a key the host's issuer minted in a shape of its own (``host_...``) is
looked up by its keyed hash and answered by ``/api/me`` (the thin route and the general
one; on PostgreSQL also the key cache), by introspection, by a resource server's
``require_api_key`` with an ``IntrospectionVerifier``, and revoked by ``/oauth/revoke``
in the host's own store (what ``logout`` and a re-login's revocation of the key it
replaced send).

Both databases, both routes of ``/api/me``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI

from devicelink.core.apikeys import KeyShape
from devicelink.http.resource import IntrospectionVerifier, Principal, require_api_key
from devicelink.runtime.settings import Settings
from tests.embedding.hosts import PUBLIC, RESOURCE_SERVER, Host, hosting
from tests.support.app import FakeClock
from tests.support.http import assert_active_key

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["fast_path", "general_path"])
async def host(
    request: pytest.FixtureRequest, settings: Settings, clock: FakeClock
) -> AsyncIterator[Host]:
    async with hosting(settings, clock, fast_path=request.param == "fast_path") as started:
        yield started


@pytest.mark.rfc("6750", "2.1")
async def test_api_me_answers_a_host_key(host: Host) -> None:
    key = await host.issue_key("alice")
    assert key.startswith("host_")
    for _ in range(3):  # looked up, then (PostgreSQL, fast path) remembered
        me = await host.me(key)
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "alice"
    # Still refused: another key of the host's shape, and garbage of no shape.
    assert (await host.me("host_" + "x" * 30)).status_code == 401
    assert (await host.me("acme_" + "x" * 30)).status_code == 401


@pytest.mark.rfc("7662", "2.2")
async def test_introspection_answers_a_host_key(host: Host) -> None:
    key = await host.issue_key("alice")
    auth = await host.add_resource_server()
    active = await host.http.post("/oauth/introspect", data={"token": key}, auth=auth)
    assert_active_key(active, "alice")
    await host.revoke(key)
    dead = await host.http.post("/oauth/introspect", data={"token": key}, auth=auth)
    assert dead.json() == {"active": False}


@pytest.mark.rfc("7009", "2.1")
async def test_revocation_revokes_a_host_key_in_the_hosts_store(host: Host) -> None:
    """What ``logout`` sends, and a re-login for the key it replaced: the host's key
    stops working in the host's own store and at devicelink, at once."""
    key = await host.issue_key("alice")
    assert (await host.me(key)).status_code == 200
    assert host.keys.owner_of(key) == "alice"
    revoked = await host.revoke(key)
    assert revoked.status_code == 200
    assert host.keys.revocations == ["hk1"]
    assert host.keys.owner_of(key) is None
    assert (await host.me(key)).status_code == 401
    assert await host.pending_revocations() == 0  # delivered at once, in this process
    # Revoking it again changes nothing and calls the host no more.
    assert (await host.revoke(key)).status_code == 200
    assert host.keys.revocations == ["hk1"]


async def test_a_relogin_revokes_the_host_key_it_replaced(host: Host) -> None:
    first = await host.issue_key("alice")
    flow = await host.approved_flow(await host.add_user("alice2"))
    second = (await host.poll(flow["device_code"])).json()["access_token"]
    # devicelink.client.commands.login: the replaced key is revoked (RFC 7009).
    await host.revoke(first)
    assert (await host.me(first)).status_code == 401
    assert (await host.me(second)).status_code == 200
    assert host.keys.revocations == ["hk1"]


async def test_a_resource_server_accepts_a_host_key_by_introspection(host: Host) -> None:
    key = await host.issue_key("alice")
    await host.add_resource_server()
    client_id, secret = RESOURCE_SERVER
    to_devicelink = httpx.AsyncClient(transport=httpx.ASGITransport(app=host.app), base_url=PUBLIC)
    verifier = IntrospectionVerifier(
        PUBLIC, client_id, secret, http=to_devicelink, key_shape=KeyShape(prefix="host_")
    )
    resource = FastAPI()

    @resource.get("/things")
    async def things(
        who: Principal = Depends(require_api_key(verifier, cache_seconds=0)),
    ) -> dict[str, object]:
        return {"user": who.username, "scope": list(who.scope)}

    async with (
        to_devicelink,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=resource), base_url="https://things.example.com"
        ) as http,
    ):
        auth = {"Authorization": f"Bearer {key}"}
        answer = await http.get("/things", headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"user": "alice", "scope": ["api"]}
        # A key not of the declared shape is refused without asking devicelink.
        other = await http.get("/things", headers={"Authorization": "Bearer acme_" + "x" * 30})
        assert other.status_code == 401
        await host.revoke(key)
        assert (await http.get("/things", headers=auth)).status_code == 401


async def test_require_api_key_in_the_hosts_process_accepts_a_host_key(host: Host) -> None:
    """The host's own routes, checked locally against this process's devicelink."""

    @host.app.get("/things")
    async def things(
        who: Principal = Depends(require_api_key(cache_seconds=0)),
    ) -> dict[str, object]:
        return {"user": who.username}

    key = await host.issue_key("alice")
    auth = {"Authorization": f"Bearer {key}"}
    assert (await host.http.get("/things", headers=auth)).json() == {"user": "alice"}
    other = await host.http.get("/things", headers={"Authorization": "Bearer acme_" + "x" * 30})
    assert other.status_code == 401
    await host.revoke(key)
    assert (await host.http.get("/things", headers=auth)).status_code == 401
