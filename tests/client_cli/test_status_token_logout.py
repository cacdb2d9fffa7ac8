"""``status``, ``token`` and ``logout``: exit codes, ``--json``, the default server,
``DEVICELINK_TOKEN``, and logging out when the server cannot be reached (defect 10)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from devicelink.cli import main
from devicelink.client import ExitCode

from .conftest import EXPIRES_AT, NOW, SERVER, Cli, json_lines

STATUS_KEYS = {"server", "user", "expires_at", "scope", "client_id", "stored_in", "logged_in"}
PAST = datetime(2020, 1, 1, tzinfo=UTC)


# --- status ------------------------------------------------------------------------------


def test_status_names_the_server_user_and_expiry(cli: Cli) -> None:
    cli.save()
    result = cli(main, "status")  # the server last logged in to
    assert result.exit_code == 0, result.output
    assert f"Server:      {SERVER}" in result.stdout
    assert "User:        alice" in result.stdout
    assert "Key expires: 2030-01-01 12:00 UTC" in result.stdout
    assert "Logged in; the server accepts the key." in result.stdout
    assert cli.server.paths() == ["/api/me"]

    machine = cli(main, "status", "--json")
    (document,) = json_lines(machine.stdout)
    assert set(document) == STATUS_KEYS
    assert document["user"] == "alice"
    assert document["logged_in"] is True
    assert document["expires_at"] == EXPIRES_AT.isoformat()
    assert document["stored_in"] == str(cli.credentials_file)


def test_status_when_not_logged_in_is_exit_6(cli: Cli) -> None:
    result = cli(main, "status", "--server", SERVER)
    assert result.exit_code == ExitCode.NOT_LOGGED_IN
    assert result.exit_code == 6
    assert f"Not logged in to {SERVER}" in result.stderr
    # Issue 16: the command it suggests keeps the --server it was given.
    assert f"Run devicelink login --server {SERVER} to log in." in result.stderr
    machine = cli(main, "status", "--server", SERVER, "--json")
    assert json_lines(machine.stdout) == [
        {"error": "not_logged_in", "message": f"not logged in to {SERVER}", "server": SERVER}
    ]
    assert cli.server.requests == []


def test_status_when_the_server_refuses_the_key_is_exit_7(cli: Cli) -> None:
    cli.save(valid=False)
    result = cli(main, "status")
    assert result.exit_code == ExitCode.KEY_REJECTED
    assert result.exit_code == 7
    assert "no longer accepts the key" in result.stderr
    machine = cli(main, "status", "--json")
    assert json_lines(machine.stdout)[0]["error"] == "invalid_token"


def test_status_with_an_expired_key_is_exit_7_without_asking(cli: Cli) -> None:
    cli.save(expires_at=PAST, created_at=datetime(2019, 12, 1, tzinfo=UTC))
    result = cli(main, "status", "--json")
    assert result.exit_code == 7
    assert json_lines(result.stdout)[0]["error"] == "expired"
    assert cli.server.requests == []


def test_status_when_the_server_is_unreachable_is_exit_5(cli: Cli) -> None:
    cli.save()
    cli.server.down = True
    result = cli(main, "status", "--json")
    assert result.exit_code == ExitCode.NETWORK
    assert json_lines(result.stdout)[0]["error"] == "server_unreachable"


def test_devicelink_server_in_the_environment_picks_the_server(cli: Cli) -> None:
    cli.save()
    result = cli(main, "status", "--json", env={"DEVICELINK_SERVER": "https://elsewhere.example"})
    assert result.exit_code == 6
    assert json_lines(result.stdout)[0]["server"] == "https://elsewhere.example"


# --- token -------------------------------------------------------------------------------


def test_token_prints_the_key_and_nothing_else(cli: Cli) -> None:
    cli.save("dlk_stored_check")
    result = cli(main, "token")
    assert result.exit_code == 0
    assert result.stdout == "dlk_stored_check\n"
    assert result.stderr == ""
    assert cli.server.requests == []  # fast: no network


@pytest.mark.parametrize(
    ("fields", "code"),
    [(None, ExitCode.NOT_LOGGED_IN), ({"expires_at": PAST}, ExitCode.KEY_REJECTED)],
    ids=["none", "expired"],
)
def test_token_without_a_usable_key_prints_nothing_on_stdout(
    cli: Cli, fields: dict[str, Any] | None, code: ExitCode
) -> None:
    if fields is not None:
        cli.save(created_at=datetime(2019, 12, 1, tzinfo=UTC), **fields)
    result = cli(main, "token", "--server", SERVER)
    assert result.exit_code == code
    assert result.stdout == ""
    assert "Error: " in result.stderr


def test_devicelink_token_overrides_the_stored_key(cli: Cli) -> None:
    env = {"DEVICELINK_TOKEN": "dlk_from_env_check"}
    assert cli(main, "token", "--server", SERVER, env=env).stdout == "dlk_from_env_check\n"
    cli.save("dlk_stored_check")
    assert cli(main, "token", env=env).stdout == "dlk_from_env_check\n"

    cli.server.keys.add("dlk_from_env_check")
    status = cli(main, "status", "--json", env=env)
    assert status.exit_code == 0, status.output
    assert json_lines(status.stdout)[0]["stored_in"] == "environment"
    me = cli.server.requests[-1]
    assert me.headers["authorization"] == "Bearer dlk_from_env_check"


def test_status_under_devicelink_token_says_the_variable_is_in_use(cli: Cli) -> None:
    """Issue 16, item 9: logging in would change nothing while the variable is set, so
    neither the result nor a refusal tells the user to run login."""
    env = {"DEVICELINK_TOKEN": "dlk_from_env_check"}
    cli.server.keys.add("dlk_from_env_check")
    accepted = cli(main, "status", "--server", SERVER, env=env)
    assert accepted.exit_code == 0, accepted.output
    said = "Logged in with the key in DEVICELINK_TOKEN; the server accepts it."
    assert said in accepted.stdout

    cli.server.keys.clear()
    refused = cli(main, "status", "--server", SERVER, env=env)
    assert refused.exit_code == ExitCode.KEY_REJECTED
    message = " ".join(refused.stderr.split())
    assert f"The server {SERVER} does not accept the key in DEVICELINK_TOKEN" in message
    assert "DEVICELINK_TOKEN is set, and commands use its key" in message
    assert "Run devicelink login" not in message


# --- logout ------------------------------------------------------------------------------


@pytest.mark.defect(10)
@pytest.mark.rfc("7009", "2.1")
def test_logout_revokes_on_the_server_then_forgets(cli: Cli) -> None:
    cli.save("dlk_stored_check")
    result = cli(main, "logout")
    assert result.exit_code == 0, result.output
    assert cli.server.revoked == [
        {
            "token": "dlk_stored_check",
            "token_type_hint": "access_token",
            "client_id": "devicelink-cli",
        }
    ]
    assert "the key was revoked on the server and removed" in result.stdout
    assert cli.store().get(SERVER) is None
    assert not (cli.credentials_file).exists()
    assert cli(main, "token").exit_code == ExitCode.NOT_LOGGED_IN


@pytest.mark.defect(10)
def test_logout_when_the_server_is_unreachable_keeps_the_key_marked_and_says_not_revoked(
    cli: Cli,
) -> None:
    cli.save("dlk_stored_check")
    cli.server.down = True
    result = cli(main, "logout")
    assert result.exit_code == ExitCode.NOT_REVOKED
    assert result.exit_code == 8
    stderr = " ".join(result.stderr.split())
    assert f"The key for {SERVER} was not revoked: the server could not be reached" in stderr
    assert "It is still valid until 2030-01-01 12:00 UTC" in stderr
    assert "marked to be revoked, and is no longer used" in stderr
    assert "the next devicelink logout, or the next command that reaches the server" in stderr
    assert f"sign in at {SERVER}/devices and revoke it there" in stderr
    assert "devicelink logout --force forgets it here anyway" in stderr
    assert "dlk_stored_check" not in result.output
    assert cli.store().get(SERVER) is None  # never used again...
    (marked,) = cli.store().pending_revocation(SERVER)  # ...but not lost
    assert marked.access_token == "dlk_stored_check"
    assert marked.revocation_pending_since == NOW
    assert len(cli.sleeps.waited) == 3  # retried with backoff, without waiting for real


def test_logout_json_shapes(cli: Cli) -> None:
    cli.save("dlk_a_check")
    ok = cli(main, "logout", "--json")
    assert json_lines(ok.stdout) == [{"server": SERVER, "revoked": True, "removed": True}]

    cli.save("dlk_b_check")
    cli.server.down = True
    failed = cli(main, "logout", "--json")
    assert failed.exit_code == 8
    (document,) = json_lines(failed.stdout)
    assert document == {
        "error": "not_revoked",
        "message": document["message"],
        "server": SERVER,
        "reason": "server_unreachable",
        "revoked": False,
        "removed": False,
        "revocation_pending": True,
        "devices_page": f"{SERVER}/devices",
    }
    assert failed.stderr == ""

    forced = cli(main, "logout", "--json", "--force")
    assert forced.exit_code == 8
    (document,) = json_lines(forced.stdout)
    assert (document["revoked"], document["removed"], document["revocation_pending"]) == (
        False,
        True,
        False,
    )

    cli.server.down = False
    assert json_lines(cli(main, "logout", "--json", "--server", SERVER).stdout) == [
        {"server": SERVER, "revoked": False, "removed": False}
    ]


def test_logout_when_not_logged_in_has_nothing_to_do(cli: Cli) -> None:
    result = cli(main, "logout", "--server", SERVER)
    assert result.exit_code == 0
    assert "Not logged in" in result.stdout
    assert "nothing to do" in result.stdout
    assert cli.server.requests == []


def test_logout_leaves_other_servers_logged_in(cli: Cli) -> None:
    cli.save("dlk_one_check")
    other = cli.save("dlk_two_check", server="https://other.example.com")
    result = cli(main, "logout", "--server", SERVER)
    assert result.exit_code == 0, result.output
    assert cli.store().get(SERVER) is None
    assert cli.store().get(other.server) == other
