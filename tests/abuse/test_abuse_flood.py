"""Thousands of flows started from one address against a real ``devicelink serve``.

DEVICELINK_START_RATE_LIMIT defaults to 30 a minute per address: the 31st and every
later start within the minute gets 429 with ``Retry-After``, creates no row, and costs
the server little. Other addresses, and the flows already started, are not affected.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.abuse.attack import figure
from tests.support.databases import pg_fetch_now
from tests.support.http import CLIENT_ID, DEVICE_CODE_GRANT
from tests.support.raw_http import RawResponse, pipelined, request_bytes
from tests.support.secret_scanner import record_secrets
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

FLOWS = 2000
LIMIT = 30


def _start_many(port: int, count: int, connections: int = 8) -> list[RawResponse]:
    """``count`` starts over a few pipelined connections, in parallel threads."""
    requests = [
        request_bytes(
            "POST",
            "/oauth/device/authorize",
            [
                (b"Content-Type", b"application/x-www-form-urlencoded"),
                # A forged client address: 127.0.0.1 is no trusted proxy, so it is ignored.
                (b"X-Forwarded-For", b"198.18.%d.%d" % (index // 250, index % 250)),
            ],
            f"client_id={CLIENT_ID}".encode(),
            keep_alive=True,
        )
        for index in range(count)
    ]
    batches = [requests[i::connections] for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        answers = list(pool.map(lambda batch: pipelined(port, batch), batches))
    return [answer for batch in answers for answer in batch]


def _rows(server: ServerProcess) -> int:
    (row,) = pg_fetch_now(
        server.database_url,
        "SELECT count(*) FROM device_authorizations WHERE request_ip = '127.0.0.1'",
    )
    return int(row[0])


def test_2000_flows_from_one_address_only_30_are_started(server: ServerProcess) -> None:
    started = time.monotonic()
    answers = _start_many(server.port, FLOWS)
    elapsed = time.monotonic() - started

    statuses = Counter(answer.status for answer in answers)
    accepted = [json.loads(answer.body) for answer in answers if answer.status == 200]
    for body in accepted:
        record_secrets(body)  # raw answers: tell the audit what was handed out
    limited = [answer for answer in answers if answer.status == 429]
    figure(
        f"{FLOWS} flows started from one address",
        f"{len(accepted)} accepted, {len(limited)} got 429 "
        f"({elapsed:.1f} s, {FLOWS / elapsed:.0f} requests/s)",
    )
    assert statuses == {200: LIMIT, 429: FLOWS - LIMIT}, statuses
    assert elapsed < 60, "the whole flood must fall within the one-minute window"
    retry_after = sorted({int(answer.headers["retry-after"]) for answer in limited})
    figure("Retry-After of the 429s", f"{retry_after[0]} to {retry_after[-1]} s")
    assert retry_after[0] > 0
    assert retry_after[-1] <= 60
    for answer in limited[:50]:
        assert answer.headers["content-type"].startswith("application/json")
        body = json.loads(answer.body)
        assert body["error"] == "temporarily_unavailable"
        assert body["error_description"]
        assert "device_code" not in body
    # A refused start leaves nothing behind: one row per accepted flow.
    assert _rows(server) == LIMIT

    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        # The flows already started still poll normally (the limit is on starting).
        device_code = accepted[0]["device_code"]
        poll = http.post(
            "/oauth/device/token",
            data={"grant_type": DEVICE_CODE_GRANT, "device_code": device_code},
        )
        assert poll.status_code == 400
        assert poll.json()["error"] in ("authorization_pending", "slow_down")
        # Still refused, even for a client that does not exist: the limit is taken
        # before the request is read.
        again = http.post("/oauth/device/authorize", data={"client_id": "no-such-client"})
        assert again.status_code == 429
    # Another address (127.0.0.2, also loopback) has its own allowance.
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=server.base_url, timeout=10, transport=elsewhere) as http:
        assert (
            http.post("/oauth/device/authorize", data={"client_id": CLIENT_ID}).status_code == 200
        )
    server.assert_healthy()
