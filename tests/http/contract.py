"""What the HTTP contract tests share: the machine endpoints' paths, the form's media
type, the types of the fixtures of tests/http/conftest.py, and the steps and checks
most tests take (an error's format, a key issued, a row counted)."""

from __future__ import annotations

import base64
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devicelink.core.models import Client, User
from devicelink.storage import SqlStore
from tests.support.app import Server

AUTHORIZE = "/oauth/device/authorize"
TOKEN = "/oauth/device/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
THIRTY_DAYS = 30 * 86_400
Flow = dict[str, Any]
"""A flow as the device authorization endpoint answered it (``device_code``, ``user_code``
...)."""


class MakeServer(Protocol):
    """``async with make_server(default_client_id=None) as srv:``"""

    def __call__(self, **overrides: Any) -> AbstractAsyncContextManager[Server]: ...


class RegisterClient(Protocol):
    """``await register_client(server, "ci-bot", secret="s3cret", key_lifetime=None)``"""

    async def __call__(
        self,
        srv: Server,
        client_id: str,
        *,
        secret: str | None = None,
        scopes: tuple[str, ...] = ("api",),
        key_lifetime: int | None = THIRTY_DAYS,
        resource_server: bool = False,
    ) -> Client: ...


def assert_oauth_error(
    response: httpx.Response, status: int, error: str | None = None
) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error (``error`` when given): JSON, not cached, never
    FastAPI's ``{"detail": ...}``, never a stack trace, never a key."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("cache-control") == "no-store"
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str), body
    assert body["error"], body
    if error is not None:
        assert body["error"] == error, body
    assert "detail" not in body
    assert "access_token" not in body
    if "error_description" in body:
        assert isinstance(body["error_description"], str)
    return body


def basic(client_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic client authentication: id and secret form-urlencoded first (RFC 6749
    section 2.3.1)."""
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


async def add_client(
    srv: Server,
    client_id: str,
    *,
    secret: str | None = None,
    scopes: tuple[str, ...] = ("api",),
    key_lifetime: int | None = THIRTY_DAYS,
    resource_server: bool = False,
) -> Client:
    """Register a client in ``srv``'s database (confidential when it has a ``secret``;
    allowed to introspect when ``resource_server``); the ``register_client`` fixture of
    tests/http/conftest.py."""
    client = Client(
        client_id=client_id,
        name=f"{client_id} (test)",
        scopes=scopes,
        key_lifetime=key_lifetime,
        confidential=secret is not None,
        secret_hash=srv.runtime.hasher.client_secret(secret) if secret else None,
        created_at=srv.clock(),
        resource_server=resource_server,
    )
    async with srv.runtime.store.transaction() as tx:
        await tx.clients.add(client)
    return client


async def approve(srv: Server, flow: Flow, user: User) -> None:
    assert await srv.runtime.flows.approve(flow["user_code"], user_id=user.id) == "ok"


async def approved_flow(srv: Server, user: User, **form: str) -> Flow:
    """A flow started (with ``form``) and approved by ``user``."""
    flow = await srv.start_flow(**form)
    await approve(srv, flow, user)
    return flow


async def answer(srv: Server, flow: Flow, **form: str) -> str:
    """What a poll of ``flow`` answers now, in short: ``key`` (200), else the error of an
    RFC 6749 section 5.2 answer (400, checked by :func:`assert_oauth_error`) with the new
    interval after ``slow_down`` (``slow_down 10``)."""
    response = await srv.poll(flow["device_code"], **form)
    if response.status_code == 200:
        return "key"
    body = assert_oauth_error(response, 400)
    error: str = body["error"]
    return f"{error} {body['interval']}" if error == "slow_down" else error


async def answers(srv: Server, flow: Flow, waits: list[float]) -> list[str]:
    """The :func:`answer` to a poll after each of ``waits`` seconds on the clock."""
    found = []
    for wait in waits:
        srv.clock.advance(wait)
        found.append(await answer(srv, flow))
    return found


async def issue_key(srv: Server, user: User, **form: str) -> str:
    """The API key a device receives once ``user`` approved its flow."""
    flow = await approved_flow(srv, user, **form)
    response = await srv.poll(flow["device_code"], **form)
    assert response.status_code == 200, response.text
    key: str = response.json()["access_token"]
    return key


async def me(srv: Server, key: str) -> httpx.Response:
    return await srv.http.get("/api/me", headers={"Authorization": f"Bearer {key}"})


def engine_of(srv: Server) -> AsyncEngine:
    """The database of the app, for the tests that look at its rows."""
    store = srv.runtime.store
    assert isinstance(store, SqlStore)
    return store.engine


async def count(srv: Server, sql: str) -> int:
    async with engine_of(srv).connect() as conn:
        found: int = (await conn.execute(text(sql))).scalar_one()
        return found


UNCOMPARED = {b"x-request-id", b"date", b"server"}
"""Headers that differ between any two answers (or between the two routes' servers)."""


def raw(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An answer as its bytes: status, headers in order (lower-case names, less
    :data:`UNCOMPARED`), body: what compares the thin route with the full one."""
    headers = [(name.lower(), value) for name, value in response.headers.raw]
    return (
        response.status_code,
        [(name, value) for name, value in headers if name not in UNCOMPARED],
        response.content,
    )
