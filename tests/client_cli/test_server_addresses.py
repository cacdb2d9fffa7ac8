"""Issue 16, item 8: server addresses as a new user types them. A bare ``127.0.0.1:PORT``
or ``localhost:PORT`` is the local ``devicelink serve`` (http), and both spellings are one
server; a malformed address is refused before any request; a host that does not resolve,
or TLS spoken to a plain http server, fails at once (not after four tries) with what to
check.

Against a real ``devicelink serve`` on loopback, as test_unrevoked_key_real_server.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from devicelink.cli import main
from devicelink.client import ClientHooks, ExitCode

from .conftest import Sleeps, json_lines
from .test_unrevoked_key_real_server import RealServer, User, server, user

__all__ = ["server", "user"]  # the fixtures


def _port(server: RealServer) -> str:
    return server.url.rsplit(":", 1)[1]


@pytest.mark.slow
def test_a_bare_localhost_address_is_the_local_http_server_and_127_0_0_1_the_same(
    server: RealServer, user: User
) -> None:
    port = _port(server)
    result = user("login", "--server", f"localhost:{port}", "--device-code")
    assert result.exit_code == 0, result.output
    assert f"Logged in to http://127.0.0.1:{port}" in result.stdout
    key = user.key()
    assert key is not None
    assert server.me(key) == 200
    user.sleeps.waited.clear()  # the device flow's polls

    token = user("token", "--server", f"127.0.0.1:{port}")
    assert token.exit_code == 0, token.output
    assert token.stdout == key + "\n"
    status = user("status", "--server", f"http://localhost:{port}/")
    assert status.exit_code == 0, status.output
    assert user.sleeps.waited == []  # nothing was retried


@pytest.mark.slow
def test_https_to_the_plain_http_server_fails_at_once_and_says_to_use_http(
    server: RealServer, user: User
) -> None:
    port = _port(server)
    result = user("login", "--server", f"https://127.0.0.1:{port}", "--device-code")
    assert result.exit_code == ExitCode.NETWORK, result.output
    message = " ".join(result.stderr.split())
    assert "does not answer in TLS" in message
    assert f"use http://127.0.0.1:{port}" in message
    assert user.sleeps.waited == []  # one try: another could not mend it


def _run(*args: str) -> tuple[int, str, str, Sleeps]:
    sleeps = Sleeps()
    result = CliRunner().invoke(main, list(args), obj=ClientHooks(sleep=sleeps))
    return result.exit_code, result.stdout, result.stderr, sleeps


def test_a_host_that_does_not_resolve_fails_at_once_and_says_so() -> None:
    # .invalid never resolves (RFC 6761 section 6.4).
    code, _stdout, stderr, sleeps = _run(
        "login", "--server", "https://login.example.invalid", "--device-code"
    )
    assert code == ExitCode.NETWORK
    assert "could not be found (DNS)" in " ".join(stderr.split())
    assert sleeps.waited == []


def test_a_malformed_address_is_refused_before_any_request() -> None:
    code, stdout, _stderr, sleeps = _run("status", "--server", "http:/localhost:8000", "--json")
    assert code == ExitCode.USAGE
    (failure,) = json_lines(stdout)
    assert failure["error"] == "invalid_server"
    assert "write http:// (with two slashes)" in failure["message"]
    assert sleeps.waited == []
