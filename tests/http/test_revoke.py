"""RFC 7009 token revocation at /oauth/revoke (the CLI's logout)."""

from __future__ import annotations

import pytest

from tests.http.contract import add_client, issue_key, me
from tests.support.app import Server

pytestmark = pytest.mark.anyio


async def alices_key(server: Server, client_id: str = "devicelink-cli") -> str:
    return await issue_key(server, await server.add_user(), client_id=client_id)


@pytest.mark.rfc("7009", "2.1")
async def test_a_client_revokes_its_own_key_and_it_stops_working(server: Server) -> None:
    key = await alices_key(server)
    assert (await me(server, key)).status_code == 200
    response = await server.http.post(
        "/oauth/revoke",
        data={"token": key, "token_type_hint": "access_token", "client_id": "devicelink-cli"},
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert (await me(server, key)).status_code == 401


@pytest.mark.rfc("7009", "2.2")
@pytest.mark.parametrize(
    "token",
    ["dlk_unknown", "dlk_" + "A" * 43 + "_AAAAAA", "not a key at all", "x" * 5000],
)
async def test_unknown_or_malformed_tokens_get_200(server: Server, token: str) -> None:
    response = await server.http.post(
        "/oauth/revoke", data={"token": token, "client_id": "devicelink-cli"}
    )
    assert response.status_code == 200


@pytest.mark.rfc("7009", "2.2")
async def test_revoking_twice_is_harmless(server: Server) -> None:
    key = await alices_key(server)
    for _ in range(2):
        response = await server.http.post(
            "/oauth/revoke", data={"token": key, "client_id": "devicelink-cli"}
        )
        assert response.status_code == 200
    assert (await me(server, key)).status_code == 401


@pytest.mark.rfc("7009", "2.1")
async def test_an_unknown_hint_does_not_stop_revocation(server: Server) -> None:
    key = await alices_key(server)
    response = await server.http.post(
        "/oauth/revoke",
        data={"token": key, "token_type_hint": "refresh_token", "client_id": "devicelink-cli"},
    )
    assert response.status_code == 200
    assert (await me(server, key)).status_code == 401


@pytest.mark.rfc("7009", "2.1")
async def test_another_client_cannot_revoke_the_key(server: Server) -> None:
    await add_client(server, "other-cli", key_lifetime=None)
    key = await alices_key(server)
    response = await server.http.post(
        "/oauth/revoke", data={"token": key, "client_id": "other-cli"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"
    assert (await me(server, key)).status_code == 200


@pytest.mark.rfc("7009", "2.2.1")
async def test_revocation_errors_are_oauth_json(server: Server) -> None:
    missing = await server.http.post("/oauth/revoke", data={"client_id": "devicelink-cli"})
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"
    unknown_client = await server.http.post(
        "/oauth/revoke", data={"token": "dlk_x", "client_id": "nobody"}
    )
    assert unknown_client.status_code == 401
    assert unknown_client.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in unknown_client.headers


@pytest.mark.rfc("8414", "2")
async def test_metadata_names_the_revocation_endpoint(server: Server) -> None:
    metadata = (await server.http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["revocation_endpoint"] == "https://login.example.com/oauth/revoke"
