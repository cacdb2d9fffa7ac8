"""Key lifecycle: introspection (RFC 7662), disabled users, last use, the audit log."""

from __future__ import annotations

import base64
import re
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from devicelink.core.models import AuditKind, User
from devicelink.runtime.settings import Settings
from devicelink.service.admin import AdminService
from devicelink.service.flows import Actor
from devicelink.service.keys import use_record_interval
from tests.http.contract import add_client, assert_oauth_error, basic, issue_key, me
from tests.support.app import Server
from tests.support.http import assert_active_key
from tests.support.processes import run_operator

pytestmark = pytest.mark.anyio

RESOURCE_SECRET = "resource-server-secret"


async def add_resource_server(server: Server) -> dict[str, str]:
    await add_client(
        server,
        "billing-api",
        secret=RESOURCE_SECRET,
        scopes=(),
        key_lifetime=None,
        resource_server=True,
    )
    return basic("billing-api", RESOURCE_SECRET)


async def signed_in_device(server: Server, username: str = "alice") -> tuple[User, str]:
    """A user and the key of the device they signed in."""
    user = await server.add_user(username)
    return user, await issue_key(server, user)


# --- introspection ---------------------------------------------------------------------


@pytest.mark.rfc("7662", "2.2")
async def test_introspection_describes_an_active_key(server: Server) -> None:
    auth = await add_resource_server(server)
    _, key = await signed_in_device(server)
    response = await server.http.post("/oauth/introspect", data={"token": key}, headers=auth)
    body = assert_active_key(response, "alice")
    assert body["scope"] == "api"
    assert body["exp"] - body["iat"] == 30 * 86_400
    assert body["iat"] == int(server.clock().timestamp())


@pytest.mark.rfc("7662", "2.2")
@pytest.mark.parametrize("state", ["revoked", "expired", "unknown", "malformed", "disabled"])
async def test_introspection_of_a_dead_key_says_only_inactive(server: Server, state: str) -> None:
    auth = await add_resource_server(server)
    _, key = await signed_in_device(server)
    if state == "revoked":
        await server.http.post("/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"})
    elif state == "expired":
        server.clock.advance(30 * 86_400)
    elif state == "unknown":
        key = key[:-10] + "A" * 10
    elif state == "malformed":
        key = "hello"
    else:
        await AdminService(server.runtime.store, server.clock).disable_user("alice")
    response = await server.http.post("/oauth/introspect", data={"token": key}, headers=auth)
    assert response.status_code == 200
    assert response.json() == {"active": False}


@pytest.mark.rfc("7662", "2.1")
@pytest.mark.parametrize(
    ("headers", "form"),
    [
        ({}, {}),
        ({}, {"client_id": "devicelink-cli"}),
        ({"Authorization": "Basic " + base64.b64encode(b"billing-api:wrong").decode()}, {}),
    ],
    ids=["no credentials", "public client", "wrong secret"],
)
async def test_introspection_needs_a_confidential_clients_credentials(
    server: Server, headers: dict[str, str], form: dict[str, str]
) -> None:
    await add_resource_server(server)
    _, key = await signed_in_device(server)
    response = await server.http.post(
        "/oauth/introspect", data={"token": key, **form}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in response.headers


@pytest.mark.rfc("7662", "4")
async def test_introspection_refuses_a_confidential_client_not_marked_a_resource_server(
    server: Server,
) -> None:
    await add_client(server, "ci-bot", secret="ci-bot-secret-0123456789")
    _, key = await signed_in_device(server)
    response = await server.http.post(
        "/oauth/introspect",
        data={"token": key},
        headers=basic("ci-bot", "ci-bot-secret-0123456789"),
    )
    body = assert_oauth_error(response, 403, "unauthorized_client")
    assert set(body) == {"error", "error_description"}  # nothing about the key
    assert "WWW-Authenticate" not in response.headers  # its credentials were right
    wrong = await server.http.post(
        "/oauth/introspect", data={"token": key}, headers=basic("ci-bot", "not-its-secret")
    )
    assert_oauth_error(wrong, 401, "invalid_client")  # authenticated first, then authorised


@pytest.mark.rfc("7662", "4")
async def test_an_operator_marks_a_resource_server_when_adding_it_or_later(
    server: Server, settings: Settings, tmp_path: Path
) -> None:
    _, key = await signed_in_device(server)

    async def operator(*args: str) -> CompletedProcess[str]:
        return await run_operator(settings.effective_database_url(), tmp_path, *args)

    async def introspect(client_id: str, secret: str) -> int:
        response = await server.http.post(
            "/oauth/introspect", data={"token": key}, headers=basic(client_id, secret)
        )
        return response.status_code

    def secret_of(done: CompletedProcess[str]) -> str:
        assert done.returncode == 0, done.stderr
        printed: list[str] = re.findall(r"^client_secret: (\S+)$", done.stdout, flags=re.M)
        (secret,) = printed
        return secret

    marked = secret_of(
        await operator("clients", "add", "things", "--confidential", "--resource-server")
    )
    assert await introspect("things", marked) == 200
    later = secret_of(await operator("clients", "add", "billing", "--confidential"))
    assert await introspect("billing", later) == 403
    assert (await operator("clients", "edit", "billing", "--resource-server")).returncode == 0
    assert await introspect("billing", later) == 200
    assert (await operator("clients", "edit", "billing", "--no-resource-server")).returncode == 0
    assert await introspect("billing", later) == 403

    public = await operator("clients", "add", "cli", "--resource-server")
    assert public.returncode == 2
    assert "--confidential" in public.stderr
    unknown = await operator("clients", "edit", "nobody", "--resource-server")
    assert unknown.returncode == 2
    assert "no client 'nobody'" in unknown.stderr


async def test_metadata_names_the_introspection_endpoint(server: Server) -> None:
    metadata = (await server.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["introspection_endpoint"] == "https://login.example.com/oauth/introspect"


# --- disabled users ----------------------------------------------------------------------


async def test_a_disabled_users_keys_stop_working_at_once(server: Server) -> None:
    _, key = await signed_in_device(server)
    assert (await me(server, key)).status_code == 200
    assert await AdminService(server.runtime.store, server.clock).disable_user("alice")
    assert (await me(server, key)).status_code == 401


async def test_an_approval_by_a_since_disabled_user_cannot_be_redeemed(server: Server) -> None:
    user = await server.add_user()
    flow = await server.start_flow()
    await server.runtime.flows.approve(flow["user_code"], user_id=user.id)
    await AdminService(server.runtime.store, server.clock).disable_user("alice")
    server.clock.advance(5)
    response = await server.poll(flow["device_code"])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    async with server.runtime.store.transaction() as tx:
        assert await tx.api_keys.list_for_user(user.id) == []


# --- last use ------------------------------------------------------------------------------


async def test_last_use_is_written_at_most_once_a_minute(server: Server) -> None:
    user, key = await signed_in_device(server)

    async def last_used() -> tuple[datetime | None, str | None]:
        async with server.runtime.store.transaction() as tx:
            (stored,) = await tx.api_keys.list_for_user(user.id)
        return stored.last_used_at, stored.last_used_ip

    first_use = server.clock()
    assert (await me(server, key)).status_code == 200
    assert await last_used() == (first_use, "203.0.113.7")
    async with server.runtime.store.transaction() as tx:
        (stored,) = await tx.api_keys.list_for_user(user.id)
    interval = use_record_interval(stored.id).total_seconds()
    assert 45 <= interval <= 60  # at most once a minute, spread over 15 s by key
    server.clock.advance(interval - 1)
    assert (await me(server, key)).status_code == 200
    assert (await last_used())[0] == first_use
    server.clock.advance(2)
    assert (await me(server, key)).status_code == 200
    assert (await last_used())[0] == server.clock()


# --- audit ---------------------------------------------------------------------------------


async def test_a_full_flow_leaves_its_audit_trail_in_order_without_secrets(server: Server) -> None:
    user = await server.add_user()
    flow = await server.start_flow()
    browser = Actor(user_id=user.id, username="alice", ip="198.51.100.9", user_agent="Firefox")
    await server.runtime.flows.review("BCDF-GHJK", actor=browser)
    await server.runtime.flows.approve(flow["user_code"], user_id=user.id, actor=browser)
    key = (await server.poll(flow["device_code"])).json()["access_token"]
    assert (await me(server, key)).status_code == 200
    assert (await me(server, key)).status_code == 200
    await server.http.post("/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"})
    await AdminService(server.runtime.store, server.clock).disable_user("alice")

    events = await AdminService(server.runtime.store).audit()
    assert [event.kind for event in events] == [
        AuditKind.FLOW_STARTED,
        AuditKind.WRONG_CODE,
        AuditKind.APPROVED,
        AuditKind.KEY_ISSUED,
        AuditKind.KEY_FIRST_USED,
        AuditKind.REVOKED,
        AuditKind.USER_DISABLED,
    ]
    started, wrong, approved, issued, used, revoked, _ = events
    assert started.ip == "203.0.113.7"
    assert started.client_id == "devicelink-cli"
    assert wrong.username == "alice"
    assert wrong.ip == "198.51.100.9"
    assert approved.user_id == user.id
    assert approved.ip == "198.51.100.9"
    assert issued.api_key_id is not None
    assert issued.api_key_id == used.api_key_id
    assert revoked.api_key_id == issued.api_key_id
    secrets = [key, flow["device_code"], flow["user_code"], flow["user_code"].replace("-", "")]
    for event in events:
        text = repr(event)
        for secret in secrets:
            assert secret not in text
    by_alice = await AdminService(server.runtime.store).audit(username="alice")
    assert AuditKind.FLOW_STARTED not in [event.kind for event in by_alice]
