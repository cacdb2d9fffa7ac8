"""The operator's commands, run through Click against the embedded SQLite default."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from devicelink.admin.directory import parse_since
from devicelink.cli import main
from devicelink.core.codes import CodeHasher
from devicelink.core.models import Client
from devicelink.runtime.settings import Settings
from devicelink.service import DeviceFlowService, StoredKeyIssuer
from devicelink.service.device_flow import ClientCredentials
from devicelink.storage import SqlStore, create_engine_for_url
from tests.support.processes import clean_env, run_without_server_packages


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(__import__("os").environ):
        if name.startswith("DEVICELINK_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "data"
    monkeypatch.setenv("DEVICELINK_DATA_DIR", str(directory))
    code, output = run("db", "upgrade")  # as an operator would, before the other commands
    assert code == 0, output
    return directory


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    """The exit code, and what the command printed: standard output when it succeeded,
    standard error (which first names the database) when it failed."""
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def issue_key_for(username: str, data_dir: Path, user_agent: str = "test") -> str:
    """A complete device flow through the service, on the CLI's database."""
    settings = Settings(data_dir=data_dir)

    async def flow() -> str:
        store = SqlStore(create_engine_for_url(settings.effective_database_url()))
        try:
            hasher = CodeHasher(settings.secret_bytes())
            flows = DeviceFlowService(
                store, hasher, StoredKeyIssuer(), default_client_id="devicelink-cli"
            )
            async with store.transaction() as tx:
                user = await tx.users.get_by_username(username)
                if await tx.clients.get("devicelink-cli") is None:
                    await tx.clients.add(
                        Client(
                            client_id="devicelink-cli",
                            name="devicelink CLI",
                            scopes=("api",),
                            key_lifetime=86_400,
                            created_at=datetime.now(UTC),
                        )
                    )
            assert user is not None
            started = await flows.start(
                ClientCredentials("devicelink-cli"),
                scope=None,
                request_ip="192.0.2.1",
                user_agent=user_agent,
            )
            await flows.approve(started.user_code, user_id=user.id)
            grant = await flows.poll(ClientCredentials("devicelink-cli"), started.device_code)
            return grant.access_token
        finally:
            await store.dispose()

    return asyncio.run(flow())


def test_users_add_list_keys_revoke_and_audit(data_dir: Path) -> None:
    code, output = run("users", "add", "bob", "--password-stdin", stdin="a good password\n")
    assert code == 0, output
    key = issue_key_for("bob", data_dir)

    code, output = run("keys", "list", "--user", "bob")
    assert code == 0, output
    assert "bob" in output
    assert "devicelink-cli" in output
    assert "active" in output
    assert key not in output
    key_id = output.splitlines()[1].split()[0]

    code, output = run("keys", "revoke", key_id)
    assert (code, output.strip()) == (0, f"revoked key {key_id}")
    code, output = run("keys", "revoke", key_id)
    assert "already revoked" in output
    code, output = run("keys", "list")
    assert output.strip() == "no keys"
    code, output = run("keys", "list", "--all")
    assert "revoked" in output

    code, output = run("users", "disable", "bob")
    assert (code, output.strip()) == (0, "disabled bob")

    code, output = run("audit", "--user", "bob")
    assert code == 0, output
    events = [line.split()[2] for line in output.splitlines()[1:]]
    assert events == ["approved", "key_issued", "revoked", "user_disabled"]
    assert key not in output


def test_unknown_names_and_ids_fail_with_a_message(data_dir: Path) -> None:
    database = f"database: {(data_dir / 'devicelink.db').resolve()}\n"
    assert run("users", "disable", "nobody") == (
        2,
        f"{database}devicelink: no user named 'nobody'\n",
    )
    assert run("keys", "revoke", "42") == (2, f"{database}devicelink: no key with id 42\n")
    code, output = run("audit", "--user", "nobody")
    assert code == 2
    code, output = run("audit", "--since", "yesterday-ish")
    assert code == 2
    assert "use 30m, 2h" in output


def test_short_passwords_are_refused(data_dir: Path) -> None:
    code, output = run("users", "add", "carol", "--password-stdin", stdin="short\n")
    assert code == 2
    assert "at least 8 characters" in output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_since_accepts_relative_durations(text: str, expected: timedelta) -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert parse_since(text, now) == now - expected


def test_since_accepts_iso_dates_as_utc() -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)


FORGED = "x\x1b[2K\x9b1A\n3  bob  devicelink-cli  spare  2026-12-04  -  never  active"


def test_a_device_cannot_forge_rows_of_keys_list(data_dir: Path) -> None:
    """Issue 13, finding 2: what a device reports of itself (here its User-Agent, part of
    the key's name) reaches the operator's terminal escaped, on one row."""
    code, output = run("users", "add", "bob", "--password-stdin", stdin="a good password\n")
    assert code == 0, output
    issue_key_for("bob", data_dir, user_agent=FORGED)
    code, output = run("keys", "list")
    assert code == 0, output
    assert len(output.splitlines()) == 2  # the header and the one key
    assert "\x1b" not in output
    assert "\x9b" not in output
    assert "x\\x1b[2K\\x9b1A\\n3  bob" in output


@pytest.mark.parametrize(
    ("name", "exit_code", "why"),
    [
        ("Bob", 3, "already exists"),  # the taken name's own exit code
        ("\uff42\uff4f\uff42", 2, "NFKC form"),  # full-width "bob"
        ("bob\u200b", 2, "printable"),
        ("new\nline", 2, "printable"),
    ],
)
def test_users_add_refuses_a_name_that_passes_for_another(
    data_dir: Path, name: str, exit_code: int, why: str
) -> None:
    code, output = run("users", "add", "bob", "--password-stdin", stdin="a good password\n")
    assert code == 0, output
    code, output = run("users", "add", name, "--password-stdin", stdin="a good password\n")
    assert code == exit_code
    assert why in output


@pytest.mark.parametrize("command", [["serve"], ["users", "add", "alice"], ["serve", "--help"]])
def test_a_server_command_on_the_client_only_install_says_what_to_install(
    command: list[str], tmp_path: Path
) -> None:
    """Issue 16: `pip install devicelink` without [server], then `devicelink serve`: the
    pip command that adds the server, the usage exit code, no traceback."""
    result = run_without_server_packages(
        f"""
        import sys
        sys.argv = ["devicelink", *{command!r}]
        from devicelink.launcher import main
        main()
        """,
        clean_env(HOME=str(tmp_path)),
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"`{command[0]}` is a server command" in result.stderr
    assert f"{sys.executable} -m pip install 'devicelink[server]'" in result.stderr


def test_keys_list_shows_whole_names_and_times_with_their_zone(data_dir: Path) -> None:
    """Issue 16: two keys of one long-named device told apart by the end of their names
    (nothing cut), and every time readable as UTC wherever the operator is."""
    code, output = run("users", "add", "bob", "--password-stdin", stdin="a good password\n")
    assert code == 0, output
    device = "acme-deploy-tool/4.2 (linux; x86_64; build-host-with-a-long-name.example.org)"
    issue_key_for("bob", data_dir, user_agent=device)
    code, output = run("keys", "list")
    assert code == 0, output
    name = f"devicelink CLI on {device} from 192.0.2.1"
    assert len(name) > 60
    row = output.splitlines()[1]
    assert name in row
    code, listed = run("keys", "list", "--json")
    assert code == 0, listed
    created = datetime.fromisoformat(json.loads(listed)[0]["created_at"])
    expires = datetime.fromisoformat(json.loads(listed)[0]["expires_at"])
    assert f"{created:%Y-%m-%d %H:%M} UTC" in row
    assert f"{expires:%Y-%m-%d %H:%M} UTC" in row
    assert "\x1b" not in row
