"""``./scripts/test`` on a machine that runs no PostgreSQL and no Redis: the run starts
private ones (tests/support/private_servers.py), and stops them after; a configured
variable, or a server at the default address, is used instead when there is one."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import pytest

from tests.support.databases import ADMIN_POSTGRES_URL
from tests.support.private_servers import (
    PrivateServer,
    answers,
    server_for_run,
    start_postgres,
    start_redis,
)
from tests.support.processes import free_port


def nothing_at(scheme: str) -> str:
    """A URL where nothing listens: the machine without the server."""
    if scheme == "redis":
        return f"redis://127.0.0.1:{free_port()}"
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


def never_started(directory: Path) -> PrivateServer:
    raise AssertionError("a private server was started although one was at hand")


async def create_and_drop_a_database(url: str) -> str:
    """What the suite does on its server: a database of its own, then dropped."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute('CREATE DATABASE "devicelink_private_check"')
        await conn.execute('DROP DATABASE "devicelink_private_check"')
        version: str = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return version


def redis_ping(url: str) -> bytes:
    host, port = url.removeprefix("redis://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(64)


def test_without_postgres_a_private_server_comes_up_answers_and_is_stopped() -> None:
    with server_for_run(None, nothing_at("postgresql"), start_postgres) as url:
        assert answers(url)
        assert asyncio.run(create_and_drop_a_database(url)).startswith("18")
    assert not answers(url)


def test_without_redis_a_private_server_comes_up_answers_and_is_stopped() -> None:
    with server_for_run(None, nothing_at("redis"), start_redis) as url:
        assert redis_ping(url) == b"+PONG\r\n"
    assert not answers(url)


@pytest.mark.parametrize("scheme", ["postgresql", "redis"])
def test_a_configured_variable_wins_even_unreachable(scheme: str) -> None:
    """The operator's choice is kept: an unreachable configured server fails the tests
    that need it, it is not silently replaced."""
    configured = nothing_at(scheme)
    with server_for_run(configured, ADMIN_POSTGRES_URL, never_started) as url:
        assert url == configured


def test_a_server_at_the_default_address_is_preferred() -> None:
    """CI and machines that run PostgreSQL keep using their server."""
    assert answers(ADMIN_POSTGRES_URL)
    with server_for_run(None, ADMIN_POSTGRES_URL, never_started) as url:
        assert url == ADMIN_POSTGRES_URL
