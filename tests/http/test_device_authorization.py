"""The device authorization endpoint: RFC 8628 sections 3.1 and 3.2, client authentication
(RFC 6749 sections 2.3 and 3.2), and the limit on starting flows (DESIGN.md defect 7)."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest

from devicelink.core.models import User
from tests.http.contract import (
    AUTHORIZE,
    FORM,
    MakeServer,
    RegisterClient,
    assert_oauth_error,
    basic,
)
from tests.support.app import PUBLIC_URL, Server
from tests.support.http import DEVICE_CODE_GRANT

pytestmark = pytest.mark.anyio

VERIFY_URI = f"{PUBLIC_URL}/oauth/device/verify"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


async def approve_and_poll(
    srv: Server, flow: dict[str, Any], user_id: int, **form: str
) -> httpx.Response:
    assert await srv.runtime.flows.approve(flow["user_code"], user_id=user_id) == "ok"
    return await srv.poll(flow["device_code"], **form)


# --- section 3.2: the response -----------------------------------------------------------


@pytest.mark.rfc("8628", "3.2")
async def test_response_carries_every_field_with_the_contract_values(server: Server) -> None:
    response = await server.http.post(AUTHORIZE, data={"client_id": "devicelink-cli"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) >= {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert USER_CODE.match(body["user_code"]), body["user_code"]
    assert body["verification_uri"] == VERIFY_URI
    assert body["verification_uri_complete"] == f"{VERIFY_URI}?user_code={body['user_code']}"
    assert body["expires_in"] == 600
    assert body["interval"] == 5
    # Section 5.2: at least 256 bits, so at least 43 URL-safe characters.
    assert len(body["device_code"]) >= 43
    assert re.fullmatch(r"[A-Za-z0-9_\-.~]+", body["device_code"])


@pytest.mark.rfc("8628", "3.2")
@pytest.mark.rfc("8628", "5.2")
async def test_every_flow_gets_its_own_codes(server: Server) -> None:
    flows = [await server.start_flow() for _ in range(12)]
    assert len({f["device_code"] for f in flows}) == 12
    assert len({f["user_code"] for f in flows}) == 12
    assert all(f["device_code"] != f["user_code"] for f in flows)


@pytest.mark.rfc("8628", "3.2")
@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"Host": "evil.example:8443", "X-Forwarded-Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
        {"Forwarded": "host=evil.example;proto=http"},
    ],
)
async def test_verification_uri_comes_from_public_url_not_from_the_request(
    server: Server, headers: dict[str, str]
) -> None:
    response = await server.http.post(
        AUTHORIZE, data={"client_id": "devicelink-cli"}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verification_uri"] == VERIFY_URI
    assert body["verification_uri_complete"].startswith(VERIFY_URI + "?user_code=")
    assert "evil" not in response.text
    assert "testserver" not in response.text


@pytest.mark.rfc("8628", "3.2")
@pytest.mark.rfc("8414", "3")
async def test_public_url_with_trailing_slash_gives_clean_uris(make_server: MakeServer) -> None:
    async with make_server(public_url=PUBLIC_URL + "/") as srv:
        flow = await srv.start_flow()
        metadata = (await srv.http.get("/.well-known/oauth-authorization-server")).json()
    assert flow["verification_uri"] == VERIFY_URI
    assert metadata["issuer"] == PUBLIC_URL


@pytest.mark.rfc("8628", "3.3.1")
async def test_verification_uri_complete_carries_exactly_the_user_code(server: Server) -> None:
    flow = await server.start_flow()
    complete = httpx.URL(flow["verification_uri_complete"])
    assert str(complete.copy_with(query=None)) == flow["verification_uri"]
    assert complete.params.get_list("user_code") == [flow["user_code"]]
    # Section 3.3: the user code is not part of the plain verification_uri.
    assert flow["user_code"] not in flow["verification_uri"]


# --- section 3.1: the request --------------------------------------------------------------


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.rfc("6749", "5.2")
async def test_unknown_client_id_is_invalid_client_with_www_authenticate(server: Server) -> None:
    response = await server.http.post(AUTHORIZE, data={"client_id": "no-such-client"})
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers.get("www-authenticate")


@pytest.mark.rfc("8628", "3.1")
async def test_missing_client_id_means_the_default_client(server: Server, alice: User) -> None:
    response = await server.http.post(AUTHORIZE, data={"scope": "api"})
    assert response.status_code == 200, response.text
    flow = response.json()
    # The flow belongs to devicelink-cli: that client (named or defaulted) gets the key.
    granted = await approve_and_poll(server, flow, alice.id, client_id="devicelink-cli")
    assert granted.status_code == 200, granted.text


@pytest.mark.rfc("8628", "3.1")
async def test_empty_client_id_counts_as_absent(server: Server, alice: User) -> None:
    response = await server.http.post(AUTHORIZE, data={"client_id": "", "scope": ""})
    assert response.status_code == 200, response.text
    granted = await approve_and_poll(server, response.json(), alice.id)
    assert granted.status_code == 200, granted.text
    assert granted.json()["scope"] == "api"


@pytest.mark.rfc("8628", "3.1")
async def test_an_empty_form_starts_a_flow_for_the_default_client(server: Server) -> None:
    response = await server.http.post(AUTHORIZE, content=b"", headers=FORM)
    assert response.status_code == 200, response.text
    assert USER_CODE.match(response.json()["user_code"])


@pytest.mark.rfc("8628", "3.1")
async def test_a_post_with_no_body_at_all_is_an_empty_form(
    server: Server, confidential: str
) -> None:
    """A form with no fields has no body, and common clients then send no Content-Type
    (httpx and requests with ``data={}``, ``curl -X POST``, ``curl -u id:secret -X POST``).
    Zero parameters is a valid request here: the default client, or Basic credentials."""
    public = await server.http.post(AUTHORIZE, data={})
    assert public.status_code == 200, public.text
    assert USER_CODE.match(public.json()["user_code"])
    with_basic = await server.http.post(AUTHORIZE, headers=basic(confidential, "s3cret"))
    assert with_basic.status_code == 200, with_basic.text


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.rfc("6749", "5.2")
async def test_without_a_default_client_client_id_is_required(make_server: MakeServer) -> None:
    async with make_server(default_client_id=None) as srv:
        missing = await srv.http.post(AUTHORIZE, data={"scope": "api"})
        empty = await srv.http.post(AUTHORIZE, data={"client_id": ""})
        token = await srv.http.post(
            "/oauth/device/token", data={"grant_type": DEVICE_CODE_GRANT, "device_code": "x" * 43}
        )
    assert_oauth_error(missing, 400, "invalid_request")
    assert_oauth_error(empty, 400, "invalid_request")
    assert_oauth_error(token, 400, "invalid_request")


@pytest.mark.rfc("8628", "3.1")
async def test_unknown_parameters_are_ignored(server: Server) -> None:
    response = await server.http.post(
        AUTHORIZE, data={"client_id": "devicelink-cli", "color": "blue", "audience": "x"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.rfc("6749", "3.2")
@pytest.mark.parametrize(
    "body",
    [
        "client_id=devicelink-cli&client_id=devicelink-cli",
        "client_id=devicelink-cli&scope=api&scope=api",
        "client_id=devicelink-cli&client_id=",
        "scope=&scope=",
    ],
)
async def test_a_repeated_parameter_is_invalid_request(server: Server, body: bytes) -> None:
    response = await server.http.post(
        AUTHORIZE, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    body_json = assert_oauth_error(response, 400, "invalid_request")
    assert "error_description" in body_json


@pytest.mark.rfc("6749", "3.3")
@pytest.mark.rfc("8628", "3.1")
@pytest.mark.parametrize("scope", ["admin", "api admin", "api\tadmin", 'api "quoted"', "api  api"])
async def test_a_scope_the_client_may_not_ask_for_is_invalid_scope(
    server: Server, scope: str
) -> None:
    response = await server.http.post(
        AUTHORIZE, data={"client_id": "devicelink-cli", "scope": scope}
    )
    assert_oauth_error(response, 400, "invalid_scope")


@pytest.mark.rfc("6749", "3.3")
@pytest.mark.rfc("8628", "3.1")
async def test_the_granted_scope_is_what_was_asked_for(
    server: Server, register_client: RegisterClient, alice: User
) -> None:
    await register_client(server, "deployer", scopes=("api", "deploy", "read"))
    flow = await server.start_flow(client_id="deployer", scope="read deploy")
    granted = await approve_and_poll(server, flow, alice.id, client_id="deployer")
    assert granted.status_code == 200, granted.text
    assert set(granted.json()["scope"].split()) == {"read", "deploy"}
    default = await server.start_flow(client_id="deployer")
    server.clock.advance(5)
    granted = await approve_and_poll(server, default, alice.id, client_id="deployer")
    assert set(granted.json()["scope"].split()) == {"api", "deploy", "read"}


# --- confidential clients (RFC 6749 section 2.3, RFC 8628 section 3.1) ---------------------


@pytest.fixture
async def confidential(server: Server, register_client: RegisterClient) -> str:
    await register_client(server, "build-bot", secret="s3cret")
    return "build-bot"


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.rfc("6749", "2.3.1")
@pytest.mark.parametrize(
    ("form", "with_basic"),
    [
        pytest.param({"client_id": "build-bot", "client_secret": "s3cret"}, False, id="form"),
        pytest.param({}, True, id="basic"),
        pytest.param({"client_id": "build-bot"}, True, id="basic-and-client-id-in-form"),
    ],
)
async def test_confidential_client_authenticates_with_its_secret(
    server: Server, confidential: str, form: dict[str, str], with_basic: bool
) -> None:
    auth = basic(confidential, "s3cret") if with_basic else {}
    body = str(httpx.QueryParams(form)).encode()
    response = await server.http.post(AUTHORIZE, content=body, headers={**FORM, **auth})
    assert response.status_code == 200, response.text


@pytest.mark.rfc("6749", "2.3.1")
async def test_basic_credentials_are_form_urlencoded(
    server: Server, register_client: RegisterClient
) -> None:
    await register_client(server, "odd.bot", secret="p@ss:w/rd %+é")
    response = await server.http.post(
        AUTHORIZE, data={"scope": "api"}, headers=basic("odd.bot", "p@ss:w/rd %+é")
    )
    assert response.status_code == 200, response.text


@pytest.mark.rfc("8628", "3.1")
@pytest.mark.rfc("6749", "5.2")
@pytest.mark.parametrize(
    ("form", "auth"),
    [
        ({"client_id": "build-bot"}, None),
        ({"client_id": "build-bot", "client_secret": "wrong"}, None),
        ({"client_id": "build-bot", "client_secret": "S3CRET"}, None),
        ({}, ("build-bot", "wrong")),
        ({}, ("build-bot", "")),
        ({}, ("no-such-client", "s3cret")),
    ],
)
async def test_confidential_client_with_missing_or_wrong_secret_is_401(
    server: Server, confidential: str, form: dict[str, str], auth: tuple[str, str] | None
) -> None:
    headers = basic(*auth) if auth else {}
    response = await server.http.post(AUTHORIZE, data=form or {"scope": "api"}, headers=headers)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers.get("www-authenticate")
    assert "device_code" not in response.text


@pytest.mark.rfc("6749", "2.3.1")
@pytest.mark.parametrize(
    "header", ["Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode()]
)
async def test_malformed_basic_credentials_are_invalid_client(server: Server, header: str) -> None:
    response = await server.http.post(
        AUTHORIZE, data={"scope": "api"}, headers={"Authorization": header}
    )
    assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.rfc("6749", "2.3")
async def test_two_authentication_methods_or_two_identities_are_refused(
    server: Server, confidential: str
) -> None:
    twice = await server.http.post(
        AUTHORIZE, data={"client_secret": "s3cret"}, headers=basic(confidential, "s3cret")
    )
    assert_oauth_error(twice, 400, "invalid_request")
    other = await server.http.post(
        AUTHORIZE, data={"client_id": "devicelink-cli"}, headers=basic(confidential, "s3cret")
    )
    assert_oauth_error(other, 400, "invalid_request")


@pytest.mark.rfc("8628", "3.4")
@pytest.mark.rfc("6749", "2.3.1")
async def test_confidential_client_must_authenticate_when_polling(
    server: Server, confidential: str, alice: User
) -> None:
    response = await server.http.post(
        AUTHORIZE, data={"client_id": confidential, "client_secret": "s3cret"}
    )
    flow = response.json()
    assert await server.runtime.flows.approve(flow["user_code"], user_id=alice.id) == "ok"
    unauthenticated = await server.poll(flow["device_code"], client_id=confidential)
    assert_oauth_error(unauthenticated, 401, "invalid_client")
    wrong = await server.poll(flow["device_code"], client_id=confidential, client_secret="nope")
    assert_oauth_error(wrong, 401, "invalid_client")
    granted = await server.http.post(
        "/oauth/device/token",
        data={"grant_type": DEVICE_CODE_GRANT, "device_code": flow["device_code"]},
        headers=basic(confidential, "s3cret"),
    )
    assert granted.status_code == 200, granted.text
    assert granted.json()["access_token"].startswith("dlk_")


# --- the limit on starting flows (DESIGN.md defect 7) ---------------------------------------


@pytest.mark.defect(7)
async def test_the_31st_start_from_one_address_within_a_minute_is_429(server: Server) -> None:
    for _ in range(30):
        response = await server.http.post(AUTHORIZE, data={"client_id": "devicelink-cli"})
        assert response.status_code == 200, response.text
    limited = await server.http.post(AUTHORIZE, data={"client_id": "devicelink-cli"})
    assert limited.status_code == 429
    assert limited.headers["cache-control"] == "no-store"
    assert isinstance(limited.json()["error"], str)
    assert int(limited.headers["retry-after"]) > 0


@pytest.mark.defect(7)
async def test_rate_limit_is_per_address_and_says_when_to_retry(make_server: MakeServer) -> None:
    async with make_server(start_rate_limit="3/minute") as srv:
        for _ in range(3):
            assert (await srv.http.post(AUTHORIZE, data={"scope": "api"})).status_code == 200
        limited = await srv.http.post(AUTHORIZE, data={"scope": "api"})
        again = await srv.http.post(AUTHORIZE, data={"client_id": "devicelink-cli"})
        transport = httpx.ASGITransport(app=srv.app, client=("198.51.100.9", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
            elsewhere = await other.post(AUTHORIZE, data={"scope": "api"})
    assert limited.status_code == 429
    body = limited.json()
    assert isinstance(body["error"], str)
    assert body["error"]
    assert "detail" not in body
    assert 0 < int(limited.headers["retry-after"]) <= 61
    assert again.status_code == 429
    assert elsewhere.status_code == 200, elsewhere.text
