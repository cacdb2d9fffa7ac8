"""``make_auth_group(user_agent=...)``: the host CLI names itself in the User-Agent of
every request, so the page where the user approves shows the host's CLI (issue 17)."""

from __future__ import annotations

import socket

import pytest

from devicelink import __version__
from devicelink.client import make_auth_group
from devicelink.client.http import USER_AGENT, DeviceFlowClient, machine_name, user_agent_header

from .conftest import SERVER, Cli

ACME = "acme-cli/2.1"
HOST = machine_name()


def test_every_request_of_the_host_cli_carries_its_product_first(cli: Cli) -> None:
    group = make_auth_group(server=SERVER, client_id="acme", user_agent=ACME)
    login = cli(group, "login", "--no-browser", "--json", prog_name="acme auth")
    assert login.exit_code == 0, login.output
    status = cli(group, "status", "--json", prog_name="acme auth")
    assert status.exit_code == 0, status.output
    logout = cli(group, "logout", "--json", prog_name="acme auth")
    assert logout.exit_code == 0, logout.output

    paths = {request.url.path for request in cli.server.requests}
    assert {"/oauth/device/authorize", "/oauth/device/token", "/api/me", "/oauth/revoke"} <= paths
    agents = {request.headers["user-agent"] for request in cli.server.requests}
    assert agents == {f"{ACME} devicelink/{__version__} (python-httpx; host {HOST})"}


def test_without_one_devicelink_names_itself_and_this_computer(cli: Cli) -> None:
    """Issue 16: the server names a key after the User-Agent that asked for it, so the
    key's name says which computer holds it."""
    group = make_auth_group(server=SERVER)
    assert cli(group, "login", "--no-browser").exit_code == 0
    agents = {request.headers["user-agent"] for request in cli.server.requests}
    assert agents == {f"devicelink/{__version__} (python-httpx; host {HOST})"}
    assert socket.gethostname()[:64] == HOST  # this machine's name (a plain one here)


@pytest.mark.parametrize("name", ["laptop (work)", "a;b", 'quo"te', "tab\there", "é"])
def test_a_host_name_cannot_break_out_of_the_comment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: name)
    cleaned = machine_name()
    assert cleaned is None or not set(cleaned) & set('()\\;"')
    assert cleaned is None or cleaned.isascii()


def test_the_library_client_takes_it_too(cli: Cli) -> None:
    with DeviceFlowClient(SERVER, transport=cli.server.transport(), user_agent=ACME) as client:
        client.discover()
    assert cli.server.requests[-1].headers["user-agent"].startswith(f"{ACME} devicelink/")


@pytest.mark.parametrize("malformed", ["acme\r\nX-Injected: 1", "acme\x00"])
def test_a_user_agent_with_control_characters_is_refused_when_the_group_is_made(
    malformed: str,
) -> None:
    with pytest.raises(ValueError, match="control characters"):
        make_auth_group(user_agent=malformed)


def test_a_blank_one_is_devicelinks_own() -> None:
    assert user_agent_header("  ") == USER_AGENT
    assert user_agent_header(None) == USER_AGENT
