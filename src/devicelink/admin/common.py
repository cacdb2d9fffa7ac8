"""What every operator command shares: the settings it runs with, a store for one
action, the ``--data-dir`` option, failing with a message, and printing a table."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click

from devicelink.runtime.embedding import database_problems
from devicelink.runtime.settings import Settings
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database

T = TypeVar("T")

FIRST_ACCOUNT = "admin"
"""The account the first start of the embedded default creates (``devicelink serve``)."""


def load_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    settings = Settings()
    updates: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    return settings.model_copy(update=updates) if updates else settings


def check_database(settings: Settings) -> None:
    """Fail with the message when the database settings cannot work (a schema on SQLite)."""
    for problem in database_problems(settings):
        fail(problem)


def run_with_store(settings: Settings, action: Callable[[SqlStore], Awaitable[T]]) -> T:
    """Run an administrative action; the embedded database is created and migrated first."""
    check_database(settings)
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    schema = settings.database_schema
    if settings.should_migrate():
        upgrade_database(settings.effective_database_url(), schema=schema)

    async def run() -> T:
        engine = create_engine_for_url(settings.effective_database_url(), schema=schema)
        try:
            return await action(SqlStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def fail(message: str) -> None:
    click.echo(f"devicelink: {message}", err=True)
    sys.exit(2)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the embedded database and secret [env: DEVICELINK_DATA_DIR].",
)


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
