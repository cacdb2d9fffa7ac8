"""The embedding API: ``devicelink.client.login`` / ``whoami`` / ``logout`` and the Click
group factory that a host CLI mounts (and devicelink's own top level uses)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

import devicelink.client as client
from devicelink.cli import main
from devicelink.client import (
    CredentialStore,
    DeviceAuthorization,
    KeyRefused,
    LoginDenied,
    make_auth_group,
)
from devicelink.client.api import resolve_server, scope_covers
from tests.support.processes import clean_env, run_without_server_packages

from .conftest import EXPIRES_AT, NOW, SERVER, USER_CODE, Cli, FakeServer, Sleeps, json_lines


def file_store(tmp_path: Path, service: str = "devicelink") -> CredentialStore:
    return CredentialStore(service=service, config_dir=tmp_path / "keys", use_keyring=False)


def test_login_returns_the_stored_credential(fake_server: FakeServer, tmp_path: Path) -> None:
    store = file_store(tmp_path)
    shown: list[DeviceAuthorization] = []
    credential = client.login(
        SERVER,
        client_id="devicelink-cli",
        scope="api",
        store=store,
        open_browser=False,
        on_code=shown.append,
        transport=fake_server.transport(),
        sleep=Sleeps(),
    )
    assert [a.user_code for a in shown] == [USER_CODE]
    assert credential.server == SERVER
    assert credential.username == "alice"
    assert credential.access_token == "dlk_issued1_check"
    assert credential.expires_at == EXPIRES_AT
    assert credential.scope == "api"
    assert store.get(SERVER) == credential
    assert store.default_server() == SERVER

    owner = client.whoami(store=store, transport=fake_server.transport())
    assert owner["username"] == "alice"

    result = client.logout(store=store, transport=fake_server.transport())
    assert result.revoked
    assert result.removed
    assert result.error is None
    assert fake_server.revoked[0]["token"] == "dlk_issued1_check"
    assert store.get(SERVER) is None
    with pytest.raises(KeyRefused):
        client.whoami(SERVER, store=store, transport=fake_server.transport())


def test_a_library_login_revokes_the_key_it_replaces(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    """Issue 16, item 1: as ``devicelink login``, the embedding API leaves no key working
    that nobody holds; one it cannot revoke yet stays marked to be revoked."""
    store = file_store(tmp_path)

    def sign_in(client_id: str) -> str:
        fake_server.token_answers = ["granted"]
        credential = client.login(
            SERVER,
            client_id=client_id,
            store=store,
            open_browser=False,
            on_code=lambda authorization: None,
            transport=fake_server.transport(),
            sleep=Sleeps(),
        )
        return credential.access_token

    first = sign_in("ci-bot")
    second = sign_in("devicelink-cli")
    assert [form["token"] for form in fake_server.revoked] == [first]
    assert fake_server.revoked[0]["client_id"] == "ci-bot"  # with the key's own client
    assert store.pending_revocation(SERVER) == []

    fake_server.revoke_answers = ["unavailable"] * 4
    third = sign_in("devicelink-cli")
    stored = store.get(SERVER)
    assert stored is not None
    assert stored.access_token == third
    assert [key.access_token for key in store.pending_revocation(SERVER)] == [second]


def test_login_raises_the_typed_errors(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.token_answers = ["access_denied"]
    with pytest.raises(LoginDenied):
        client.login(
            SERVER,
            store=file_store(tmp_path),
            open_browser=False,
            on_code=lambda authorization: None,
            transport=fake_server.transport(),
            sleep=Sleeps(),
        )
    assert file_store(tmp_path).get(SERVER) is None


@pytest.mark.parametrize(("open_browser", "opens"), [(True, True), (False, False)])
def test_login_opens_the_browser_after_showing_the_code(
    fake_server: FakeServer, tmp_path: Path, open_browser: bool, opens: bool
) -> None:
    events: list[str] = []

    def browser(url: str) -> bool:
        events.append("browser " + url)
        return True

    client.login(
        SERVER,
        store=file_store(tmp_path),
        open_browser=open_browser,
        on_code=lambda authorization: events.append("code " + authorization.user_code),
        browser=browser,
        transport=fake_server.transport(),
        sleep=Sleeps(),
    )
    link = f"{SERVER}/oauth/device/verify?user_code={USER_CODE}"
    assert events == [f"code {USER_CODE}"] + ([f"browser {link}"] if opens else [])


@pytest.mark.defect(10)
def test_logout_keeps_a_key_it_could_not_revoke_and_revoke_pending_revokes_it(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    store = file_store(tmp_path)
    credential = client.login(
        SERVER,
        store=store,
        open_browser=False,
        on_code=lambda authorization: None,
        transport=fake_server.transport(),
        sleep=Sleeps(),
    )
    fake_server.down = True
    result = client.logout(
        SERVER, store=store, transport=fake_server.transport(), sleep=Sleeps(), now=NOW
    )
    assert result.had_credential
    assert not result.revoked
    assert not result.removed  # kept, marked to be revoked: the key still works
    assert isinstance(result.error, client.ServerUnreachable)
    assert [key.access_token for key in result.pending] == [credential.access_token]
    assert result.pending[0].revocation_pending_since == NOW
    assert store.get(SERVER) is None  # never handed out again
    assert store.pending_revocation(SERVER) == list(result.pending)
    with pytest.raises(KeyRefused, match="not logged in"):
        client.whoami(SERVER, store=store, transport=fake_server.transport())

    fake_server.down = False
    (revocation,) = client.revoke_pending(SERVER, store=store, transport=fake_server.transport())
    assert revocation.gone
    assert revocation.error is None
    assert fake_server.revoked[-1]["token"] == credential.access_token
    assert store.pending_revocation(SERVER) == []
    assert client.revoke_pending(SERVER, store=store, transport=fake_server.transport()) == []


@pytest.mark.defect(10)
def test_logout_force_forgets_a_key_it_could_not_revoke(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    store = file_store(tmp_path)
    client.login(
        SERVER,
        store=store,
        open_browser=False,
        on_code=lambda authorization: None,
        transport=fake_server.transport(),
        sleep=Sleeps(),
    )
    fake_server.down = True
    result = client.logout(
        SERVER, store=store, force=True, transport=fake_server.transport(), sleep=Sleeps()
    )
    assert (result.revoked, result.removed, result.forced) == (False, True, True)
    assert result.pending == ()
    assert result.expires_at == EXPIRES_AT  # until when it may still work
    assert store.get(SERVER) is None
    assert store.pending_revocation(SERVER) == []


def test_resolve_server_precedence(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    env = {"DEVICELINK_SERVER": "https://env.example.com/"}
    assert resolve_server("HTTPS://Explicit.example.com:443/", store=store, env=env) == (
        "https://explicit.example.com"
    )
    assert resolve_server(None, store=store, env=env) == "https://env.example.com"
    assert resolve_server(None, store=store, env={}) == "http://127.0.0.1:8000"
    assert resolve_server(None, store=store, env={}, default="https://d.example") == (
        "https://d.example"
    )
    with pytest.raises(ValueError, match="https:// or http://"):
        resolve_server("ftp://x", store=store, env={})


def test_scope_covers() -> None:
    assert scope_covers("api read", None)
    assert scope_covers("api read", "read")
    assert scope_covers("api read", ["api", "read"])
    assert not scope_covers("api", "api write")
    assert not scope_covers(None, "api")


# --- the group factory -------------------------------------------------------------------


def test_devicelink_mounts_the_factory_commands_at_its_top_level() -> None:
    group = make_auth_group()
    for name in ("login", "status", "token", "logout", "switch"):
        mounted = main.commands[name]
        assert type(mounted) is type(group.commands[name])
        assert [p.name for p in mounted.params] == [p.name for p in group.commands[name].params]


def test_a_host_cli_mounts_the_group_with_its_own_names(cli: Cli, tmp_path: Path) -> None:
    auth_group = make_auth_group(
        name="auth", server=SERVER, client_id="mycli", keyring_service="mycli", env_prefix="MYCLI"
    )
    mycli = click.Group("mycli", commands=[auth_group], help="A host CLI.")
    auth = mycli.commands["auth"]
    assert isinstance(auth, click.Group)
    assert set(auth.commands) == {"login", "status", "token", "logout", "switch"}

    cli.config_dir = None  # each store in its own ~/.config/<service> (XDG_CONFIG_HOME)
    result = cli(mycli, "auth", "login", "--no-browser", "--json", prog_name="mycli")
    assert result.exit_code == 0, result.output
    document = json_lines(result.stdout)[0]
    assert document["server"] == SERVER  # the host CLI's default server
    assert document["client_id"] == "mycli"
    assert document["stored_in"] == str(
        tmp_path / "home" / ".config" / "mycli" / "credentials.json"
    )
    authorize = next(r for r in cli.server.requests if r.url.path == "/oauth/device/authorize")
    assert b"client_id=mycli" in authorize.content

    # Its keys are its own: devicelink's store does not see them.
    assert cli.store("mycli").get(SERVER) is not None
    assert cli.store("devicelink").get(SERVER) is None
    token = cli(mycli, "auth", "token", prog_name="mycli")
    assert token.stdout == "dlk_issued1_check\n"
    # MYCLI_TOKEN overrides it; DEVICELINK_TOKEN is another program's business.
    assert cli(mycli, "auth", "token", env={"MYCLI_TOKEN": "dlk_env"}).stdout == "dlk_env\n"
    other = cli(mycli, "auth", "token", env={"DEVICELINK_TOKEN": "dlk_env"})
    assert other.stdout == "dlk_issued1_check\n"

    missing = cli(
        mycli, "auth", "status", prog_name="mycli", env={"MYCLI_SERVER": "https://x.example"}
    )
    assert missing.exit_code == 6
    assert "Not logged in to https://x.example" in missing.stderr
    assert "Run mycli auth login to log in." in missing.stderr
    help_text = cli(mycli, "auth", "token", "--help", prog_name="mycli").stdout
    assert "$(mycli auth token)" in help_text
    assert "MYCLI_SERVER" in help_text


def test_the_client_only_install_has_the_four_commands(tmp_path: Path) -> None:
    """Without the [server] extra (every server package unimportable), `devicelink` still
    has login, status, token and logout, and `token` works."""
    env = {
        **clean_env(),
        "DEVICELINK_TOKEN": "dlk_from_env_check",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / ".config"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    result = run_without_server_packages(
        """
        from devicelink.cli import main
        assert {"login", "status", "token", "logout"} <= set(main.commands), main.commands
        assert "serve" not in main.commands
        main(["token", "--server", "https://login.example.com"])
        """,
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dlk_from_env_check\n"
