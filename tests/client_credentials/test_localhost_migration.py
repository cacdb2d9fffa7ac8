"""Issue 16, item 8: ``localhost`` and ``127.0.0.1`` are one server. Keys an older version
stored under ``http://localhost:PORT`` (keyring entry, credentials file, state file) are
found, and moved, under ``http://127.0.0.1:PORT``, and none is lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from devicelink.client.store import CredentialStore
from tests.client_credentials.keyrings import MemoryKeyring

from .conftest import make_credential

OLD = "http://localhost:8000"
NEW = "http://127.0.0.1:8000"


def _entry(key: str, created_at: str = "2026-11-29T12:00:00+00:00") -> dict[str, object]:
    """A credential as an older version wrote it: its server spelt ``localhost``."""
    return {
        "server": OLD,
        "access_token": key,
        "client_id": "devicelink-cli",
        "scope": "api",
        "created_at": created_at,
    }


def _write_private(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    path.chmod(0o600)


def test_a_keyring_entry_under_localhost_is_found_and_moved(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    memory_keyring.entries[("devicelink", OLD)] = json.dumps(_entry("dlk_old_check"))
    store = CredentialStore(config_dir=tmp_path, warn=lambda message: None)

    found = store.get("localhost:8000")

    assert found is not None
    assert found.access_token == "dlk_old_check"
    assert found.server == NEW
    assert list(memory_keyring.entries) == [("devicelink", NEW)]
    assert store.get(NEW) == found


def test_a_credentials_file_under_localhost_is_read_as_127_0_0_1(tmp_path: Path) -> None:
    _write_private(
        tmp_path / "credentials.json",
        {"version": 1, "credentials": {OLD: _entry("dlk_old_check")}},
    )
    _write_private(tmp_path / "state.json", {"version": 1, "servers": [OLD]})
    store = CredentialStore(config_dir=tmp_path, use_keyring=False, warn=lambda m: None)
    found = store.get(NEW)
    assert found is not None
    assert found.access_token == "dlk_old_check"
    assert store.servers() == [NEW]
    assert store.default_server() == NEW
    assert store.stored_in("localhost:8000") == str(tmp_path / "credentials.json")


def test_two_keys_of_the_two_spellings_keep_the_newer_and_mark_the_older(tmp_path: Path) -> None:
    """Written when they were two servers: one of them can be used now, the other is to be
    revoked (by the next command), never forgotten while it may still work."""
    _write_private(
        tmp_path / "credentials.json",
        {
            "version": 1,
            "credentials": {
                OLD: _entry("dlk_older_check", "2026-11-01T12:00:00+00:00"),
                NEW: {**_entry("dlk_newer_check"), "server": NEW},
            },
        },
    )
    _write_private(tmp_path / "state.json", {"version": 1, "servers": [NEW, OLD]})
    store = CredentialStore(config_dir=tmp_path, use_keyring=False, warn=lambda m: None)
    current = store.get(NEW)
    assert current is not None
    assert current.access_token == "dlk_newer_check"
    (marked,) = store.pending_revocation(NEW)
    assert marked.access_token == "dlk_older_check"
    assert marked.revocation_pending_since == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert store.servers() == [NEW]

    # Once revoked, it is forgotten; the newer key stays, now under one name.
    store.forget(marked)
    assert store.pending_revocation(NEW) == []
    assert store.get(NEW) == current
    written = json.loads((tmp_path / "credentials.json").read_text())
    assert list(written["credentials"]) == [NEW]


def test_saving_for_localhost_replaces_the_key_of_127_0_0_1(tmp_path: Path) -> None:
    store = CredentialStore(config_dir=tmp_path, use_keyring=False, warn=lambda m: None)
    store.save(make_credential(NEW, access_token="dlk_first_check"))
    store.save(make_credential("localhost:8000", access_token="dlk_second_check"))
    assert store.servers() == [NEW]
    found = store.get(NEW)
    assert found is not None
    assert found.access_token == "dlk_second_check"
