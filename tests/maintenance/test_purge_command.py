"""``devicelink purge [--dry-run]`` through Click against the embedded SQLite default."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from devicelink.cli import main
from devicelink.core.models import Status
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.storage import SqlStore, create_engine_for_url

from .conftest import DAY, Rows

pytestmark = pytest.mark.defect(7)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("DEVICELINK_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "data"
    monkeypatch.setenv("DEVICELINK_DATA_DIR", str(directory))
    code, output = run("db", "upgrade")  # as an operator would, before purging
    assert code == 0, output
    return directory


def run(*args: str) -> tuple[int, str]:
    """The exit code, and standard output (standard error names the database)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def counts(output: str) -> dict[str, int]:
    """The table the command prints, as {kind: number}."""
    table: dict[str, int] = {}
    for line in output.splitlines()[1:]:
        kind, number = line.split()
        table[kind] = int(number)
    return table


def seed(data_dir: Path) -> None:
    """One row of each kind past its retention, one within it, relative to the wall clock
    (the command's clock)."""
    now = datetime.now(UTC)

    async def add() -> None:
        url = Settings(data_dir=data_dir).effective_database_url()
        store = SqlStore(create_engine_for_url(url))
        rows = Rows(store, now=now)
        try:
            await rows.authorization("old", expires_at=now - 2 * DAY, status=Status.DENIED)
            await rows.authorization("recent", expires_at=now - timedelta(hours=1))
            await rows.authorization("live", expires_at=now + timedelta(minutes=5))
            await rows.authorization_code("old", expires_at=now - 2 * DAY, redeemed=True)
            await rows.authorization_code("recent", expires_at=now - timedelta(hours=1))
            await rows.authorization_code("live", expires_at=now + timedelta(minutes=1))
            await rows.key("revoked-long-ago", expires_at=None, revoked_at=now - 31 * DAY)
            await rows.key("revoked-yesterday", expires_at=None, revoked_at=now - DAY)
            await rows.key("active", expires_at=now + DAY)
            await rows.session("expired", expires_at=now - timedelta(minutes=1))
            await rows.session("live", expires_at=now + timedelta(hours=1))
            await rows.audit("100 days ago", occurred_at=now - 100 * DAY)
            await rows.audit("today", occurred_at=now - timedelta(hours=1))
        finally:
            await store.dispose()

    asyncio.run(add())


def test_purge_prints_what_it_deleted_per_kind(data_dir: Path) -> None:
    code, output = run("purge")  # creates and migrates the embedded database
    assert code == 0, output
    assert counts(output) == {
        "device_authorizations": 0,
        "authorization_codes": 0,
        "api_keys": 0,
        "browser_sessions": 0,
        "audit_events": 0,
        "total": 0,
    }
    seed(data_dir)

    code, output = run("purge", "--dry-run")
    assert code == 0, output
    assert output.split()[:3] == ["KIND", "WOULD", "DELETE"]
    expected = {
        "device_authorizations": 1,
        "authorization_codes": 1,
        "api_keys": 1,
        "browser_sessions": 1,
        "audit_events": 1,
        "total": 5,
    }
    assert counts(output) == expected

    code, output = run("purge", "--dry-run")  # a dry run deleted nothing
    assert counts(output) == expected

    code, output = run("purge")
    assert code == 0, output
    assert output.split()[:2] == ["KIND", "DELETED"]
    assert counts(output) == expected

    code, output = run("purge")
    assert counts(output)["total"] == 0


def test_retentions_come_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("purge")
    seed(data_dir)
    monkeypatch.setenv("DEVICELINK_AUDIT_RETENTION", str(200 * 86_400))
    monkeypatch.setenv("DEVICELINK_CODE_RETENTION", "60")
    monkeypatch.setenv("DEVICELINK_KEY_RETENTION", "3600")
    monkeypatch.setenv("DEVICELINK_PURGE_BATCH_SIZE", "1")

    code, output = run("purge")

    assert code == 0, output
    assert counts(output) == {
        "device_authorizations": 2,  # the one expired an hour ago too
        "authorization_codes": 2,  # the one expired an hour ago too
        "api_keys": 2,  # the one revoked yesterday too
        "browser_sessions": 1,
        "audit_events": 0,  # kept for 200 days now
        "total": 7,
    }


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("purge_interval", -1),
        ("code_retention", -1),
        ("key_retention", -5),
        ("audit_retention", -1),
        ("purge_batch_size", 0),
        ("purge_batch_size", 100_000),
    ],
)
def test_bad_purge_settings_are_refused_at_start_up(setting: str, value: int) -> None:
    bad: dict[str, Any] = {setting: value}
    settings = Settings(public_url="http://127.0.0.1:8000", **bad)
    with pytest.raises(ConfigurationError, match=f"DEVICELINK_{setting.upper()}"):
        settings.check()
