"""The resource endpoint, the metadata, the probes and the request id."""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest

from devicelink.core.apikeys import new_api_key
from devicelink.core.models import User
from tests.http.contract import THIRTY_DAYS, issue_key
from tests.support.app import PUBLIC_URL, Server
from tests.support.http import DEVICE_CODE_GRANT

pytestmark = pytest.mark.anyio


@pytest.fixture
async def key(server: Server, alice: User) -> str:
    return await issue_key(server, alice)


async def me_as(server: Server, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await server.http.get("/api/me", headers=headers)


def assert_bearer_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.lower().startswith("bearer"), challenge
    assert response.headers.get("cache-control") == "no-store"
    body = response.json()
    assert body["error"] == "invalid_token"
    assert "username" not in body


# --- GET /api/me -------------------------------------------------------------------------


@pytest.mark.rfc("6750", "2.1")
async def test_a_valid_key_names_its_owner(server: Server, key: str) -> None:
    response = await me_as(server, f"Bearer {key}")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["username"] == "alice"
    assert body["client_id"] == "devicelink-cli"
    assert body["scope"] == "api"
    assert key not in response.text


@pytest.mark.rfc("6750", "2.1")
async def test_the_bearer_scheme_is_case_insensitive(server: Server, key: str) -> None:
    response = await me_as(server, f"bearer {key}")
    assert response.status_code == 200, response.text


@pytest.mark.rfc("6750", "3.1")
@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer    "])
async def test_a_missing_key_is_401_bearer(server: Server, authorization: str | None) -> None:
    assert_bearer_401(await me_as(server, authorization))


@pytest.mark.rfc("6750", "3.1")
async def test_a_key_sent_with_another_scheme_is_401(server: Server, key: str) -> None:
    assert_bearer_401(await me_as(server, f"Basic {key}"))
    assert_bearer_401(await me_as(server, key))


@pytest.mark.rfc("6750", "3.1")
async def test_a_malformed_key_is_401(server: Server, key: str) -> None:
    # One character changed in the checksum, in the random part, in the prefix.
    last = "A" if key[-1] != "A" else "B"
    assert_bearer_401(await me_as(server, f"Bearer {key[:-1]}{last}"))
    middle = len(key) // 2
    swapped = "x" if key[middle] != "x" else "y"
    assert_bearer_401(await me_as(server, f"Bearer {key[:middle]}{swapped}{key[middle + 1 :]}"))
    assert_bearer_401(await me_as(server, f"Bearer dlx_{key[4:]}"))
    assert_bearer_401(await me_as(server, f"Bearer {key}x"))
    assert_bearer_401(await me_as(server, "Bearer dlk_"))
    assert_bearer_401(await me_as(server, "Bearer " + "z" * 5000))


@pytest.mark.rfc("6750", "3.1")
async def test_an_unknown_well_formed_key_is_401(server: Server, key: str) -> None:
    stranger = new_api_key()
    assert stranger != key
    assert_bearer_401(await me_as(server, f"Bearer {stranger}"))


@pytest.mark.rfc("6750", "3.1")
async def test_a_key_past_its_30_days_is_401(server: Server, key: str) -> None:
    server.clock.advance(THIRTY_DAYS - 1)
    assert (await me_as(server, f"Bearer {key}")).status_code == 200
    server.clock.advance(1)
    assert_bearer_401(await me_as(server, f"Bearer {key}"))
    server.clock.advance(86_400)
    assert_bearer_401(await me_as(server, f"Bearer {key}"))


async def test_the_key_expiry_reported_matches_expires_in(server: Server, alice: User) -> None:
    flow = await server.start_flow()
    await server.runtime.flows.approve(flow["user_code"], user_id=alice.id)
    granted = (await server.poll(flow["device_code"])).json()
    body = (await me_as(server, f"Bearer {granted['access_token']}")).json()
    created = datetime.fromisoformat(body["key"]["created_at"])
    expires = datetime.fromisoformat(body["key"]["expires_at"])
    assert (expires - created).total_seconds() == granted["expires_in"] == THIRTY_DAYS
    assert expires.utcoffset() is not None


# --- RFC 8414 metadata -------------------------------------------------------------------


@pytest.mark.rfc("8414", "3")
@pytest.mark.rfc("8628", "4")
async def test_metadata_names_the_issuer_and_the_endpoints(server: Server) -> None:
    response = await server.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["issuer"] == PUBLIC_URL
    assert not body["issuer"].endswith("/")
    assert body["device_authorization_endpoint"] == f"{PUBLIC_URL}/oauth/device/authorize"
    assert body["token_endpoint"] == f"{PUBLIC_URL}/oauth/token"  # both grants (issue 12)
    assert DEVICE_CODE_GRANT in body["grant_types_supported"]
    assert {"none", "client_secret_basic", "client_secret_post"} <= set(
        body["token_endpoint_auth_methods_supported"]
    )
    assert "api" in body["scopes_supported"]


@pytest.mark.rfc("8414", "3")
async def test_metadata_ignores_a_forged_host(server: Server) -> None:
    response = await server.http.get(
        "/.well-known/oauth-authorization-server",
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.json()["issuer"] == PUBLIC_URL
    assert "evil" not in response.text


@pytest.mark.rfc("8414", "3")
async def test_every_advertised_endpoint_is_served(server: Server) -> None:
    body = (await server.http.get("/.well-known/oauth-authorization-server")).json()
    endpoints = {name: url for name, url in body.items() if name.endswith("_endpoint")}
    assert {"device_authorization_endpoint", "token_endpoint"} <= set(endpoints)
    for name, url in endpoints.items():
        assert url.startswith(PUBLIC_URL + "/"), (name, url)
        path = url[len(PUBLIC_URL) :]
        if name == "authorization_endpoint":  # a browser's GET (RFC 6749 section 3.1)
            response = await server.http.get(path, params={"client_id": "devicelink-cli"})
        else:
            response = await server.http.post(path, data={"client_id": "devicelink-cli"})
        assert response.status_code not in (404, 405), (name, response.status_code)


# --- probes ------------------------------------------------------------------------------


async def test_healthz_is_200(server: Server) -> None:
    response = await server.http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_is_200_when_the_database_answers(server: Server) -> None:
    response = await server.http.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


# --- X-Request-ID ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/api/me"),
        ("POST", "/oauth/device/authorize"),
        ("POST", "/oauth/device/token"),
        ("GET", "/no/such/path"),
        ("GET", "/oauth/device/token"),
    ],
)
async def test_the_callers_request_id_is_echoed(web: Server, method: str, path: str) -> None:
    response = await web.http.request(
        method, path, headers={"X-Request-ID": "cli-3f2a.7:b_9"}, data={}
    )
    assert response.headers["x-request-id"] == "cli-3f2a.7:b_9"


@pytest.mark.parametrize("path", ["/healthz", "/oauth/device/token", "/nope"])
async def test_a_request_id_is_made_when_none_is_sent(web: Server, path: str) -> None:
    first = await web.http.post(path)
    second = await web.http.post(path)
    ids = [first.headers.get("x-request-id"), second.headers.get("x-request-id")]
    assert all(ids)
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"[A-Za-z0-9._:\-]{8,128}", i) for i in ids)


@pytest.mark.parametrize(
    "sent", [b"has space", b"x" * 300, b"<script>", b"a,b", "é".encode(), b"\xff\xfe"]
)
async def test_an_unsafe_request_id_is_replaced_not_echoed(web: Server, sent: bytes) -> None:
    response = await web.http.get("/healthz", headers={b"X-Request-ID": sent})
    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    assert echoed
    assert echoed.encode() != sent
    assert re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", echoed)
    assert len(response.headers.get_list("x-request-id")) == 1
