"""Run in child processes by the concurrency test (importable for multiprocessing spawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devicelink.client.credentials import Credential
from devicelink.client.store import CredentialStore


def save_many(config_dir: str, prefix: str, count: int, barrier: Any) -> None:
    store = CredentialStore(config_dir=Path(config_dir), use_keyring=False)
    barrier.wait(timeout=60)
    for i in range(count):
        server = f"https://{prefix}{i}.example.com"
        store.save(Credential(server=server, access_token=f"dlk_{prefix}{i}", client_id="cli"))
