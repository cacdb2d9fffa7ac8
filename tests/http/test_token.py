"""The token endpoint: RFC 8628 sections 3.4 and 3.5 (and RFC 6749 section 5 around them).

The order of the answers is part of the contract: unknown or consumed -> invalid_grant,
expired -> expired_token, denied -> access_denied, approved -> the key, and only for a
pending code the polling pace: slow_down (stored per code) or authorization_pending.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devicelink.core.models import User
from tests.http.contract import (
    THIRTY_DAYS,
    TOKEN,
    Flow,
    MakeServer,
    RegisterClient,
    answer,
    answers,
    approve,
    approved_flow,
    assert_oauth_error,
    count,
    me,
)
from tests.support.app import Server
from tests.support.http import DEVICE_CODE_GRANT

pytestmark = pytest.mark.anyio


async def deny(srv: Server, flow: dict[str, Any], user: User) -> None:
    assert await srv.runtime.flows.deny(flow["user_code"], user_id=user.id) == "ok"


async def count_keys(srv: Server) -> int:
    return await count(srv, "SELECT count(*) FROM api_keys")


# --- section 3.4: the request --------------------------------------------------------------


@pytest.mark.rfc("8628", "3.4")
@pytest.mark.rfc("6749", "5.2")
@pytest.mark.parametrize(
    "grant_type",
    ["authorization_code", "client_credentials", "device_code", DEVICE_CODE_GRANT.upper(), "urn:x"],
)
async def test_a_wrong_grant_type_is_unsupported_grant_type(
    server: Server, approved: Flow, grant_type: str
) -> None:
    response = await server.poll(approved["device_code"], grant_type=grant_type)
    assert_oauth_error(response, 400, "unsupported_grant_type")
    # The refused request did not use up the approval.
    assert await answer(server, approved) == "key"


@pytest.mark.rfc("8628", "3.4")
async def test_an_absent_or_empty_grant_type_is_tolerated(server: Server) -> None:
    flow = await server.start_flow()
    absent = await server.http.post(
        TOKEN, data={"device_code": flow["device_code"], "client_id": "devicelink-cli"}
    )
    assert_oauth_error(absent, 400, "authorization_pending")
    server.clock.advance(5)
    empty = await server.poll(flow["device_code"], grant_type="")
    assert_oauth_error(empty, 400, "authorization_pending")


@pytest.mark.rfc("8628", "3.4")
@pytest.mark.rfc("6749", "5.2")
@pytest.mark.parametrize("form", [{}, {"device_code": ""}, {"device_code_": "x"}])
async def test_a_missing_device_code_is_invalid_request(
    server: Server, form: dict[str, str]
) -> None:
    response = await server.http.post(
        TOKEN, data={"grant_type": DEVICE_CODE_GRANT, "client_id": "devicelink-cli", **form}
    )
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.rfc("8628", "3.4")
async def test_a_device_code_in_the_query_string_is_not_read(server: Server) -> None:
    flow = await server.start_flow()
    response = await server.http.post(
        TOKEN,
        params={"device_code": flow["device_code"]},
        data={"grant_type": DEVICE_CODE_GRANT, "client_id": "devicelink-cli"},
    )
    assert_oauth_error(response, 400, "invalid_request")


@pytest.mark.rfc("6749", "3.2")
@pytest.mark.rfc("8628", "3.4")
@pytest.mark.parametrize("repeated", ["device_code", "grant_type", "client_id"])
async def test_a_repeated_parameter_is_invalid_request(
    server: Server, approved: Flow, repeated: str
) -> None:
    fields = {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": approved["device_code"],
        "client_id": "devicelink-cli",
    }
    pairs = [*fields.items(), (repeated, fields[repeated])]
    response = await server.http.post(
        TOKEN,
        content=str(httpx.QueryParams(pairs)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_oauth_error(response, 400, "invalid_request")
    assert await answer(server, approved) == "key"


@pytest.mark.rfc("8628", "3.4")
@pytest.mark.rfc("6749", "5.2")
async def test_an_unknown_client_is_invalid_client(server: Server) -> None:
    flow = await server.start_flow()
    response = await server.poll(flow["device_code"], client_id="who-is-this")
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers.get("www-authenticate")


@pytest.mark.rfc("8628", "3.4")
async def test_a_poll_without_client_id_means_the_default_client(
    server: Server, approved: Flow
) -> None:
    response = await server.http.post(
        TOKEN, data={"grant_type": DEVICE_CODE_GRANT, "device_code": approved["device_code"]}
    )
    assert response.status_code == 200, response.text


@pytest.mark.rfc("6749", "5.2")
@pytest.mark.rfc("8628", "3.5")
async def test_a_device_code_presented_by_another_client_is_invalid_grant(
    server: Server, register_client: RegisterClient, alice: User
) -> None:
    await register_client(server, "other-cli")
    flow = await server.start_flow()
    assert await answer(server, flow, client_id="other-cli") == "invalid_grant"
    await approve(server, flow, alice)
    assert await answer(server, flow, client_id="other-cli") == "invalid_grant"
    # The rightful client still receives its key: the foreign polls changed nothing.
    assert await answer(server, flow) == "key"


# --- section 3.5: the answers, in order ---------------------------------------------------


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.rfc("6749", "5.2")
@pytest.mark.parametrize(
    "device_code", ["x", "A" * 43, "not-a-code-at-all", "0" * 200, "ŧéşŧ", "+/ =&"]
)
async def test_an_unknown_device_code_is_invalid_grant(server: Server, device_code: str) -> None:
    response = await server.poll(device_code)
    assert_oauth_error(response, 400, "invalid_grant")


@pytest.mark.rfc("8628", "3.5")
async def test_pending_at_the_stated_interval_is_authorization_pending(server: Server) -> None:
    flow = await server.start_flow()
    waits = [0] + [flow["interval"]] * 3
    assert await answers(server, flow, waits) == ["authorization_pending"] * 4


@pytest.mark.rfc("8628", "3.5")
async def test_polling_too_early_is_slow_down_with_the_new_interval(server: Server) -> None:
    flow = await server.start_flow()
    assert await answers(server, flow, [0, 1]) == ["authorization_pending", "slow_down 10"]


@pytest.mark.rfc("8628", "3.5")
async def test_slow_down_holds_for_all_subsequent_requests(server: Server) -> None:
    flow = await server.start_flow()
    # After the slow_down the old interval (5 s) is too early: the client must wait the
    # new one.
    assert await answers(server, flow, [0, 0, 5, 15, 14]) == [
        "authorization_pending",
        "slow_down 10",
        "slow_down 15",
        "authorization_pending",
        "slow_down 20",
    ]


@pytest.mark.rfc("8628", "3.5")
async def test_slow_down_grows_by_five_seconds_up_to_sixty(server: Server) -> None:
    flow = await server.start_flow()
    await answer(server, flow)
    intervals = [10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 60, 60, 60]
    assert await answers(server, flow, [0] * 14) == [f"slow_down {s}" for s in intervals]
    assert await answers(server, flow, [59, 60]) == ["slow_down 60", "authorization_pending"]


@pytest.mark.rfc("8628", "3.5")
async def test_slow_down_is_stored_per_device_code(server: Server) -> None:
    fast = await server.start_flow()
    calm = await server.start_flow()
    await answer(server, fast)
    await answer(server, calm)
    assert await answers(server, fast, [0, 0]) == ["slow_down 10", "slow_down 15"]
    server.clock.advance(5)
    assert await answer(server, calm) == "authorization_pending"
    assert await answer(server, fast) == "slow_down 20"


@pytest.mark.rfc("8628", "3.5")
async def test_slow_down_survives_a_restart_of_the_server(
    make_server: MakeServer, server: Server
) -> None:
    """The interval lives in the database, not in the process that answered."""
    flow = await server.start_flow()
    await answers(server, flow, [0, 0])
    async with make_server() as other_process:
        server.clock.advance(5)
        assert await answer(other_process, flow) == "slow_down 15"


@pytest.mark.rfc("8628", "3.5")
async def test_an_expired_code_is_expired_token(server: Server) -> None:
    flow = await server.start_flow()
    expected = ["authorization_pending"] + ["expired_token"] * 2
    assert await answers(server, flow, [599, 1, 3600]) == expected


@pytest.mark.rfc("8628", "3.5")
async def test_an_approved_but_expired_code_is_expired_token_not_a_key(
    server: Server, approved: Flow
) -> None:
    assert await answers(server, approved, [600]) == ["expired_token"]
    assert await count_keys(server) == 0


@pytest.mark.rfc("8628", "3.5")
async def test_a_denied_code_is_access_denied_every_time(server: Server, alice: User) -> None:
    flow = await server.start_flow()
    assert await answer(server, flow) == "authorization_pending"
    await deny(server, flow, alice)
    assert await answers(server, flow, [5, 5, 5]) == ["access_denied"] * 3
    # Expiry comes before denial in the order of answers.
    assert await answers(server, flow, [600]) == ["expired_token"]


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.rfc("6749", "5.1")
async def test_an_approved_code_gets_a_bearer_key_with_expiry_and_scope(
    server: Server, alice: User
) -> None:
    flow = await approved_flow(server, alice)
    response = await server.poll(flow["device_code"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["access_token"].startswith("dlk_")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == THIRTY_DAYS
    assert body["scope"] == "api"
    assert "refresh_token" not in body
    owner = await me(server, body["access_token"])
    assert owner.status_code == 200
    assert owner.json()["username"] == "alice"


@pytest.mark.rfc("8628", "3.5")
async def test_a_consumed_code_is_invalid_grant(server: Server, approved: Flow) -> None:
    # Consumed comes before expired in the order of answers.
    assert await answers(server, approved, [0, 5, 3600]) == ["key"] + ["invalid_grant"] * 2


@pytest.mark.rfc("6749", "5.1")
async def test_a_client_whose_keys_never_expire_gets_no_expires_in(
    server: Server, register_client: RegisterClient, alice: User
) -> None:
    await register_client(server, "forever-cli", key_lifetime=None)
    flow = await approved_flow(server, alice, client_id="forever-cli")
    response = await server.poll(flow["device_code"], client_id="forever-cli")
    assert response.status_code == 200, response.text
    body = response.json()
    assert "expires_in" not in body
    assert body["token_type"] == "Bearer"
    server.clock.advance(10 * 365 * 86_400)
    assert (await me(server, body["access_token"])).status_code == 200


@pytest.mark.rfc("6749", "5.1")
async def test_a_client_key_lifetime_sets_expires_in(
    server: Server, register_client: RegisterClient, alice: User
) -> None:
    await register_client(server, "hourly-cli", key_lifetime=3600)
    flow = await approved_flow(server, alice, client_id="hourly-cli")
    body = (await server.poll(flow["device_code"], client_id="hourly-cli")).json()
    assert body["expires_in"] == 3600
    server.clock.advance(3599)
    assert (await me(server, body["access_token"])).status_code == 200
    server.clock.advance(1)
    assert (await me(server, body["access_token"])).status_code == 401


@pytest.mark.rfc("6749", "5.1")
async def test_the_server_key_lifetime_setting_applies_to_the_default_client(
    make_server: MakeServer,
) -> None:
    async with make_server(key_lifetime=7 * 86_400) as srv:
        user = await srv.add_user("bob")
        flow = await approved_flow(srv, user)
        body = (await srv.poll(flow["device_code"])).json()
    assert body["expires_in"] == 7 * 86_400


# --- one key per device, several devices per user ------------------------------------------


@pytest.mark.rfc("8628", "3.5")
async def test_one_device_authorization_gives_exactly_one_key(
    server: Server, approved: Flow
) -> None:
    assert await answers(server, approved, [0, 5, 5, 5, 5]) == ["key"] + ["invalid_grant"] * 4
    assert await count_keys(server) == 1


@pytest.mark.rfc("8628", "3.5")
async def test_one_user_signs_in_several_devices_at_once(server: Server, alice: User) -> None:
    laptop = await server.start_flow()
    server_box = await server.start_flow(scope="api")
    await approve(server, laptop, alice)
    await approve(server, server_box, alice)
    first = await server.poll(laptop["device_code"])
    second = await server.poll(server_box["device_code"])
    assert first.status_code == second.status_code == 200
    key1, key2 = first.json()["access_token"], second.json()["access_token"]
    assert key1 != key2
    who1, who2 = await me(server, key1), await me(server, key2)
    assert who1.status_code == who2.status_code == 200
    assert who1.json()["username"] == who2.json()["username"] == "alice"
    assert who1.json()["key"]["id"] != who2.json()["key"]["id"]
    assert await count_keys(server) == 2


@pytest.mark.rfc("8628", "3.5")
async def test_each_device_gets_the_approval_of_its_own_user(server: Server, alice: User) -> None:
    bob = await server.add_user("bob")
    a = await server.start_flow()
    b = await server.start_flow()
    await approve(server, a, alice)
    await approve(server, b, bob)
    key_b = (await server.poll(b["device_code"])).json()["access_token"]
    key_a = (await server.poll(a["device_code"])).json()["access_token"]
    assert (await me(server, key_a)).json()["username"] == "alice"
    assert (await me(server, key_b)).json()["username"] == "bob"


# --- section 3.3: the user's side, through the service --------------------------------------


@pytest.mark.rfc("8628", "3.3")
async def test_approving_a_user_code_releases_exactly_that_device(
    server: Server, alice: User
) -> None:
    mine = await server.start_flow()
    someone_elses = await server.start_flow()
    await approve(server, mine, alice)
    assert await answer(server, mine) == "key"
    assert await answer(server, someone_elses) == "authorization_pending"


@pytest.mark.rfc("8628", "3.3")
async def test_a_user_cannot_decide_twice_or_after_expiry(server: Server, alice: User) -> None:
    flows = server.runtime.flows
    flow = await server.start_flow()
    assert await flows.approve(flow["user_code"], user_id=alice.id) == "ok"
    assert await flows.approve(flow["user_code"], user_id=alice.id) == "already_approved"
    assert await flows.deny(flow["user_code"], user_id=alice.id) == "already_approved"
    assert await answer(server, flow) == "key"
    assert await flows.approve(flow["user_code"], user_id=alice.id) == "already_used"
    late = await server.start_flow()
    server.clock.advance(600)
    assert await flows.approve(late["user_code"], user_id=alice.id) == "expired"
    assert await answer(server, late) == "expired_token"
    assert await flows.approve("AEIO-U123", user_id=alice.id) == "unknown"
    assert await flows.approve("", user_id=alice.id) == "unknown"
