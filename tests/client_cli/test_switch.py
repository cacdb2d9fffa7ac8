"""Issue 16, item 8: ``status --all`` lists every server with a stored key, where each key
is and which server is the default; ``switch SERVER`` chooses the default, as ``gh auth
switch`` does."""

from __future__ import annotations

from devicelink.cli import main
from devicelink.client import ExitCode
from tests.client_credentials.keyrings import MemoryKeyring

from .conftest import SERVER, Cli, json_lines

LOCAL = "http://127.0.0.1:8000"


def test_status_all_lists_each_server_its_store_and_the_default(
    cli: Cli, memory_keyring: MemoryKeyring
) -> None:
    cli.save("dlk_remote_check", username="alice")  # in the keyring
    cli.save("dlk_local_check", server="localhost:8000", username="bob")

    result = cli(main, "status", "--all")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"* {LOCAL} (default)"  # the last logged in to
    assert lines[1].startswith("    as bob; the key expires 2030-01-01 12:00 UTC")
    assert lines[2] == f"  {SERVER}"
    assert lines[-1] == "Change the default with devicelink switch SERVER."
    assert cli.server.requests == []  # from this computer alone
    document = json_lines(cli(main, "status", "--all", "--json").stdout)[0]
    assert document["default"] == LOCAL
    assert [(s["server"], s["user"], s["default"]) for s in document["servers"]] == [
        (LOCAL, "bob", True),
        (SERVER, "alice", False),
    ]
    assert {s["stored_in"] for s in document["servers"]} == {"keyring"}
    assert document["token_env_set"] is False


def test_status_all_says_where_a_file_key_is_and_when_the_environment_wins(cli: Cli) -> None:
    cli.save("dlk_remote_check")
    result = cli(main, "status", "--all", env={"DEVICELINK_TOKEN": "dlk_from_ci_check"})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "DEVICELINK_TOKEN is set: every command uses its key, whichever the server, "
        "not a stored one."
    )
    assert "stored in " in result.stdout
    assert str(cli.credentials_file) in cli(main, "status", "--all", "--json").stdout


def test_switch_makes_a_server_the_default_of_the_next_commands(cli: Cli) -> None:
    cli.save("dlk_remote_check", username="alice")
    cli.save("dlk_local_check", server=LOCAL, username="bob")
    assert cli(main, "token").stdout == "dlk_local_check\n"

    result = cli(main, "switch", "login.example.com")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Switched: the default server is now {SERVER} (as alice).\n"
    assert cli(main, "token").stdout == "dlk_remote_check\n"
    document = json_lines(cli(main, "status", "--all", "--json").stdout)[0]
    assert document["default"] == SERVER


def test_switch_to_a_server_without_a_key_fails_and_names_those_with_one(cli: Cli) -> None:
    cli.save("dlk_remote_check")
    result = cli(main, "switch", "other.example.com")
    assert result.exit_code == ExitCode.NOT_LOGGED_IN
    message = " ".join(result.stderr.split())
    assert "No key is stored for https://other.example.com." in message
    assert "devicelink login --server https://other.example.com" in message
    assert f"Servers with a stored key: {SERVER}." in message
    assert cli(main, "token").stdout == "dlk_remote_check\n"  # the default is unchanged


def test_switch_warns_when_the_environment_names_the_server(cli: Cli) -> None:
    cli.save("dlk_remote_check")
    result = cli(main, "switch", SERVER, env={"DEVICELINK_SERVER": LOCAL})
    assert result.exit_code == 0, result.output
    assert "DEVICELINK_SERVER is set" in result.stderr
