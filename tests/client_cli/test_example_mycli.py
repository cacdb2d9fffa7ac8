"""examples/mycli: a host CLI that mounts the auth group as ``mycli auth`` and has a
``whoami`` command of its own that uses the stored key."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from types import ModuleType

import click
import pytest

from devicelink.client import DeviceFlowClient, ExitCode

from .conftest import SERVER, Cli, json_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mycli"


@pytest.fixture
def mycli(monkeypatch: pytest.MonkeyPatch, cli: Cli) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    module = importlib.import_module("mycli")
    # Its own command talks to the fake server too.
    monkeypatch.setattr(
        module,
        "DeviceFlowClient",
        functools.partial(DeviceFlowClient, transport=cli.server.transport()),
    )
    cli.config_dir = None  # mycli's keys in ~/.config/mycli, as for a user
    return module


def test_mycli_mounts_the_auth_group_and_has_whoami(mycli: ModuleType) -> None:
    main = mycli.main
    assert isinstance(main, click.Group)
    assert set(main.commands) == {"auth", "whoami"}
    auth = main.commands["auth"]
    assert isinstance(auth, click.Group)
    assert set(auth.commands) == {"login", "status", "token", "logout", "switch"}


def test_login_then_whoami_then_logout(mycli: ModuleType, cli: Cli) -> None:
    env = {"MYCLI_SERVER": SERVER}
    not_yet = cli(mycli.main, "whoami", env=env, prog_name="mycli")
    assert not_yet.exit_code == ExitCode.NOT_LOGGED_IN
    assert "run `mycli auth login`" in not_yet.stderr

    login = cli(mycli.main, "auth", "login", "--no-browser", "--json", env=env, prog_name="mycli")
    assert login.exit_code == 0, login.output
    assert json_lines(login.stdout)[0]["client_id"] == "mycli"
    authorize = next(r for r in cli.server.requests if r.url.path == "/oauth/device/authorize")
    assert b"client_id=mycli" in authorize.content

    whoami = cli(mycli.main, "whoami", prog_name="mycli")  # the server last logged in to
    assert whoami.exit_code == 0, whoami.output
    assert whoami.stdout.startswith(f"You are alice on {SERVER}")
    me = cli.server.requests[-1]
    assert me.url.path == "/api/me"
    assert me.headers["authorization"] == "Bearer dlk_issued1_check"

    logout = cli(mycli.main, "auth", "logout", prog_name="mycli")
    assert logout.exit_code == 0, logout.output
    assert cli.server.revoked[-1]["client_id"] == "mycli"
    assert cli(mycli.main, "whoami", prog_name="mycli", env=env).exit_code == 6


def test_whoami_with_a_refused_key(mycli: ModuleType, cli: Cli) -> None:
    result = cli(
        mycli.main,
        "whoami",
        env={"MYCLI_SERVER": SERVER, "MYCLI_TOKEN": "dlk_unknown"},
        prog_name="mycli",
    )
    assert result.exit_code == ExitCode.KEY_REJECTED
    assert "refused the key" in result.stderr
