"""The defects of the original system (DESIGN.md), each shown absent through HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from devicelink.core.lifecycle import Verdict
from devicelink.core.models import User
from tests.http.contract import (
    Flow,
    RegisterClient,
    answer,
    answers,
    approve,
    count,
    engine_of,
    me,
)
from tests.support.app import Server

pytestmark = pytest.mark.anyio

ALPHABET = set("BCDFGHJKLMNPQRSTVWXZ")
TABLES = ("clients", "users", "device_authorizations", "api_keys")


def error_of(response: httpx.Response) -> str:
    assert response.status_code != 200, response.text
    body = response.json()
    assert "access_token" not in body
    error: str = body["error"]
    return error


async def rows(srv: Server, table: str) -> list[tuple[Any, ...]]:
    async with engine_of(srv).connect() as conn:
        return [tuple(r) for r in await conn.execute(text(f"SELECT * FROM {table}"))]


# --- defect 1 ----------------------------------------------------------------------------


@pytest.mark.defect(1)
@pytest.mark.rfc("8628", "3.5")
async def test_defect1_device_code_is_consumed_by_the_poll_that_gets_the_key(
    server: Server, approved: Flow
) -> None:
    granted = await server.poll(approved["device_code"])
    assert granted.status_code == 200
    key = granted.json()["access_token"]
    assert (await me(server, key)).status_code == 200
    later = [await server.poll(approved["device_code"])]  # at once, faster than the interval
    for step in (5, 5, 60, 600, 86_400):
        server.clock.advance(step)
        later.append(await server.poll(approved["device_code"]))
    assert [error_of(r) for r in later] == ["invalid_grant"] * 6
    assert all(key not in r.text for r in later)
    assert await count(server, "SELECT count(*) FROM api_keys") == 1


# --- defect 2 ----------------------------------------------------------------------------


@pytest.mark.defect(2)
async def test_defect2_no_key_or_code_is_stored_in_clear(server: Server, approved: Flow) -> None:
    pending = await server.start_flow()
    key = (await server.poll(approved["device_code"])).json()["access_token"]
    assert (await me(server, key)).is_success

    secrets_in_clear = {
        "key": key,
        "key random part": key[4:-7],
        "device code": approved["device_code"],
        "pending device code": pending["device_code"],
        "user code": approved["user_code"],
        "user code, normalised": approved["user_code"].replace("-", ""),
        "pending user code": pending["user_code"].replace("-", ""),
    }
    needles: dict[str, bytes] = {}
    for name, value in secrets_in_clear.items():
        needles[name] = value.encode()
        needles[f"{name} (lower case)"] = value.lower().encode()
        # An unkeyed hash would be as good as clear text for a short user code.
        digest = hashlib.sha256(value.encode()).digest()
        needles[f"sha256({name})"] = digest
        needles[f"sha256({name}) hex"] = digest.hex().encode()

    seen_rows = 0
    for table in TABLES:
        for row in await rows(server, table):
            seen_rows += 1
            for column in row:
                if column is None:
                    continue
                if isinstance(column, bytes | memoryview):
                    haystack = bytes(column)
                else:
                    haystack = str(column).encode()
                for name, needle in needles.items():
                    assert needle not in haystack, f"{name} found in clear in table {table}"
    assert await count(server, "SELECT count(*) FROM api_keys") == 1
    assert await count(server, "SELECT count(*) FROM device_authorizations") == 2
    assert seen_rows >= 5


# --- defect 4 ----------------------------------------------------------------------------


@pytest.mark.defect(4)
@pytest.mark.rfc("8628", "3.4")
async def test_defect4_grant_type_is_not_ignored(server: Server, approved: Flow) -> None:
    wrong = await answer(server, approved, grant_type="authorization_code")
    assert wrong == "unsupported_grant_type"
    assert await answer(server, approved) == "key"


@pytest.mark.defect(4)
@pytest.mark.rfc("8628", "3.4")
async def test_defect4_client_id_is_not_ignored(
    server: Server, register_client: RegisterClient, approved: Flow
) -> None:
    await register_client(server, "other-cli")
    unknown = await server.poll(approved["device_code"], client_id="made-up")
    assert unknown.status_code == 401
    assert error_of(unknown) == "invalid_client"
    assert await answer(server, approved, client_id="other-cli") == "invalid_grant"
    unknown_start = await server.http.post("/oauth/device/authorize", data={"client_id": "x"})
    assert unknown_start.status_code == 401
    assert await answer(server, approved) == "key"


@pytest.mark.defect(4)
@pytest.mark.rfc("6749", "5.2")
async def test_defect4_errors_are_rfc6749_json_never_422_or_detail(server: Server) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/oauth/device/token", {"content": b"", "headers": form}),
        ("POST", "/oauth/device/token", {"json": {"device_code": "x"}}),
        ("POST", "/oauth/device/token", {"data": {"device_code": 1}}),
        ("POST", "/oauth/device/token", {"content": b"device_code=%ff", "headers": form}),
        ("POST", "/oauth/device/authorize", {"data": {"client_id": "nobody"}}),
        ("POST", "/oauth/device/authorize", {"data": {"scope": "root"}}),
        ("POST", "/oauth/device/authorize", {"content": b"x" * 70_000, "headers": form}),
        ("GET", "/oauth/device/token", {}),
        ("GET", "/api/me", {}),
        ("GET", "/missing", {}),
    ]
    for method, path, kwargs in requests:
        response = await server.http.request(method, path, **kwargs)
        assert 400 <= response.status_code < 500, (path, response.status_code)
        assert response.status_code != 422, (path, response.text)
        body = response.json()
        assert set(body) <= {"error", "error_description", "error_uri", "interval"}, body
        # RFC 6749 section 5.2: error is ASCII without '"' and '\\'.
        assert re.fullmatch(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+", body["error"]), body
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.defect(4)
@pytest.mark.rfc("6749", "5.1")
async def test_defect4_expires_in_is_a_number_when_the_key_expires(
    server: Server, approved: Flow
) -> None:
    body = (await server.poll(approved["device_code"])).json()
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] == 30 * 86_400
    assert body["expires_in"] is not None
    server.clock.advance(body["expires_in"])
    assert (await me(server, body["access_token"])).status_code == 401


# --- defect 5 ----------------------------------------------------------------------------


@pytest.mark.defect(5)
@pytest.mark.rfc("8628", "6.1")
async def test_defect5_user_codes_use_the_base20_alphabet(server: Server) -> None:
    codes = [(await server.start_flow())["user_code"] for _ in range(25)]
    for code in codes:
        assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", code), code
        letters = code.replace("-", "")
        assert set(letters) <= ALPHABET, code
        assert not set(letters) & set("AEIOUY0123456789"), code
    # 25 codes of 8 letters: every letter drawn is from the alphabet, and not stuck.
    assert len(set("".join(codes)) - {"-"}) >= 12


@pytest.mark.defect(5)
@pytest.mark.rfc("8628", "6.1")
@pytest.mark.parametrize(
    "typed",
    [
        lambda c: c.lower(),
        lambda c: c.replace("-", ""),
        lambda c: c.replace("-", "").lower(),
        lambda c: c.replace("-", " "),
        lambda c: " ".join(c.replace("-", "")),
        lambda c: f"  {c.lower()}  ",
        lambda c: c[:2].lower() + c[2:],
        lambda c: c.replace("-", "\u2013"),  # an en dash from a phone keyboard
    ],
    ids=["lower", "no-dash", "no-dash-low", "space", "spaced", "padded", "mixed", "endash"],
)
async def test_defect5_user_code_typed_in_any_case_with_or_without_dash(
    server: Server, alice: User, typed: Callable[[str], str]
) -> None:
    flow = await server.start_flow()
    assert await server.runtime.flows.approve(typed(flow["user_code"]), user_id=alice.id) == "ok"
    assert await answer(server, flow) == "key"


@pytest.mark.defect(5)
@pytest.mark.rfc("8628", "6.1")
async def test_defect5_a_near_miss_is_not_a_match(server: Server, alice: User) -> None:
    flow = await server.start_flow()
    code = flow["user_code"].replace("-", "")
    near_misses = [
        code[:-1],  # one letter short
        code + code[0],  # one letter too many
        code[:-1] + ("B" if code[-1] != "B" else "C"),  # one letter wrong
        code[:-1] + "A",  # a vowel
        code[:-1] + "1",  # a digit
    ]
    for typed in near_misses:
        assert await server.runtime.flows.approve(typed, user_id=alice.id) == "unknown", typed
    assert await answer(server, flow) == "authorization_pending"


# --- defect 8 ----------------------------------------------------------------------------


@pytest.mark.defect(8)
@pytest.mark.rfc("8628", "3.5")
async def test_defect8_a_fast_poller_still_gets_the_key_when_approved(
    server: Server, alice: User
) -> None:
    flow = await server.start_flow()
    assert await answers(server, flow, [0, 0]) == ["authorization_pending", "slow_down 10"]
    await approve(server, flow, alice)
    # Polled again at once, far faster than the (now 15 s) interval: the key anyway.
    assert await answer(server, flow) == "key"


@pytest.mark.defect(8)
@pytest.mark.rfc("8628", "3.5")
async def test_defect8_a_fast_poller_still_learns_of_denial(server: Server, alice: User) -> None:
    flow = await server.start_flow()
    await answer(server, flow)
    await server.runtime.flows.deny(flow["user_code"], user_id=alice.id)
    assert await answers(server, flow, [0, 0]) == ["access_denied", "access_denied"]


@pytest.mark.defect(8)
@pytest.mark.rfc("8628", "3.5")
async def test_defect8_a_fast_poller_still_learns_of_expiry(server: Server) -> None:
    flow = await server.start_flow()
    # The second poll one second after the first: too early, but expired.
    expected = ["authorization_pending"] + ["expired_token"] * 2
    assert await answers(server, flow, [599, 1, 0]) == expected


@pytest.mark.defect(8)
@pytest.mark.rfc("8628", "3.5")
async def test_defect8_a_fast_poller_of_a_used_code_learns_it_is_used(
    server: Server, approved: Flow
) -> None:
    assert await answers(server, approved, [0, 0]) == ["key", "invalid_grant"]


# --- defect 9 ----------------------------------------------------------------------------


@pytest.mark.defect(9)
@pytest.mark.rfc("8628", "3.5")
async def test_defect9_concurrent_polls_of_an_approved_code_issue_one_key(
    server: Server, approved: Flow
) -> None:
    responses = await asyncio.gather(*(server.poll(approved["device_code"]) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert all(error_of(r) == "invalid_grant" for r in responses if r.status_code != 200)
    assert await count(server, "SELECT count(*) FROM api_keys") == 1
    winner = next(r for r in responses if r.status_code == 200).json()["access_token"]
    assert (await me(server, winner)).status_code == 200


@pytest.mark.defect(9)
@pytest.mark.rfc("8628", "3.5")
async def test_defect9_concurrent_polls_of_a_pending_code_stay_protocol_answers(
    server: Server,
) -> None:
    flow = await server.start_flow()
    responses = await asyncio.gather(*(server.poll(flow["device_code"]) for _ in range(20)))
    errors = [error_of(r) for r in responses]
    assert all(r.status_code == 400 for r in responses)
    assert set(errors) <= {"authorization_pending", "slow_down"}
    assert errors.count("authorization_pending") == 1


@pytest.mark.defect(9)
@pytest.mark.rfc("8628", "3.3")
async def test_defect9_concurrent_approve_and_deny_exactly_one_wins(
    server: Server, alice: User, bob: User
) -> None:
    flows = server.runtime.flows
    for _ in range(6):
        flow = await server.start_flow()
        approved, denied = await asyncio.gather(
            flows.approve(flow["user_code"], user_id=alice.id),
            flows.deny(flow["user_code"], user_id=bob.id),
        )
        assert [approved, denied].count(Verdict.OK) == 1, (approved, denied)
        polled = await answer(server, flow)
        if approved == "ok":
            assert (denied, polled) == ("already_approved", "key")
        else:
            assert (approved, polled) == ("already_denied", "access_denied")


@pytest.mark.defect(9)
@pytest.mark.rfc("8628", "3.3")
async def test_defect9_two_users_approving_at_once_one_owns_the_key(
    server: Server, alice: User, bob: User
) -> None:
    flow = await server.start_flow()
    results = await asyncio.gather(
        server.runtime.flows.approve(flow["user_code"], user_id=alice.id),
        server.runtime.flows.approve(flow["user_code"], user_id=bob.id),
    )
    assert sorted(results) == ["already_approved", "ok"]
    winner = "alice" if results[0] == "ok" else "bob"
    key = (await server.poll(flow["device_code"])).json()["access_token"]
    assert (await me(server, key)).json()["username"] == winner
