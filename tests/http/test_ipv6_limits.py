"""60 starts from one IPv6 /64 where 30 a minute are allowed (issue 13, item 3): the limit
holds for the prefix, not for each address a client can pick in it."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import ASGIApp

from tests.http.contract import MakeServer

pytestmark = pytest.mark.anyio

AUTHORIZE = "/oauth/device/authorize"


async def start_from(app: ASGIApp, ip: str) -> int:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post(AUTHORIZE, data={"client_id": "devicelink-cli"})
    return response.status_code


@pytest.mark.defect(7)
@pytest.mark.rfc("8628", "5.1")
async def test_starts_from_one_ipv6_prefix_share_one_limit(make_server: MakeServer) -> None:
    async with make_server(start_rate_limit="30/minute") as srv:
        answers = [await start_from(srv.app, f"2001:db8:7:7::{n:x}") for n in range(1, 61)]
        neighbour = await start_from(srv.app, "2001:db8:7:8::1")  # the next /64
    assert answers.count(200) == 30
    assert answers.count(429) == 30
    assert neighbour == 200


async def test_the_prefix_is_a_setting(make_server: MakeServer) -> None:
    async with make_server(start_rate_limit="2/minute", ipv6_limit_prefix=128) as srv:
        answers = [await start_from(srv.app, f"2001:db8:7:7::{n:x}") for n in range(1, 5)]
    assert answers == [200, 200, 200, 200]
