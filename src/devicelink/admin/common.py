"""What every operator command shares: the settings it runs with, a store for one
action, the ``--data-dir`` option, failing with a message, and printing a table."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click

from devicelink.core.names import terminal_safe
from devicelink.runtime.embedding import database_problems
from devicelink.runtime.settings import DATABASE_FILE, Settings
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
    embedded_file = (settings.data_dir / DATABASE_FILE).resolve()
    if settings.embedded and not embedded_file.exists():
        # Run without the server's environment, the command would quietly create a
        # database of its own that no server reads.
        where = (
            f"DEVICELINK_DATABASE_URL is not set and there is no embedded database at "
            f"{embedded_file}"
        )
        advice = (
            "run this with the server's settings (--env-file /etc/devicelink/env), from "
            "the folder `serve` runs in, or with its --data-dir"
        )
        if not settings.is_development():
            fail(f"{where}: {advice}")
        click.echo(f"devicelink: {where}; creating one (otherwise {advice})", err=True)
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


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an environment file as systemd's ``EnvironmentFile=`` reads it:
    ``NAME=VALUE`` lines, comment lines starting with ``#`` or ``;``, optional quotes."""
    variables: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        name, sep, value = stripped.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"line {number} is not NAME=VALUE", param_hint="--env-file")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name.strip()] = value
    return variables


def _load_env_file(ctx: click.Context, param: click.Parameter, path: Path | None) -> None:
    # A variable set in the command's own environment wins over the file's.
    if path is not None:
        for name, value in read_env_file(path).items():
            os.environ.setdefault(name, value)


def settings_options(command: Callable[..., T]) -> Callable[..., T]:
    """``--env-file`` (the server's environment file, read first) and ``--data-dir``."""
    command = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Directory of the embedded database and secret [env: DEVICELINK_DATA_DIR].",
    )(command)
    return click.option(
        "--env-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_load_env_file,
        help="Read the settings from this file first, as the server's systemd unit does "
        "(variables already set in the environment win).",
    )(command)


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def print_table(rows: list[list[str]]) -> None:
    """Rows in aligned columns; what a terminal would obey (a newline, an escape
    sequence) in a name or any other cell is shown escaped, so no value forges a row."""
    rows = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
