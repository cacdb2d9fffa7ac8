"""``devicelink token`` keeps the store's answer (``token-cache``) and prints it again from
there, importing neither the store nor JSON, while nothing it was computed from changed:
a login, a logout, a file changed behind the store's back, another environment, another
``--server``, an expired key, a cache others can read, each gives the store's answer again.

The console-script tests run the real ``devicelink`` command twice or more in a home of
their own; the others ask the cache directly, with the clock passed in."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devicelink.client import Credential, CredentialStore
from devicelink.client import token_cache as cache
from devicelink.launcher import SERVICE, cached_token
from tests.support.processes import clean_env, free_port, run_devicelink

from .conftest import NOW, SERVER

KEYRING_OFF = "keyring.backends.null.Keyring"
OTHER = "https://other.example.com"
UNREACHABLE = f"http://127.0.0.1:{free_port()}"


def _env(home: Path, **extra: str) -> dict[str, str]:
    settings = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PYTHON_KEYRING_BACKEND": KEYRING_OFF,
        "NO_COLOR": "1",
        **extra,
    }
    return clean_env(**settings)


def _config_dir(home: Path) -> Path:
    return home / ".config" / SERVICE


def _store(home: Path) -> CredentialStore:
    return CredentialStore(config_dir=_config_dir(home), use_keyring=False, warn=None)


def _login(home: Path, key: str, server: str = SERVER, **fields: object) -> Credential:
    credential = Credential(
        server=server,
        access_token=key,
        client_id="devicelink-cli",
        **fields,  # type: ignore[arg-type]
    )
    _store(home).save(credential)
    return credential


def _imported(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _token(home: Path, *args: str, **env: str) -> tuple[int, str, set[str]]:
    result = run_devicelink(
        "token", *args, env=_env(home, PYTHONPROFILEIMPORTTIME="1", **env), cwd=home
    )
    return result.returncode, result.stdout, _imported(result.stderr)


# --- the console script ------------------------------------------------------------------


def test_the_second_call_prints_the_key_without_the_store(tmp_path: Path) -> None:
    _login(tmp_path, "dlk_first_check")
    code, stdout, imported = _token(tmp_path)
    assert (code, stdout) == (0, "dlk_first_check\n")
    assert "devicelink.client.store" in imported  # the first call read the store
    kept = _config_dir(tmp_path) / cache.CACHE_FILE
    assert kept.stat().st_mode & 0o777 == 0o600
    code, stdout, imported = _token(tmp_path)
    assert (code, stdout) == (0, "dlk_first_check\n")
    assert not {"devicelink.client.store", "json", "platformdirs", "datetime"} & imported


def test_a_login_and_a_logout_are_seen_at_once(tmp_path: Path) -> None:
    old = _login(tmp_path, "dlk_old_check")
    assert _token(tmp_path)[:2] == (0, "dlk_old_check\n")
    assert _token(tmp_path)[:2] == (0, "dlk_old_check\n")
    _login(tmp_path, "dlk_new_check")  # a new login replaces the key
    assert not (_config_dir(tmp_path) / cache.CACHE_FILE).exists()
    assert _token(tmp_path)[:2] == (0, "dlk_new_check\n")
    assert _token(tmp_path)[:2] == (0, "dlk_new_check\n")
    store = _store(tmp_path)
    store.forget(store.get(SERVER) or old)  # logged out: the key is nowhere on disk
    assert not (_config_dir(tmp_path) / cache.CACHE_FILE).exists()
    code, stdout, _ = _token(tmp_path)
    assert (code, stdout) == (6, "")  # not logged in, as the command says


def test_a_file_changed_behind_the_stores_back_is_read_again(tmp_path: Path) -> None:
    """An older devicelink, or a user's editor, rewrites credentials.json without removing
    the cached answer: its inode, size or times changed, and the store answers."""
    _login(tmp_path, "dlk_old_check")
    assert _token(tmp_path)[:2] == (0, "dlk_old_check\n")
    credentials = _config_dir(tmp_path) / "credentials.json"
    kept = (_config_dir(tmp_path) / cache.CACHE_FILE).read_bytes()
    _login(tmp_path, "dlk_new_check")
    (_config_dir(tmp_path) / cache.CACHE_FILE).write_bytes(kept)  # the stale answer back
    os.chmod(_config_dir(tmp_path) / cache.CACHE_FILE, 0o600)
    code, stdout, imported = _token(tmp_path)
    assert (code, stdout) == (0, "dlk_new_check\n")
    assert "devicelink.client.store" in imported
    assert "dlk_new_check" in credentials.read_text()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"DEVICELINK_SERVER": OTHER}, (0, "dlk_other_check\n")),
        (["--server", OTHER], {}, (0, "dlk_other_check\n")),
        ([], {"DEVICELINK_TOKEN": "dlk_env_check"}, (0, "dlk_env_check\n")),
        ([], {"XDG_CONFIG_HOME": "/nonexistent/devicelink-test"}, (6, "")),
    ],
    ids=["DEVICELINK_SERVER", "--server", "DEVICELINK_TOKEN", "XDG_CONFIG_HOME"],
)
def test_another_server_key_or_directory_is_not_answered_from_the_cache(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: tuple[int, str]
) -> None:
    _login(tmp_path, "dlk_other_check", server=OTHER)
    _login(tmp_path, "dlk_default_check")  # the last server logged in to
    assert _token(tmp_path)[:2] == (0, "dlk_default_check\n")
    assert _token(tmp_path, *args, **env)[:2] == expected
    assert _token(tmp_path)[:2] == (0, "dlk_default_check\n")


def test_server_spelt_as_stored_is_answered_from_the_cache_and_others_by_the_store(
    tmp_path: Path,
) -> None:
    _login(tmp_path, "dlk_stored_check")
    assert _token(tmp_path, "--server", SERVER)[:2] == (0, "dlk_stored_check\n")
    code, stdout, imported = _token(tmp_path, "--server", SERVER)
    assert (code, stdout) == (0, "dlk_stored_check\n")
    assert "devicelink.client.store" not in imported
    code, stdout, imported = _token(tmp_path, "--server", "HTTPS://Login.Example.com:443/")
    assert (code, stdout) == (0, "dlk_stored_check\n")
    assert "devicelink.client.store" in imported


def test_a_cache_others_can_read_is_not_used_and_is_replaced(tmp_path: Path) -> None:
    _login(tmp_path, "dlk_stored_check")
    _token(tmp_path)
    kept = _config_dir(tmp_path) / cache.CACHE_FILE
    kept.chmod(0o644)
    code, stdout, imported = _token(tmp_path)
    assert (code, stdout) == (0, "dlk_stored_check\n")
    assert "devicelink.client.store" in imported
    assert kept.stat().st_mode & 0o777 == 0o600


def test_a_key_marked_to_be_revoked_is_not_kept(tmp_path: Path) -> None:
    """Marked, it is never handed out: the command tries to revoke it first (here at a
    loopback port where nothing listens, so it cannot) and prints no key."""
    credential = _login(tmp_path, "dlk_marked_check", server=UNREACHABLE)
    assert _token(tmp_path)[:2] == (0, "dlk_marked_check\n")
    assert (_config_dir(tmp_path) / cache.CACHE_FILE).exists()
    _store(tmp_path).mark_for_revocation(credential, since=NOW)
    assert not (_config_dir(tmp_path) / cache.CACHE_FILE).exists()
    code, stdout, _ = _token(tmp_path)
    assert stdout == ""
    assert code == 8  # the only key is marked and still cannot be revoked
    assert not (_config_dir(tmp_path) / cache.CACHE_FILE).exists()


# --- the cache asked directly --------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in _env(tmp_path).items():
        monkeypatch.setenv(name, value)
    for name in ("DEVICELINK_SERVER", "DEVICELINK_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _keep(home: Path, credential: Credential, *, server: str | None = None) -> None:
    config_dir = str(_config_dir(home))
    expires = credential.expires_at
    assert cache.save(
        config_dir,
        server=credential.server,
        key=credential.access_token,
        expires=None if expires is None else expires.timestamp(),
        for_default=server is None,
        files=cache.watched_files(config_dir),
    )


def test_an_expired_key_is_not_answered(home: Path) -> None:
    expires = NOW + timedelta(hours=1)
    credential = _login(home, "dlk_expiring_check", expires_at=expires, created_at=NOW)
    _keep(home, credential)
    before, at = (expires - timedelta(microseconds=1)).timestamp(), expires.timestamp()
    assert cached_token(["token"], now=before) == "dlk_expiring_check"
    assert cached_token(["token"], now=at) is None  # expired at expires_at, as is_expired
    assert credential.is_expired(expires)
    assert not credential.is_expired(expires - timedelta(microseconds=1))


def test_an_answer_for_another_server_is_not_the_defaults(home: Path) -> None:
    _login(home, "dlk_other_check", server=OTHER)
    credential = _login(home, "dlk_default_check")
    other = _store(home).get(OTHER)
    assert other is not None
    _keep(home, other, server=OTHER)
    now = datetime(2026, 12, 4, tzinfo=UTC).timestamp()
    assert cached_token(["token"], now=now) is None
    assert cached_token(["token", "--server", OTHER], now=now) == "dlk_other_check"
    _keep(home, credential)
    assert cached_token(["token"], now=now) == "dlk_default_check"


def test_a_damaged_or_foreign_cache_is_ignored(home: Path) -> None:
    credential = _login(home, "dlk_stored_check")
    _keep(home, credential)
    kept = _config_dir(home) / cache.CACHE_FILE
    now = datetime(2026, 12, 4, tzinfo=UTC).timestamp()
    good = kept.read_text()
    assert cached_token(["token"], now=now) == "dlk_stored_check"
    for damaged in (
        good.replace(cache.HEADER, "devicelink token cache 2"),
        good.replace("\tenv\t", "\t").replace("env\tHOME", "env\tNOT_HOME"),
        "\n".join(line for line in good.splitlines() if "state.json" not in line),
        good.replace("expires\t-", "expires\tsoon"),
        good + "garbage-without-a-tab\n",
        good.replace(f"euid\t{os.geteuid()}", f"euid\t{os.geteuid() + 1}"),
    ):
        kept.write_text(damaged)
        assert cached_token(["token"], now=now) is None, damaged
    kept.write_text(good)
    assert cached_token(["token"], now=now) == "dlk_stored_check"
    os.utime(_config_dir(home) / "state.json")  # touched: it may say something else now
    assert cached_token(["token"], now=now) is None


def test_a_value_that_cannot_be_kept_on_a_line_is_not_kept(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = _login(home, "dlk_stored_check")
    monkeypatch.setenv("DEVICELINK_SERVER", "https://login.example.com\nkey\tdlk_forged")
    config_dir = str(_config_dir(home))
    assert not cache.save(
        config_dir,
        server=credential.server,
        key=credential.access_token,
        expires=None,
        for_default=True,
        files=cache.watched_files(config_dir),
    )
    assert not (_config_dir(home) / cache.CACHE_FILE).exists()
