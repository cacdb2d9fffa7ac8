"""``login``: what it prints and in which order, ``--json``, the exit code of every
failure, the browser, ``--qr``, and what happens when a key is already stored."""

from __future__ import annotations

from typing import Any

import pytest

from devicelink.cli import main
from devicelink.client import ExitCode
from devicelink.client.pacing import POLL_MARGIN
from tests.client_credentials.keyrings import MemoryKeyring

from .conftest import EXPIRES_AT, SERVER, USER_CODE, Cli, json_lines

LINK = f"{SERVER}/oauth/device/verify?user_code={USER_CODE}"
LOGIN_RESULT_KEYS = {
    "server",
    "user",
    "expires_at",
    "scope",
    "client_id",
    "stored_in",
    "already_logged_in",
    "method",
    "previous_key",
}


def login(cli: Cli, *args: str, env: dict[str, str] | None = None) -> Any:
    return cli(main, "login", "--server", SERVER, "--no-browser", *args, env=env)


@pytest.mark.rfc("8628", "3.3")
def test_login_shows_the_code_and_link_first_then_stores_the_key(cli: Cli) -> None:
    result = login(cli)
    assert result.exit_code == 0, result.output
    first_lines = result.stderr.splitlines()[:6]
    assert first_lines[0] == f"To log in to {SERVER}, open this link in a browser:"
    assert LINK in first_lines[2]
    assert USER_CODE in first_lines[4]
    assert f"{SERVER}/oauth/device/verify and type the code" in first_lines[5]
    assert "Waiting for approval in the browser: 10:00 left" in result.stderr
    assert result.stdout.splitlines()[0] == f"Logged in to {SERVER} as alice."
    assert "2030-01-01 12:00 UTC" in result.stdout
    assert "credentials.json" in result.stdout
    stored = cli.store().get(SERVER)
    assert stored is not None
    assert stored.access_token == "dlk_issued1_check"
    assert stored.username == "alice"
    assert stored.expires_at == EXPIRES_AT
    assert stored.client_id == "devicelink-cli"
    # The flow waited `interval` (+ margin) before each of its two polls, and never for real.
    assert cli.sleeps.waited == [5 + POLL_MARGIN, 5 + POLL_MARGIN]
    assert cli.browser.opened == []


@pytest.mark.rfc("8628", "3.3")
def test_login_json_prints_one_object_and_the_code_as_a_json_line(cli: Cli) -> None:
    result = login(cli, "--json")
    assert result.exit_code == 0, result.output
    (document,) = json_lines(result.stdout)
    assert set(document) == LOGIN_RESULT_KEYS
    assert document["server"] == SERVER
    assert document["user"] == "alice"
    assert document["expires_at"] == EXPIRES_AT.isoformat()
    assert document["scope"] == "api"
    assert document["stored_in"] == str(cli.credentials_file)
    assert document["already_logged_in"] is False
    assert document["method"] == "device"
    events = json_lines(result.stderr)  # every line of stderr is JSON too
    assert events[0] == {
        "event": "code",
        "server": SERVER,
        "user_code": USER_CODE,
        "verification_uri": f"{SERVER}/oauth/device/verify",
        "verification_uri_complete": LINK,
        "expires_in": 600,
        "interval": 5,
    }
    assert [e["event"] for e in events[1:]] == ["warning"]  # no keyring: keys go to a file
    assert "keeping keys in" in events[1]["message"]


def test_login_with_a_working_keyring_stores_there(cli: Cli, memory_keyring: MemoryKeyring) -> None:
    result = login(cli, "--json")
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["stored_in"] == "keyring"
    assert ("devicelink", SERVER) in memory_keyring.entries
    assert not (cli.credentials_file).exists()
    assert len(json_lines(result.stderr)) == 1  # the code, no warning


FAILURES = [
    # token endpoint answer, exit code, --json error
    ("access_denied", ExitCode.DENIED, "access_denied"),
    ("expired_token", ExitCode.EXPIRED, "expired_token"),
    ("invalid_grant", ExitCode.EXPIRED, "invalid_grant"),
    ("unsupported_grant_type", ExitCode.ERROR, "unsupported_grant_type"),
]


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize(("answer", "code", "error"), FAILURES)
def test_each_refusal_has_its_exit_code_and_message(
    cli: Cli, answer: str, code: ExitCode, error: str
) -> None:
    cli.server.token_answers = ["authorization_pending", answer]
    human = login(cli)
    assert human.exit_code == code
    assert human.stdout == ""
    assert "Error: " in human.stderr
    assert human.stderr.index(USER_CODE) < human.stderr.index("Error: ")

    cli.server.token_answers = ["authorization_pending", answer]
    machine = login(cli, "--json")
    assert machine.exit_code == code
    (document,) = json_lines(machine.stdout)
    assert set(document) == {"error", "message"}
    assert document["error"] == error
    assert document["message"]
    assert cli.store().get(SERVER) is None


def test_denied_and_expired_say_so_in_words(cli: Cli) -> None:
    cli.server.token_answers = ["access_denied"]
    # The server's reason is shown (a key issuer's refusal says why, issue 17).
    assert "sign-in was denied: access_denied!" in login(cli).stderr
    cli.server.token_answers = ["expired_token"]
    assert "code expired" in login(cli).stderr


def test_unreachable_server_is_exit_5(cli: Cli) -> None:
    cli.server.down = True
    result = login(cli, "--json")
    assert result.exit_code == ExitCode.NETWORK
    assert result.exit_code == 5
    assert json_lines(result.stdout) == [
        {"error": "server_unreachable", "message": json_lines(result.stdout)[0]["message"]}
    ]
    assert "could not be reached" in json_lines(result.stdout)[0]["message"]
    human = login(cli)
    assert human.exit_code == 5
    assert "could not be reached" in human.stderr


def test_ctrl_c_while_waiting_is_exit_130(cli: Cli) -> None:
    cli.sleeps.raise_on = 1
    result = login(cli)
    assert result.exit_code == ExitCode.INTERRUPTED
    assert result.exit_code == 130
    assert USER_CODE in result.stderr
    assert "Interrupted" in result.stderr
    assert "Aborted" not in result.output  # Click's own handler did not run
    cli.sleeps.waited.clear()
    machine = login(cli, "--json")
    assert machine.exit_code == 130
    assert json_lines(machine.stdout)[0]["error"] == "interrupted"


def test_unknown_client_and_wrong_server_are_exit_1(cli: Cli) -> None:
    cli.server.authorize_error = "invalid_client"
    result = login(cli, "--client-id", "nobody", "--json")
    assert result.exit_code == ExitCode.ERROR
    assert json_lines(result.stdout)[0]["error"] == "invalid_client"

    # The metadata names another issuer (RFC 8414 section 3.3).
    other = cli(main, "login", "--server", "https://other.example.com", "--json")
    assert other.exit_code == ExitCode.ERROR
    assert json_lines(other.stdout)[0]["error"] == "discovery_failed"


def test_a_server_that_is_not_a_url_is_a_usage_error(cli: Cli) -> None:
    result = cli(main, "login", "--server", "ftp://example.com", "--json")
    assert result.exit_code == ExitCode.USAGE
    assert result.exit_code == 2
    assert json_lines(result.stdout)[0]["error"] == "invalid_server"
    assert cli.server.requests == []


def test_scope_and_client_id_are_sent(cli: Cli) -> None:
    result = login(cli, "--client-id", "mycli", "--scope", "api read", "--json")
    assert result.exit_code == 0, result.output
    authorize = next(r for r in cli.server.requests if r.url.path == "/oauth/device/authorize")
    assert b"client_id=mycli" in authorize.content
    assert b"scope=api+read" in authorize.content
    stored = cli.store().get(SERVER)
    assert stored is not None
    assert stored.client_id == "mycli"
    assert stored.scope == "api read"


def test_the_default_server_comes_from_the_environment(cli: Cli) -> None:
    result = cli(main, "login", "--no-browser", "--json", env={"DEVICELINK_SERVER": SERVER})
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["server"] == SERVER


# --- the browser -------------------------------------------------------------------------


def test_a_browser_opens_on_the_complete_link_after_the_code_is_shown(cli: Cli) -> None:
    cli.browser_env = {"DISPLAY": ":0"}
    result = cli(main, "login", "--server", SERVER)
    assert result.exit_code == 0, result.output
    assert cli.browser.opened == [LINK]
    assert result.stderr.index(USER_CODE) < result.stderr.index("Opened the link in your browser")


@pytest.mark.parametrize(
    ("browser_env", "args"),
    [
        ({"DISPLAY": ":0"}, ["--no-browser"]),
        ({"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}, []),
        ({}, []),
    ],
    ids=["--no-browser", "over-ssh", "no-display"],
)
def test_no_browser_where_none_is_plausible_or_wanted(
    cli: Cli, browser_env: dict[str, str], args: list[str]
) -> None:
    cli.browser_env = browser_env
    result = cli(main, "login", "--server", SERVER, *args)
    assert result.exit_code == 0, result.output
    assert cli.browser.opened == []
    assert "Opened the link" not in result.stderr
    assert "Could not open a browser" not in result.stderr


def test_a_browser_that_fails_to_start_is_reported(cli: Cli) -> None:
    cli.browser_env = {"WAYLAND_DISPLAY": "wayland-0"}
    cli.browser.works = False
    result = cli(main, "login", "--server", SERVER)
    assert result.exit_code == 0, result.output
    assert "Could not open a browser: open the link yourself." in result.stderr


def test_json_mode_reports_the_browser_as_an_event(cli: Cli) -> None:
    cli.browser_env = {"DISPLAY": ":0"}
    result = cli(main, "login", "--server", SERVER, "--json")
    events = json_lines(result.stderr)
    assert events[0]["event"] == "code"
    assert {"event": "browser", "opened": True} in events


# --- --qr --------------------------------------------------------------------------------


def test_qr_draws_the_complete_link_after_the_code(cli: Cli) -> None:
    result = login(cli, "--qr")
    assert result.exit_code == 0, result.output
    before, _, after = result.stderr.partition("type the code).")
    assert LINK in before
    assert USER_CODE in before
    blocks = [line for line in after.splitlines() if line and set(line) <= set(" ▀▄█")]
    assert len(blocks) >= 10  # a version-3+ symbol, two modules a line
    assert len({len(line) for line in blocks}) == 1  # square, aligned


def test_qr_is_left_out_of_json_mode(cli: Cli) -> None:
    result = login(cli, "--qr", "--json")
    assert "█" not in result.stderr


# --- already logged in -------------------------------------------------------------------


def test_already_logged_in_with_a_working_key_says_so_and_exits_0(cli: Cli) -> None:
    cli.save()
    result = login(cli)
    assert result.exit_code == 0, result.output
    assert f"Already logged in to {SERVER} as alice" in result.stdout
    assert f"devicelink login --server {SERVER} --force" in result.stdout
    assert "/oauth/device/authorize" not in cli.server.paths()
    assert cli.server.paths()[-1] == "/api/me"

    machine = login(cli, "--json")
    (document,) = json_lines(machine.stdout)
    assert set(document) == LOGIN_RESULT_KEYS
    assert document["already_logged_in"] is True
    assert document["user"] == "alice"


def test_a_stored_key_the_server_refuses_means_logging_in_again(cli: Cli) -> None:
    cli.save("dlk_revoked_check", valid=False)
    result = login(cli)
    assert result.exit_code == 0, result.output
    assert "no longer accepts the stored key" in result.stderr
    assert result.stderr.index(USER_CODE) < result.stderr.index("no longer accepts")
    stored = cli.store().get(SERVER)
    assert stored is not None
    assert stored.access_token == "dlk_issued1_check"


def test_force_logs_in_again_and_revokes_the_replaced_key(cli: Cli) -> None:
    cli.save("dlk_old_check")
    result = login(cli, "--force", "--json")
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["already_logged_in"] is False
    assert [form["token"] for form in cli.server.revoked] == ["dlk_old_check"]
    stored = cli.store().get(SERVER)
    assert stored is not None
    assert stored.access_token == "dlk_issued1_check"


def test_a_key_of_another_client_or_narrower_scope_is_not_enough(cli: Cli) -> None:
    cli.save(client_id="another-cli")
    assert "/oauth/device/authorize" in _paths_of(login(cli), cli)
    cli.server.requests.clear()
    cli.server.token_answers = ["granted"]
    cli.save(scope="read")
    assert "/oauth/device/authorize" in _paths_of(login(cli, "--scope", "api"), cli)


def _paths_of(result: Any, cli: Cli) -> list[str]:
    assert result.exit_code == 0, result.output
    return cli.server.paths()


def test_devicelink_token_in_the_environment_is_mentioned(cli: Cli) -> None:
    result = login(cli, env={"DEVICELINK_TOKEN": "dlk_from_env_check"})
    assert result.exit_code == 0, result.output
    assert "DEVICELINK_TOKEN is set" in result.stderr


def test_already_logged_in_but_the_server_is_down_is_exit_5_at_once(cli: Cli) -> None:
    cli.save()
    cli.server.down = True
    result = login(cli, "--json")
    assert result.exit_code == ExitCode.NETWORK
    assert json_lines(result.stdout)[0]["error"] == "server_unreachable"
    assert set(cli.server.paths()) == {"/api/me"}  # no second round of retries to log in
