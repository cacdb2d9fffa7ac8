"""Issue 16, item 6: the operator's commands say which database they act on, never make
one up, list users and clients (``--json`` too), remove a client without leaving its
keys alive, and give a taken name its own exit code. Through Click, on SQLite and on
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from devicelink.cli import main
from devicelink.core.codes import CodeHasher
from devicelink.core.errors import InvalidClient
from devicelink.service import DeviceFlowService, StoredKeyIssuer
from devicelink.service.device_flow import ClientCredentials
from devicelink.service.revocations import IssuerRevocations
from devicelink.storage import SqlStore, create_engine_for_url
from tests.support.app import TEST_SECRET
from tests.support.databases import Database, fresh_postgres_database

PASSWORD = "a good password\n"
ISO_UTC = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$"


@pytest.fixture
def database_url(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The commands' environment: the test's database (migrated, as by `db upgrade`)."""
    for name in list(os.environ):
        if name.startswith("DEVICELINK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEVICELINK_DATABASE_URL", database.url)
    monkeypatch.setenv("DEVICELINK_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("DEVICELINK_DATA_DIR", str(tmp_path / "data"))
    return database.url


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def shown_database(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(Path(str(parsed.database)).resolve())
    return parsed.render_as_string(hide_password=True)


def issue_key(url: str, client_id: str, username: str) -> None:
    """A device flow of ``client_id`` approved by ``username``, its key issued."""

    async def flow() -> None:
        store = SqlStore(create_engine_for_url(url))
        try:
            flows = DeviceFlowService(
                store, CodeHasher(TEST_SECRET.encode()), StoredKeyIssuer(), default_client_id=None
            )
            async with store.transaction() as tx:
                user = await tx.users.get_by_username(username)
            assert user is not None
            started = await flows.start(
                ClientCredentials(client_id), scope=None, request_ip=None, user_agent="test"
            )
            await flows.approve(started.user_code, user_id=user.id)
            await flows.poll(ClientCredentials(client_id), started.device_code)
        finally:
            await store.dispose()

    asyncio.run(flow())


def test_every_command_names_its_database_on_standard_error(database_url: str) -> None:
    line = f"database: {shown_database(database_url)}\n"
    for args in (
        ["users", "add", "bob", "--password-stdin"],
        ["users", "list"],
        ["clients", "add", "ci-bot"],
        ["clients", "list", "--json"],
        ["keys", "list"],
        ["audit"],
        ["purge", "--dry-run"],
    ):
        result = run(*args, stdin=PASSWORD)
        assert result.exit_code == 0, result.output
        assert result.stderr.startswith(line), (args, result.stderr)
        assert "database:" not in result.stdout  # --json output stays one document


@pytest.mark.postgres
def test_a_postgresql_password_is_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_postgres_database("dl_masked") as url:
        # Trust authentication here: the password is sent and ignored.
        with_password = make_url(url).set(password="never-printed-9f3a")
        monkeypatch.setenv("DEVICELINK_DATABASE_URL", with_password.render_as_string(False))
        monkeypatch.setenv("DEVICELINK_DATA_DIR", str(tmp_path))
        result = run("users", "list")
    assert result.exit_code == 0, result.output
    assert "never-printed" not in result.output
    shown = with_password.render_as_string(hide_password=True)
    assert ":***@" in shown
    assert result.stderr == f"database: {shown}\n"
    assert result.stdout == "no users\n"


@pytest.mark.postgres
def test_a_postgresql_database_without_tables_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fresh_postgres_database("dl_empty", migrate=False) as url:
        monkeypatch.setenv("DEVICELINK_DATABASE_URL", url)
        monkeypatch.setenv("DEVICELINK_DATA_DIR", str(tmp_path))
        result = run("users", "add", "bob", "--password-stdin", stdin=PASSWORD)
    assert result.exit_code == 2
    assert result.stderr.endswith(
        "devicelink: the database has no devicelink tables yet: run `devicelink db upgrade`\n"
    )
    assert "Traceback" not in result.output


def test_a_sqlite_url_to_a_missing_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "elsewhere" / "devicelink.db"
    monkeypatch.setenv("DEVICELINK_DATABASE_URL", f"sqlite:///{missing}")
    monkeypatch.setenv("DEVICELINK_SECRET_KEY", TEST_SECRET)
    result = run("clients", "add", "ci-bot")
    assert result.exit_code == 2
    assert f"there is no database at {missing} (DEVICELINK_DATABASE_URL)" in result.stderr
    assert "only `devicelink serve` and `devicelink db upgrade` create a database" in (
        result.stderr
    )
    assert not missing.parent.exists()


def test_a_url_that_is_none_is_refused_without_echoing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICELINK_DATABASE_URL", "devicelink:hunter2 at db.internal")
    monkeypatch.setenv("DEVICELINK_DATA_DIR", str(tmp_path))
    result = run("keys", "list")
    assert result.exit_code == 2
    assert result.stderr == (
        "devicelink: DEVICELINK_DATABASE_URL is not a database URL (such as "
        "postgresql://USER:PASSWORD@HOST/NAME)\n"
    )


def test_users_list_as_a_table_and_as_json(database_url: str) -> None:
    for name in ("carol", "bob"):
        assert run("users", "add", name, "--password-stdin", stdin=PASSWORD).exit_code == 0
    assert run("users", "disable", "carol").exit_code == 0

    table = run("users", "list")
    assert table.exit_code == 0, table.output
    rows = [line.split()[:3] for line in table.stdout.splitlines()]
    assert rows == [
        ["NAME", "PROVIDER", "STATE"],
        ["bob", "local", "active"],
        ["carol", "local", "disabled"],
    ]

    listed = json.loads(run("users", "list", "--json").stdout)
    assert [sorted(user) for user in listed] == [
        ["created_at", "disabled", "display_name", "provider", "username"]
    ] * 2
    assert [(u["username"], u["disabled"], u["provider"]) for u in listed] == [
        ("bob", False, "local"),
        ("carol", True, "local"),
    ]
    for user in listed:
        assert user["created_at"] is not None
        assert re.match(ISO_UTC, user["created_at"])


def test_listings_escape_what_a_terminal_would_obey(database_url: str) -> None:
    forged = "x\x1b[2K\x9b1A"
    assert run("clients", "add", "acme", "--name", forged + "\nspare").exit_code == 0
    table = run("clients", "list")
    assert table.exit_code == 0, table.output
    assert len(table.stdout.splitlines()) == 2  # the header and the one client
    assert "\x1b" not in table.stdout
    assert "\x9b" not in table.stdout
    as_json = run("clients", "list", "--json").stdout
    assert "\x1b" not in as_json
    assert "\x9b" not in as_json
    assert json.loads(as_json)[0]["name"] == forged + "\nspare"  # escaped, yet exact


def test_clients_list_shows_grants_and_live_keys(database_url: str) -> None:
    assert run("users", "add", "bob", "--password-stdin", stdin=PASSWORD).exit_code == 0
    assert run("clients", "add", "ci-bot", "--key-lifetime", "0").exit_code == 0
    assert run("clients", "add", "billing", "--confidential", "--resource-server").exit_code == 0
    issue_key(database_url, "ci-bot", "bob")
    issue_key(database_url, "ci-bot", "bob")

    table = run("clients", "list")
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "TYPE"]
    assert rows[0].startswith("billing ")
    assert "confidential, resource server" in rows[0]
    assert rows[1].split()[:5] == ["ci-bot", "ci-bot", "public", "device_code", "api"]
    assert "never expire  2 " in rows[1]

    listed = {c["client_id"]: c for c in json.loads(run("clients", "list", "--json").stdout)}
    assert listed["ci-bot"] == {
        "client_id": "ci-bot",
        "name": "ci-bot",
        "confidential": False,
        "resource_server": False,
        "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"],
        "redirect_uris": [],
        "scopes": ["api"],
        "key_lifetime": None,
        "live_keys": 2,
        "created_at": listed["ci-bot"]["created_at"],
    }
    assert re.match(ISO_UTC, listed["ci-bot"]["created_at"])
    assert (listed["billing"]["confidential"], listed["billing"]["live_keys"]) == (True, 0)


def test_keys_list_as_json(database_url: str) -> None:
    assert run("users", "add", "bob", "--password-stdin", stdin=PASSWORD).exit_code == 0
    assert run("clients", "add", "ci-bot").exit_code == 0
    issue_key(database_url, "ci-bot", "bob")
    (key,) = json.loads(run("keys", "list", "--json").stdout)
    assert (key["user"], key["client_id"], key["state"], key["revoked_at"]) == (
        "bob",
        "ci-bot",
        "active",
        None,
    )
    assert re.match(ISO_UTC, key["expires_at"])
    assert run("keys", "revoke", str(key["id"])).exit_code == 0
    assert json.loads(run("keys", "list", "--json").stdout) == []
    (revoked,) = json.loads(run("keys", "list", "--all", "--json").stdout)
    assert revoked["state"] == "revoked"


def test_a_taken_name_has_its_own_exit_code(database_url: str) -> None:
    assert run("users", "add", "bob", "--password-stdin", stdin=PASSWORD).exit_code == 0
    again = run("users", "add", "bob", "--password-stdin", stdin=PASSWORD)
    assert again.exit_code == 3
    assert again.stderr.endswith("devicelink: user 'bob' already exists\n")

    added = run("clients", "add", "billing", "--confidential")
    assert added.exit_code == 0
    again = run("clients", "add", "billing", "--confidential")
    assert again.exit_code == 3
    assert again.stderr.endswith("devicelink: client 'billing' already exists\n")
    assert "client_secret" not in again.stdout

    # Bad input keeps the usage exit code.
    assert run("clients", "add", "no spaces").exit_code == 2
    assert run("clients", "remove", "nobody").exit_code == 2


def test_clients_remove_refuses_while_keys_live_and_revokes_them_when_told(
    database_url: str,
) -> None:
    assert run("users", "add", "bob", "--password-stdin", stdin=PASSWORD).exit_code == 0
    assert run("clients", "add", "ci-bot").exit_code == 0
    issue_key(database_url, "ci-bot", "bob")

    refused = run("clients", "remove", "ci-bot")
    assert refused.exit_code == 4
    assert "client 'ci-bot' has 1 live key(s)" in refused.stderr
    assert "devicelink clients remove ci-bot --revoke-keys" in refused.stderr
    (key,) = json.loads(run("keys", "list", "--json").stdout)
    assert key["state"] == "active"

    # The keys are revoked at once; the client stays until the issuer has heard of it.
    revoked = run("clients", "remove", "ci-bot", "--revoke-keys")
    assert revoked.exit_code == 4
    assert revoked.stdout == "revoked 1 key(s) of client ci-bot\n"
    assert "run `devicelink clients remove ci-bot` again then" in revoked.stderr
    assert json.loads(run("keys", "list", "--json").stdout) == []
    assert [c["client_id"] for c in json.loads(run("clients", "list", "--json").stdout)] == [
        "ci-bot"
    ]

    drain_as_the_server_does(database_url)
    removed = run("clients", "remove", "ci-bot")
    assert (removed.exit_code, removed.stdout) == (0, "removed client ci-bot\n")
    assert json.loads(run("clients", "list", "--json").stdout) == []
    audit = run("audit", "--user", "bob").stdout
    assert "its client was removed by an administrator" in audit


def test_a_removed_clients_pending_flow_cannot_go_on(database_url: str) -> None:
    assert run("clients", "add", "ci-bot").exit_code == 0

    async def start() -> str:
        store = SqlStore(create_engine_for_url(database_url))
        try:
            flows = DeviceFlowService(store, CodeHasher(TEST_SECRET.encode()), StoredKeyIssuer())
            started = await flows.start(
                ClientCredentials("ci-bot"), scope=None, request_ip=None, user_agent="test"
            )
            return started.device_code
        finally:
            await store.dispose()

    async def poll(device_code: str) -> None:
        store = SqlStore(create_engine_for_url(database_url))
        try:
            flows = DeviceFlowService(store, CodeHasher(TEST_SECRET.encode()), StoredKeyIssuer())
            await flows.poll(ClientCredentials("ci-bot"), device_code)
        finally:
            await store.dispose()

    device_code = asyncio.run(start())
    removed = run("clients", "remove", "ci-bot")
    assert (removed.exit_code, removed.stdout) == (0, "removed client ci-bot\n")
    with pytest.raises(InvalidClient):
        asyncio.run(poll(device_code))


def drain_as_the_server_does(url: str) -> None:
    """What a running server does every few seconds: pass queued revocations on to its
    key issuer (devicelink's own here)."""

    async def drain() -> None:
        store = SqlStore(create_engine_for_url(url))
        try:
            assert await IssuerRevocations(store, StoredKeyIssuer()).drain() == 1
        finally:
            await store.dispose()

    asyncio.run(drain())
