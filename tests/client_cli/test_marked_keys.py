"""Issue 13, finding 6, against the scripted server: what a logout that cannot revoke the
key does for each kind of failure, and how ``token``, ``status`` and ``login`` treat a key
marked to be revoked. The same story against a real ``devicelink serve`` is in
test_unrevoked_key_real_server.py; here are the answers a real server does not give on
demand (503, refusals) and the corners (``login --force``, the keyring, an old file).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from devicelink.cli import main
from devicelink.client import CredentialStore, ExitCode
from tests.client_credentials.keyrings import MemoryKeyring

from .conftest import NOW, SERVER, Cli, json_lines

KEY = "dlk_stored_check"
DEVICES = f"{SERVER}/devices"


def flat(text: str) -> str:
    """``text`` on one line (rich wraps nothing, but the hint is a line of its own)."""
    return " ".join(text.split())


def log_out_while_down(cli: Cli, key: str = KEY) -> None:
    """A stored key, and a logout that cannot reach the server: the key is marked."""
    cli.save(key)
    cli.server.down = True
    assert cli(main, "logout").exit_code == ExitCode.NOT_REVOKED
    cli.server.down = False


def revoked_tokens(cli: Cli) -> list[str]:
    return [form["token"] for form in cli.server.revoked]


# --- logout: which answers mean "gone", which mean "keep it" -----------------------------------


@pytest.mark.defect(10)
def test_logout_keeps_the_key_when_the_server_answers_503(cli: Cli) -> None:
    cli.save(KEY)
    cli.server.revoke_answers = ["unavailable"] * 4  # every try the client makes
    result = cli(main, "logout", "--json")
    assert result.exit_code == ExitCode.NOT_REVOKED
    (document,) = json_lines(result.stdout)
    assert document["reason"] == "server_unreachable"
    assert "HTTP 503" in document["message"]
    assert document["revocation_pending"] is True
    assert [key.access_token for key in cli.store().pending_revocation(SERVER)] == [KEY]
    assert KEY not in result.output


@pytest.mark.defect(10)
@pytest.mark.rfc("7009", "2.2")
def test_logout_keeps_the_key_when_the_server_refuses_to_revoke_it(cli: Cli) -> None:
    cli.save(KEY)
    cli.server.revoke_answers = ["unsupported_token_type"]
    result = cli(main, "logout", "--json")
    assert result.exit_code == ExitCode.NOT_REVOKED
    (document,) = json_lines(result.stdout)
    assert document["reason"] == "unsupported_token_type"
    assert document["devices_page"] == DEVICES
    assert [key.access_token for key in cli.store().pending_revocation(SERVER)] == [KEY]


@pytest.mark.defect(10)
@pytest.mark.rfc("7009", "2.2")
def test_a_refusal_saying_the_key_is_already_invalid_means_it_is_gone(cli: Cli) -> None:
    cli.save(KEY)
    cli.server.revoke_answers = ["invalid_token"]
    result = cli(main, "logout", "--json")
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout) == [{"server": SERVER, "revoked": True, "removed": True}]
    assert cli.store().pending_revocation(SERVER) == []
    assert not cli.credentials_file.exists()


def test_an_expired_key_that_cannot_be_revoked_is_forgotten(cli: Cli) -> None:
    """It no longer works anyway: nothing to keep it for."""
    cli.save(
        KEY,
        expires_at=datetime(2026, 11, 1, tzinfo=UTC),
        created_at=datetime(2026, 10, 2, tzinfo=UTC),
    )
    cli.server.down = True
    result = cli(main, "logout")
    assert result.exit_code == 0, result.output
    assert "the key expired 2026-11-01 00:00 UTC (28 days ago): it no longer works" in flat(
        result.stderr
    )
    assert cli.store().pending_revocation(SERVER) == []
    assert not cli.credentials_file.exists()


def test_the_next_logout_revokes_the_marked_key_and_forgets_it(cli: Cli) -> None:
    log_out_while_down(cli)
    result = cli(main, "logout")
    assert result.exit_code == 0, result.output
    assert revoked_tokens(cli) == [KEY]
    assert "the key was revoked on the server and removed from this computer" in result.stdout
    assert not cli.credentials_file.exists()
    assert cli.store().default_server() is None  # nothing left for this server


# --- token and status never use a marked key ---------------------------------------------------


@pytest.mark.defect(10)
def test_token_never_prints_a_marked_key(cli: Cli) -> None:
    log_out_while_down(cli)
    cli.server.down = True
    result = cli(main, "token")
    assert result.exit_code == ExitCode.NOT_REVOKED
    assert result.stdout == ""
    assert KEY not in result.stderr
    stderr = flat(result.stderr)
    assert f"The key for {SERVER} is marked to be revoked" in stderr
    assert "could not be revoked now either: the server could not be reached" in stderr
    assert f"sign in at {DEVICES} and revoke it there" in stderr
    assert "/oauth/revoke" not in cli.server.paths()  # it tried, and could not connect
    assert any(p == "/.well-known/oauth-authorization-server" for p in cli.server.paths())

    machine = cli(main, "status", "--json")
    assert machine.exit_code == ExitCode.NOT_REVOKED
    (document,) = json_lines(machine.stdout)
    assert document["error"] == "revocation_pending"
    assert document["reason"] == "server_unreachable"
    assert document["devices_page"] == DEVICES
    assert KEY not in machine.output


def test_token_revokes_a_marked_key_once_it_can_then_is_not_logged_in(cli: Cli) -> None:
    log_out_while_down(cli)
    result = cli(main, "token")
    assert result.exit_code == ExitCode.NOT_LOGGED_IN
    assert result.stdout == ""
    assert revoked_tokens(cli) == [KEY]
    assert "now revoked" in flat(result.stderr)
    assert cli.store().pending_revocation(SERVER) == []


def test_token_sends_nothing_when_no_key_is_marked(cli: Cli) -> None:
    cli.save(KEY)
    assert cli(main, "token").stdout == KEY + "\n"
    assert cli.server.requests == []


def test_the_environment_key_is_printed_and_the_marked_key_still_not_lost(cli: Cli) -> None:
    log_out_while_down(cli)
    cli.server.down = True
    result = cli(main, "token", env={"DEVICELINK_TOKEN": "dlk_from_env_check"})
    assert result.exit_code == 0
    assert result.stdout == "dlk_from_env_check\n"
    assert "marked to be revoked but could not be revoked now" in flat(result.stderr)
    assert [key.access_token for key in cli.store().pending_revocation(SERVER)] == [KEY]


# --- login with a marked key ----------------------------------------------------------------------


@pytest.mark.defect(10)
def test_login_while_revocation_fails_signs_in_anew_and_keeps_the_old_key_marked(
    cli: Cli,
) -> None:
    """Revocation down, sign-in up (the revocation endpoint failing, say): the user can
    work with a new key, and the old one is still on record until it is revoked."""
    log_out_while_down(cli, "dlk_old_check")
    cli.server.revoke_answers = ["unavailable"] * 8  # this login's try, then the token's
    login = cli(main, "login", "--server", SERVER, "--no-browser")
    assert login.exit_code == 0, login.output
    assert "an earlier key for" in flat(login.stderr)
    assert "marked to be revoked but could not be revoked now" in flat(login.stderr)
    assert cli.store().get(SERVER) is not None
    assert [key.access_token for key in cli.store().pending_revocation(SERVER)] == ["dlk_old_check"]

    token = cli(main, "token")  # the new key, with a warning about the old one
    assert token.exit_code == 0, token.output
    assert token.stdout == "dlk_issued1_check\n"
    assert "dlk_old_check" not in token.output

    logout = cli(main, "logout")  # revocation works again: both go
    assert logout.exit_code == 0, logout.output
    assert revoked_tokens(cli) == ["dlk_old_check", "dlk_issued1_check"]
    assert not cli.credentials_file.exists()


def test_login_with_a_marked_key_and_no_server_stops_after_one_round_of_retries(
    cli: Cli,
) -> None:
    log_out_while_down(cli)
    cli.server.down = True
    cli.sleeps.waited.clear()
    login = cli(main, "login", "--server", SERVER, "--no-browser")
    assert login.exit_code == ExitCode.NETWORK
    assert len(cli.sleeps.waited) == 3  # the revocation's retries, not the sign-in's too
    assert f"sign in at {DEVICES} and revoke it there" in flat(login.stderr)
    assert [key.access_token for key in cli.store().pending_revocation(SERVER)] == [KEY]


@pytest.mark.defect(10)
def test_login_force_marks_the_key_it_replaces_when_it_cannot_revoke_it(cli: Cli) -> None:
    cli.save("dlk_old_check")
    cli.server.revoke_answers = ["unavailable"] * 4
    login = cli(main, "login", "--server", SERVER, "--no-browser", "--force")
    assert login.exit_code == 0, login.output
    assert "the previous key was not revoked on the server" in flat(login.stderr)
    assert f"sign in at {DEVICES} and revoke it there" in flat(login.stderr)
    assert cli.store().get(SERVER).access_token == "dlk_issued1_check"  # type: ignore[union-attr]
    (old,) = cli.store().pending_revocation(SERVER)
    assert old.access_token == "dlk_old_check"

    assert cli(main, "status").exit_code == 0  # the next command revokes it
    assert revoked_tokens(cli) == ["dlk_old_check"]
    assert cli.store().pending_revocation(SERVER) == []


# --- where a marked key is kept -------------------------------------------------------------------


def test_an_old_credentials_file_without_the_mark_still_loads(cli: Cli) -> None:
    """A file written before the mark existed: its key is an ordinary, usable key."""
    assert cli.config_dir is not None
    cli.config_dir.mkdir(mode=0o700, parents=True)
    record = {
        "server": SERVER,
        "access_token": KEY,
        "client_id": "devicelink-cli",
        "scope": "api",
        "expires_at": "2030-01-01T12:00:00+00:00",
        "created_at": NOW.isoformat(),
        "username": "alice",
    }
    document = {"version": 1, "credentials": {SERVER: record}}
    fd = os.open(cli.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    cli.server.keys.add(KEY)

    assert cli(main, "token", "--server", SERVER).stdout == KEY + "\n"
    assert cli(main, "status", "--server", SERVER).exit_code == 0
    cli.server.down = True
    assert cli(main, "logout", "--server", SERVER).exit_code == ExitCode.NOT_REVOKED
    written = json.loads(cli.credentials_file.read_text())
    assert written["version"] == 1  # same format, one more field in the record
    assert written["credentials"][SERVER] == record | {"revocation_pending_since": NOW.isoformat()}


def test_with_a_keyring_a_marked_key_stays_in_the_keyring(
    cli: Cli, memory_keyring: MemoryKeyring
) -> None:
    log_out_while_down(cli, "dlk_old_check")
    assert not cli.credentials_file.exists()
    cli.server.revoke_answers = ["unavailable"] * 4
    assert cli(main, "login", "--server", SERVER, "--no-browser").exit_code == 0
    assert not cli.credentials_file.exists()  # no key on disk, the replaced one included
    aside = json.loads(memory_keyring.entries[("devicelink", f"{SERVER}#revocation-pending")])
    assert [entry["access_token"] for entry in aside] == ["dlk_old_check"]

    assert cli(main, "logout").exit_code == 0
    assert revoked_tokens(cli) == ["dlk_old_check", "dlk_issued1_check"]
    assert memory_keyring.entries == {}


def test_a_marked_copy_wins_over_an_unmarked_copy_of_the_same_key(
    cli: Cli, memory_keyring: MemoryKeyring
) -> None:
    """The keyring failed while the key was being marked (the mark went to the file), then
    came back with its old, unmarked copy: the key is still never handed out."""
    credential = cli.save(KEY)  # into the keyring
    assert cli.config_dir is not None
    file_only = CredentialStore(config_dir=cli.config_dir, use_keyring=False)
    file_only.save(credential.marked_for_revocation(NOW))
    cli.server.down = True
    token = cli(main, "token")
    assert token.exit_code == ExitCode.NOT_REVOKED
    assert token.stdout == ""
