"""The file store, used where no keyring works: private from the first byte, atomic,
refused when others can read it, safe for concurrent logins."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devicelink.client.credentials import CredentialStoreError, InsecureCredentialsFileError
from devicelink.client.store import CredentialStore

from ._workers import save_many
from .conftest import make_credential, umask

A = "https://a.example.com"
B = "https://b.example.com"
C = "http://127.0.0.1:8000"


def file_store(config_dir: Path, **kwargs: Any) -> CredentialStore:
    return CredentialStore(config_dir=config_dir, use_keyring=False, **kwargs)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_save_get_delete_round_trip(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    credential = make_credential(A)
    assert store.get(A) is None
    assert store.save(credential) == str(tmp_path / "credentials.json")
    assert store.get(A) == credential
    assert store.get("HTTPS://A.example.com/") == credential  # any spelling of the URL
    assert store.delete(A) is True
    assert store.get(A) is None
    assert store.delete(A) is False
    assert not (tmp_path / "credentials.json").exists()  # no empty file of keys left behind


def test_several_servers_side_by_side(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    credentials = {server: make_credential(server) for server in (A, B, C)}
    for credential in credentials.values():
        store.save(credential)
    assert store.servers() == sorted(credentials)
    for server, credential in credentials.items():
        assert store.get(server) == credential
    # A new login to one server replaces only that server's key.
    renewed = make_credential(B, access_token="dlk_renewed")
    store.save(renewed)
    assert store.get(B) == renewed
    assert store.get(A) == credentials[A]
    assert store.get(C) == credentials[C]
    store.delete(A)
    assert store.servers() == sorted([B, C])
    # Another store object (another process) reads the same.
    assert file_store(tmp_path).get(C) == credentials[C]


def test_default_server_is_the_last_logged_in_to(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    assert store.default_server() is None
    store.save(make_credential(A))
    assert store.default_server() == A
    store.save(make_credential(B))
    assert store.default_server() == B
    store.save(make_credential(A, access_token="dlk_again"))
    assert file_store(tmp_path).default_server() == A
    store.delete(A)  # logging out of the default falls back to the one before
    assert store.default_server() == B
    store.delete(B)
    assert store.default_server() is None
    state = json.loads((tmp_path / "state.json").read_text())
    assert state == {"version": 1, "servers": []}


def test_devicelink_token_overrides_the_stored_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = file_store(tmp_path)
    store.save(make_credential(A))
    monkeypatch.delenv("DEVICELINK_TOKEN", raising=False)
    assert store.from_environment(A) is None
    resolved = store.resolve(A)
    assert resolved is not None
    assert resolved.access_token.endswith("_secret")

    monkeypatch.setenv("DEVICELINK_TOKEN", " dlk_from_env \n")
    from_env = store.from_environment(A + "/")
    assert from_env is not None
    assert from_env.access_token == "dlk_from_env"
    assert from_env.server == A
    resolved = store.resolve(A)
    assert resolved is not None
    assert resolved.access_token == "dlk_from_env"
    assert store.resolve("https://never-logged-in.example.com") is not None
    assert store.get(A) == make_credential(A)  # the stored key is untouched

    monkeypatch.setenv("DEVICELINK_TOKEN", "")
    assert store.from_environment(A) is None


def test_token_variable_name_is_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVICELINK_TOKEN", "dlk_wrong")
    monkeypatch.setenv("ACME_TOKEN", "dlk_acme")
    store = file_store(tmp_path, token_env="ACME_TOKEN")
    credential = store.from_environment(A)
    assert credential is not None
    assert credential.access_token == "dlk_acme"


@dataclass
class Created:
    path: str
    flags: int
    mode_argument: int
    mode_of_descriptor: int
    mode_of_path: int


@pytest.mark.defect(10)
def test_key_file_is_mode_0600_from_its_creation_and_never_chmoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN.md defect 10: the original wrote the key file, then chmod-ed it, leaving a
    moment where others could read the key. Every file the store creates must already be
    0600 at the moment it comes into existence, even with umask 0, and nothing is chmod-ed."""
    config_dir = tmp_path / "config"
    created: list[Created] = []
    open_descriptors: dict[int, str] = {}
    modes_at_first_write: dict[str, int] = {}
    real_open, real_write = os.open, os.write

    def recording_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_CREAT:
            name = os.fspath(path)
            created.append(
                Created(
                    name,
                    flags,
                    mode,
                    stat.S_IMODE(os.fstat(fd).st_mode),
                    stat.S_IMODE(os.stat(name).st_mode),
                )
            )
            open_descriptors[fd] = name
        return fd

    def recording_write(fd: int, data: Any) -> int:
        name = open_descriptors.pop(fd, None)
        if name is not None:
            modes_at_first_write[name] = stat.S_IMODE(os.stat(name).st_mode)
        return real_write(fd, data)

    def no_chmod(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"chmod called with {args}")

    monkeypatch.setattr(os, "open", recording_open)
    monkeypatch.setattr(os, "write", recording_write)
    for name in ("chmod", "fchmod", "lchmod"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, no_chmod)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    monkeypatch.setattr(Path, "lchmod", no_chmod)

    store = file_store(config_dir)
    with umask(0):
        store.save(make_credential(A))
        store.save(make_credential(B))  # read-modify-write of an existing file
    monkeypatch.undo()

    key_files = [c for c in created if Path(c.path).name.startswith(".credentials.json.")]
    assert len(key_files) == 2, created
    for c in key_files:
        assert c.flags & os.O_EXCL, "a new file, never an existing one reopened"
        assert c.mode_argument == 0o600
        assert c.mode_of_descriptor == 0o600
        assert c.mode_of_path == 0o600
        assert modes_at_first_write[c.path] == 0o600
        assert not Path(c.path).exists()  # renamed onto credentials.json
    for c in created:  # the lock and the state file too
        assert Path(c.path).parent == config_dir
        assert c.mode_of_descriptor == 0o600, c
    assert mode(config_dir / "credentials.json") == 0o600
    assert mode(config_dir) == 0o700
    assert store.get(A) == make_credential(A)
    assert store.get(B) == make_credential(B)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o002])
def test_files_are_0600_and_directory_0700_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    config_dir = tmp_path / "deep" / "er" / "devicelink"
    with umask(mask):
        file_store(config_dir).save(make_credential(A))
    assert mode(config_dir) == 0o700
    assert sorted(p.name for p in config_dir.iterdir()) == [
        "credentials.json",
        "credentials.lock",
        "state.json",
    ]
    for path in config_dir.iterdir():
        assert mode(path) == 0o600, path


def test_state_file_holds_no_secret(tmp_path: Path) -> None:
    file_store(tmp_path).save(make_credential(A, access_token="dlk_very_secret"))
    assert "dlk_very_secret" not in (tmp_path / "state.json").read_text()
    assert "dlk_very_secret" in (tmp_path / "credentials.json").read_text()


@pytest.mark.parametrize("loose_mode", [0o644, 0o640, 0o604, 0o660])
def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path, loose_mode: int) -> None:
    """Like ssh with a private key: the keys may have been read, so the store refuses the
    file (for reading and for rewriting) and says how to fix it."""
    store = file_store(tmp_path)
    store.save(make_credential(A))
    path = tmp_path / "credentials.json"
    path.chmod(loose_mode)
    before = path.read_bytes()

    with pytest.raises(InsecureCredentialsFileError) as refused:
        store.get(A)
    message = str(refused.value)
    assert str(path) in message
    assert f"{loose_mode:04o}" in message
    assert "chmod 600" in message

    with pytest.raises(InsecureCredentialsFileError):
        store.save(make_credential(B))
    assert path.read_bytes() == before
    assert mode(path) == loose_mode  # the store never chmods, not even to repair

    path.chmod(0o600)  # what the user does after reading the message
    assert store.get(A) == make_credential(A)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_credentials_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    store.save(make_credential(A))
    os.chown(tmp_path / "credentials.json", 54321, -1)
    with pytest.raises(InsecureCredentialsFileError, match="owned by user id 54321"):
        store.get(A)


def test_a_damaged_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    store = file_store(tmp_path)
    fd = os.open(tmp_path / "credentials.json", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(CredentialStoreError, match="not a valid credentials file"):
        store.get(A)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = file_store(tmp_path)
    store.save(make_credential(A))
    before = (tmp_path / "credentials.json").read_bytes()

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CredentialStoreError, match="No space left"):
        store.save(make_credential(B))
    monkeypatch.undo()
    assert (tmp_path / "credentials.json").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_processes_saving_different_servers_keep_both(tmp_path: Path) -> None:
    """Concurrent logins to different servers: the lock around read-modify-write keeps
    every entry (without it, the last writer's file would drop the other's)."""
    count = 25
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [
        context.Process(target=save_many, args=(str(tmp_path), prefix, count, barrier))
        for prefix in ("left", "right")
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0]

    store = file_store(tmp_path)
    expected = sorted(
        f"https://{prefix}{i}.example.com" for prefix in ("left", "right") for i in range(count)
    )
    assert store.servers() == expected
    for server in expected:
        credential = store.get(server)
        assert credential is not None
        assert credential.access_token == "dlk_" + server.removeprefix("https://").split(".")[0]
    state = json.loads((tmp_path / "state.json").read_text())
    assert sorted(state["servers"]) == expected
    assert store.default_server() in {
        f"https://left{count - 1}.example.com",
        f"https://right{count - 1}.example.com",
    }
