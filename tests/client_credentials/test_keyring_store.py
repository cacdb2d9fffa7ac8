"""The keyring store: one entry per server, and a fallback to the private file, with one
warning line, when the keyring is missing, failing or hanging."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keyring
import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring.errors import KeyringLocked

from devicelink.client.credentials import CredentialStoreError
from devicelink.client.store import KEYRING, CredentialStore
from tests.client_credentials.keyrings import (
    HangingKeyring,
    MemoryKeyring,
    no_keyring,
    null_keyring,
)

from .conftest import make_credential

A = "https://a.example.com"
B = "https://b.example.com"


def test_keyring_round_trip_one_entry_per_server(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    warnings: list[str] = []
    store = CredentialStore(config_dir=tmp_path, warn=warnings.append)
    first, second = make_credential(A), make_credential(B + "/")
    assert store.save(first) == KEYRING
    assert store.save(second) == KEYRING
    assert sorted(memory_keyring.entries) == [("devicelink", A), ("devicelink", B)]
    assert json.loads(memory_keyring.entries[("devicelink", A)]) == first.to_dict()
    assert store.get(A) == first
    assert store.get(B) == second
    assert store.servers() == [A, B]
    assert store.default_server() == B
    assert not (tmp_path / "credentials.json").exists()  # no key on disk
    assert "dlk_" not in (tmp_path / "state.json").read_text()

    assert store.delete(A) is True
    assert ("devicelink", A) not in memory_keyring.entries
    assert store.get(A) is None
    assert store.get(B) == second
    assert store.delete(A) is False
    assert store.servers() == [B]
    assert warnings == []


def test_host_cli_keeps_its_own_service_name_and_directory(
    tmp_path: Path, memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    store = CredentialStore(service="acme")
    assert store.config_dir == tmp_path / "xdg" / "acme"
    store.save(make_credential(A))
    assert list(memory_keyring.entries) == [("acme", A)]
    assert CredentialStore(config_dir=tmp_path / "other").get(A) is None  # devicelink's own
    assert (tmp_path / "xdg" / "acme" / "state.json").exists()


def test_a_later_login_through_the_keyring_removes_the_copy_in_the_file(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    CredentialStore(config_dir=tmp_path, use_keyring=False).save(make_credential(A))
    CredentialStore(config_dir=tmp_path, use_keyring=False).save(make_credential(B))
    store = CredentialStore(config_dir=tmp_path)
    assert store.get(A) == make_credential(A)  # still found in the file
    renewed = make_credential(A, access_token="dlk_renewed")
    assert store.save(renewed) == KEYRING
    in_file = json.loads((tmp_path / "credentials.json").read_text())["credentials"]
    assert list(in_file) == [B]
    assert store.get(A) == renewed


def test_when_both_hold_a_key_the_newer_wins(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    older = make_credential(A, access_token="dlk_old")
    newer = make_credential(A, access_token="dlk_new", created_at=older.created_at.replace(hour=13))
    memory_keyring.entries[("devicelink", A)] = json.dumps(older.to_dict())
    CredentialStore(config_dir=tmp_path, use_keyring=False).save(newer)
    assert CredentialStore(config_dir=tmp_path).get(A) == newer


def test_a_damaged_keyring_entry_is_a_clear_error(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    memory_keyring.entries[("devicelink", A)] = "hunter2"
    store = CredentialStore(config_dir=tmp_path)
    with pytest.raises(CredentialStoreError, match="log out"):
        store.get(A)
    assert store.delete(A) is True  # logging out still works


def test_use_keyring_false_never_touches_the_keyring(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    warnings: list[str] = []
    store = CredentialStore(config_dir=tmp_path, use_keyring=False, warn=warnings.append)
    assert store.save(make_credential(A)) == str(tmp_path / "credentials.json")
    assert memory_keyring.entries == {}
    assert warnings == []  # the host chose the file: nothing to warn about


@pytest.mark.parametrize(
    "backend",
    [no_keyring(), null_keyring()],
    ids=["fail", "null"],
)
def test_no_keyring_falls_back_to_the_file_with_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: object
) -> None:
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    warnings: list[str] = []
    store = CredentialStore(config_dir=tmp_path, warn=warnings.append)
    assert store.get(A) is None
    assert store.save(make_credential(A)) == str(tmp_path / "credentials.json")
    assert store.save(make_credential(B)) == str(tmp_path / "credentials.json")
    assert store.get(A) == make_credential(A)
    assert store.get(B) == make_credential(B)
    assert store.delete(A) is True
    assert len(warnings) == 1
    (line,) = warnings
    assert "\n" not in line
    assert line.startswith("devicelink: no usable keyring (no keyring backend is available)")
    assert line.endswith(f"{tmp_path / 'credentials.json'} (mode 0600)")
    # Once per process: another store on the same file does not repeat it.
    again = CredentialStore(config_dir=tmp_path, warn=warnings.append)
    assert again.get(B) == make_credential(B)
    assert len(warnings) == 1
    assert again.keyring_failure == "no keyring backend is available"


def test_a_failing_keyring_falls_back_to_the_file(tmp_path: Path, install_keyring: object) -> None:
    class LockedKeyring(MemoryKeyring):
        def set_password(self, service: str, username: str, password: str) -> None:
            raise KeyringLocked("Failed to unlock the collection!")

    keyring.set_keyring(LockedKeyring())
    warnings: list[str] = []
    store = CredentialStore(config_dir=tmp_path, warn=warnings.append)
    assert store.save(make_credential(A)) == str(tmp_path / "credentials.json")
    assert store.get(A) == make_credential(A)
    assert warnings == [
        "devicelink: no usable keyring (KeyringLocked: Failed to unlock the collection!); "
        f"keeping keys in {tmp_path / 'credentials.json'} (mode 0600)"
    ]


def test_a_hanging_keyring_falls_back_within_the_timeout_with_one_warning_line(
    tmp_path: Path, hanging_keyring: HangingKeyring, capsys: pytest.CaptureFixture[str]
) -> None:
    """A keyring backend stuck on a locked D-Bus session must not hang the CLI: after the
    timeout the key goes to the file, and stderr gets exactly one line saying so."""
    store = CredentialStore(config_dir=tmp_path, keyring_timeout=0.3)
    started = time.monotonic()
    where = store.save(make_credential(A))
    saved_after = time.monotonic() - started
    assert where == str(tmp_path / "credentials.json")
    assert 0.25 <= saved_after < 1.5

    # The same store does not wait on the keyring again.
    started = time.monotonic()
    assert store.get(A) == make_credential(A)
    assert store.save(make_credential(B)) == where
    assert store.default_server() == B
    assert time.monotonic() - started < 0.25
    assert hanging_keyring.calls == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "the keyring did not answer within 0.3 s" in lines[0]
    assert str(tmp_path / "credentials.json") in lines[0]


def test_a_hanging_keyring_on_read_returns_what_the_file_holds(
    tmp_path: Path, hanging_keyring: HangingKeyring
) -> None:
    CredentialStore(config_dir=tmp_path, use_keyring=False).save(make_credential(A))
    warnings: list[str] = []
    store = CredentialStore(config_dir=tmp_path, keyring_timeout=0.2, warn=warnings.append)
    started = time.monotonic()
    assert store.get(A) == make_credential(A)
    assert time.monotonic() - started < 1.2
    assert len(warnings) == 1


def test_the_warning_shows_a_path_under_home_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(keyring, "get_keyring", no_keyring)
    warnings: list[str] = []
    store = CredentialStore(config_dir=tmp_path / ".config" / "devicelink", warn=warnings.append)
    store.save(make_credential(A))
    assert warnings == [
        "devicelink: no usable keyring (no keyring backend is available); "
        "keeping keys in ~/.config/devicelink/credentials.json (mode 0600)"
    ]


def test_the_warning_is_shown_once_not_at_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_keyring: MemoryKeyring
) -> None:
    """Issue 16, item 9: the config directory remembers the warning was shown; a later
    run (a new process) does not repeat it, unless the keyring worked in between."""
    import devicelink.client.store as store_module

    def run(backend: object) -> list[str]:
        monkeypatch.setattr(store_module, "_warned_paths", set())  # a new process
        monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
        warnings: list[str] = []
        CredentialStore(config_dir=tmp_path, warn=warnings.append).save(make_credential(A))
        return warnings

    assert len(run(no_keyring())) == 1
    assert run(no_keyring()) == []
    silent = CredentialStore(config_dir=tmp_path / "other", warn=None)
    silent.save(make_credential(A))  # `token` shows nothing: it does not count as shown
    assert not (tmp_path / "other" / "keyring-warning").exists()
    assert run(memory_keyring) == []  # the keyring works again...
    assert len(run(no_keyring())) == 1  # ...and when it fails anew, it is said anew
