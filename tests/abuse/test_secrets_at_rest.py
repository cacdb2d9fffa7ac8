"""Secrets at rest in a real ``devicelink serve``'s PostgreSQL database, mid-flow.

DESIGN.md: "Neither [code] is stored in clear: only a keyed hash". The end-of-session
audit (tests/support/secrets_audit.py) searches every database for every code the tests saw;
this test looks at the moment a user code is most exposed: typed, and waiting on the
confirm page for Approve or Deny.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.accounts import SESSION_COOKIE, add_users, open_sessions
from tests.support.databases import pg_fetch_now
from tests.support.http import CLIENT_ID, csrf_of, decision
from tests.support.servers import STRONG_SECRET, ServerProcess

pytestmark = pytest.mark.slow

DEVICE_ADDRESS = "127.0.0.7"
"""This module's client address (see conftest.py)."""


@pytest.fixture(scope="module")
def reviewing(server: ServerProcess) -> Iterator[dict[str, str]]:
    """A flow whose code a signed-in user has typed: the confirm page is showing."""
    add_users(server.database_url, ["dora"])
    (session,) = open_sessions(server.database_url, STRONG_SECRET, ["dora"])
    transport = httpx.HTTPTransport(local_address=DEVICE_ADDRESS)
    with httpx.Client(
        base_url=server.base_url,
        transport=transport,
        cookies={SESSION_COOKIE: session},
        timeout=10,
    ) as http:
        flow = http.post("/oauth/device/authorize", data={"client_id": CLIENT_ID}).json()
        page = http.get("/oauth/device/verify")
        confirm = http.post(
            "/oauth/device/verify",
            data={"user_code": flow["user_code"].lower(), "csrf_token": csrf_of(page)},
        )
        assert confirm.status_code == 200, confirm.text
        assert "Approve" in confirm.text
        yield {"user_code": flow["user_code"], "device_code": flow["device_code"]}
        # Then deny it, so the flow ends.
        http.post("/oauth/device/decide", data=decision(confirm, "deny"))


def _database_text(server: ServerProcess) -> dict[str, str]:
    tables = [
        row[0]
        for row in pg_fetch_now(
            server.database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    ]
    return {
        table: "\n".join(
            str(row[0])
            for row in pg_fetch_now(server.database_url, f'SELECT t::text FROM "{table}" t')
        )
        for table in tables
    }


def _holding(texts: dict[str, str], needle: str) -> set[str]:
    return {table for table, text in texts.items() if needle.lower() in text.lower()}


def test_no_device_code_and_no_code_hash_key_in_clear_mid_flow(
    server: ServerProcess, reviewing: dict[str, str]
) -> None:
    texts = _database_text(server)
    assert "device_authorizations" in texts
    assert _holding(texts, reviewing["device_code"]) == set()
    assert _holding(texts, reviewing["user_code"]) == set()  # XXXX-XXXX, as shown


def test_the_code_under_review_is_not_kept_in_clear_in_the_session(
    server: ServerProcess, reviewing: dict[str, str]
) -> None:
    """The session holds an opaque reference (the code's keyed hash) between the
    confirm page and the decision, not the code (it did, in clear, until a690117)."""
    texts = _database_text(server)
    normalised = reviewing["user_code"].replace("-", "")
    assert _holding(texts, normalised) == set()
    assert _holding(texts, normalised.encode().hex()) == set()
    assert "review:" in texts["browser_sessions"]
