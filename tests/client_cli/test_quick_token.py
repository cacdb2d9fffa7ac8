"""``devicelink token``, which scripts call before every request, starts only what printing
the key needs (``devicelink.launcher``): not Click, Rich, httpx, the server nor, when the
environment turns it off, the keyring; everything else goes to the Click command, whose
answers stay what they were.

Each case is run both ways: the launcher's quick answer must be the command's, and the
launcher must leave every case it does not answer to the command."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from devicelink.cli import main
from devicelink.client import Credential, CredentialStore
from devicelink.client.commands.invocation import AuthCommand
from devicelink.client.credentials import DEFAULT_TOKEN_ENV
from devicelink.client.servers import DEFAULT_SERVER, DEFAULT_SERVER_ENV
from devicelink.launcher import quick_token
from tests.client_cli import file_keyring
from tests.support.processes import clean_env, run_devicelink

from .conftest import EXPIRES_AT, NOW, SERVER

ROOT = Path(__file__).resolve().parents[2]
KEYRING_OFF = "keyring.backends.null.Keyring"
NOT_LOADED = (
    "click", "rich", "httpx", "httpcore", "anyio", "asyncio", "keyring", "secretstorage",
    "jeepney", "pydantic", "pydantic_settings", "fastapi", "starlette", "sqlalchemy",
    "devicelink.cli", "devicelink.client.commands", "devicelink.client.api",
    "devicelink.client.http", "devicelink.admin", "devicelink.server", "devicelink.http",
    "devicelink.runtime", "devicelink.service", "devicelink.storage",
)  # fmt: skip
"""Packages ``devicelink token`` with a stored key never imports (nor any module of them)."""


def _save(key: str = "dlk_stored_check", **fields: Any) -> Credential:
    """A key in the default store of this test's home directory (the file: no keyring)."""
    values: dict[str, Any] = {
        "server": SERVER,
        "access_token": key,
        "client_id": "devicelink-cli",
        "scope": "api",
        "expires_at": EXPIRES_AT,
        "created_at": NOW,
        "username": "alice",
    }
    credential = Credential(**{**values, **fields})
    CredentialStore(warn=lambda message: None).save(credential)
    return credential


def _command(*args: str) -> tuple[int, str, str]:
    """The Click command's answer, with no replacement of the outside world (the store of
    the home directory, the real clock)."""
    result = CliRunner().invoke(main, list(args), prog_name="devicelink")
    return result.exit_code, result.stdout, result.stderr


def _env(home: Path, **extra: str) -> dict[str, str]:
    settings = {"PYTHON_KEYRING_BACKEND": KEYRING_OFF, "NO_COLOR": "1", **extra}
    return clean_env(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), **settings)


def _imported(stderr: str) -> set[str]:
    """The modules named by ``-X importtime`` (``PYTHONPROFILEIMPORTTIME``) lines."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_LOADED)}


# --- the quick answer is the command's ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["token"],
        ["token", "--server", SERVER],
        ["token", "--server", "HTTPS://Login.Example.com:443/"],
        ["token", f"--server={SERVER}"],
    ],
    ids=["last-server", "--server", "--server-other-spelling", "--server="],
)
def test_a_stored_key_is_printed_as_the_command_prints_it(args: list[str]) -> None:
    _save()
    assert quick_token(args) == "dlk_stored_check"
    assert _command(*args) == (0, "dlk_stored_check\n", "")


def test_the_environments_key_wins_as_in_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEFAULT_TOKEN_ENV, "dlk_from_env_check")
    assert quick_token(["token", "--server", SERVER]) == "dlk_from_env_check"
    assert _command("token", "--server", SERVER) == (0, "dlk_from_env_check\n", "")
    _save()
    assert quick_token(["token"]) == "dlk_from_env_check"
    assert _command("token") == (0, "dlk_from_env_check\n", "")


# --- what the launcher leaves to the command ---------------------------------------------


def test_no_key_and_an_expired_key_are_left_to_the_command() -> None:
    assert quick_token(["token", "--server", SERVER]) is None
    assert _command("token", "--server", SERVER)[0] == 6
    _save(expires_at=datetime(2020, 1, 1, tzinfo=UTC), created_at=datetime(2019, 12, 1, tzinfo=UTC))
    assert quick_token(["token"]) is None
    assert _command("token")[0] == 7


def test_a_key_marked_to_be_revoked_is_left_to_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command revokes it first (and may have to say that it could not): even with a
    key in the environment, the launcher does not answer."""
    credential = _save()
    CredentialStore(warn=lambda message: None).mark_for_revocation(credential, since=NOW)
    assert quick_token(["token"]) is None
    monkeypatch.setenv(DEFAULT_TOKEN_ENV, "dlk_from_env_check")
    assert quick_token(["token"]) is None


def test_a_credentials_file_others_can_read_is_left_to_the_command() -> None:
    _save()
    path = CredentialStore(warn=lambda message: None).credentials_path
    path.chmod(0o644)
    assert quick_token(["token"]) is None
    code, stdout, stderr = _command("token")
    assert (code, stdout) == (1, "")
    assert "accessible by other users" in stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["status"],
        ["token", "--help"],
        ["token", "--json"],
        ["token", "--server"],
        ["token", "--server", "--help"],
        ["token", "--server", SERVER, "--server", SERVER],
        ["token", "--", "x"],
        ["token", "--server", "ftp://login.example.com"],
    ],
)
def test_other_command_lines_are_left_to_the_command(args: list[str]) -> None:
    _save()
    assert quick_token(args) is None


def test_shell_completion_is_left_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    _save()
    monkeypatch.setenv("_DEVICELINK_COMPLETE", "bash_complete")
    assert quick_token(["token"]) is None


def test_the_launcher_reads_the_settings_devicelink_mounts_token_with() -> None:
    """The launcher relies on the library's defaults (keyring service, variables, default
    server) being those of devicelink's own ``token`` command."""
    command = main.get_command(click.Context(main), "token")
    assert isinstance(command, AuthCommand)
    config = command.config
    assert config.keyring_service == CredentialStore(warn=lambda message: None).service
    assert config.token_env == DEFAULT_TOKEN_ENV
    assert config.server_env == DEFAULT_SERVER_ENV
    assert config.server == DEFAULT_SERVER


# --- the console script ------------------------------------------------------------------


def _stored_in_file(home: Path, key: str) -> None:
    store = CredentialStore(config_dir=home / ".config" / "devicelink", use_keyring=False)
    store.save(Credential(server=SERVER, access_token=key, client_id="devicelink-cli"))


def test_token_with_a_stored_key_imports_neither_click_nor_httpx_nor_keyring(
    tmp_path: Path,
) -> None:
    _stored_in_file(tmp_path, "dlk_stored_check")
    result = run_devicelink("token", env=_env(tmp_path, PYTHONPROFILEIMPORTTIME="1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dlk_stored_check\n"
    imported = _imported(result.stderr)
    assert "devicelink.client.store" in imported  # the profile covers the command
    assert _heavy(imported) == set()


def test_token_from_the_environment_imports_neither_click_nor_httpx(tmp_path: Path) -> None:
    env = _env(tmp_path, PYTHONPROFILEIMPORTTIME="1", DEVICELINK_TOKEN="dlk_from_env_check")
    result = run_devicelink("token", "--server", SERVER, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dlk_from_env_check\n"
    assert _heavy(_imported(result.stderr)) == set()


def test_token_with_the_key_in_the_keyring_asks_it_without_click(tmp_path: Path) -> None:
    """The keyring, when the environment does not turn it off, is asked as always (it may
    hold the key); only the command-line machinery stays unloaded."""
    env = _env(
        tmp_path,
        PYTHONPROFILEIMPORTTIME="1",
        PYTHON_KEYRING_BACKEND=file_keyring.BACKEND,
        PYTHONPATH=str(ROOT),
        **{file_keyring.PATH_ENV: str(tmp_path / "keyring.json")},
    )
    saved = subprocess.run(
        [sys.executable, "-c", _SAVE_IN_KEYRING, SERVER, "dlk_in_keyring_check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == "keyring"  # where CredentialStore.save put it
    result = run_devicelink("token", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "dlk_in_keyring_check\n"
    imported = _imported(result.stderr)
    assert "keyring" in imported
    assert not {"click", "rich", "httpx", "devicelink.cli", "devicelink.client.http"} & imported


_SAVE_IN_KEYRING = """
import sys
from devicelink.client import Credential, CredentialStore
store = CredentialStore(warn=print)
print(store.save(Credential(server=sys.argv[1], access_token=sys.argv[2], client_id="c")))
"""


@pytest.mark.parametrize("args", [["token"], ["token", "--server", "ftp://x"], ["token", "--help"]])
def test_the_console_script_answers_what_it_leaves_as_the_command_does(
    tmp_path: Path, args: list[str]
) -> None:
    """Not logged in (exit 6), a bad URL (exit 2), the help: the launcher hands them to
    the command, which answers exactly as when it is run directly."""
    env = _env(tmp_path)
    launched = run_devicelink(*args, env=env, cwd=tmp_path)
    direct = subprocess.run(
        [
            sys.executable,
            "-c",
            "from devicelink.cli import main; main(prog_name='devicelink')",
            *args,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert launched.returncode == {"token": 6, "ftp://x": 2, "--help": 0}[args[-1]]
    assert (launched.returncode, launched.stdout, launched.stderr) == (
        direct.returncode,
        direct.stdout,
        direct.stderr,
    )


def test_devicelink_client_names_resolve_on_first_use() -> None:
    """``devicelink.client`` imports its modules lazily: each exported name is the object
    of the module that defines it."""
    import importlib

    import devicelink.client as package

    for name in package.__all__:
        module = importlib.import_module(package._MODULE_OF[name])
        assert getattr(package, name) is getattr(module, name), name
    assert set(package._MODULE_OF) == set(package.__all__)
