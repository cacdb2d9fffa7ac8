"""What every operator command shares: the settings it runs with, the database it acts
on (named, and never created here), a store for one action, the ``--data-dir`` option,
the exit codes, failing with a message, and printing a table or JSON."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from devicelink.core.names import terminal_safe
from devicelink.runtime.embedding import database_problems
from devicelink.runtime.settings import Settings
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.storage.migrate import SchemaOutOfDate, check_schema

T = TypeVar("T")

FIRST_ACCOUNT = "admin"
"""The account the first start of the embedded default creates (``devicelink serve``)."""


class AdminExit(IntEnum):
    """The exit codes of the operator's commands (the README's "Commands")."""

    OK = 0
    REFUSED = 1
    """``config check``: a configuration ``serve`` would refuse."""
    USAGE = 2
    """Bad input, an unknown user, client or key, or settings that cannot work (no
    database where they point)."""
    EXISTS = 3
    """``users add``, ``clients add``: the name or id is taken."""
    IN_USE = 4
    """``clients remove``: the client still has live keys, or revocations of its keys
    wait for the key issuer."""


def load_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    settings = Settings()
    updates: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    return settings.model_copy(update=updates) if updates else settings


def check_database(settings: Settings) -> None:
    """Fail with the message when the database settings cannot work (a schema on SQLite,
    a URL that is none)."""
    try:
        make_url(settings.effective_database_url())
    except ArgumentError:
        # Not echoed: the text may hold a password.
        fail(
            "DEVICELINK_DATABASE_URL is not a database URL (such as "
            "postgresql://USER:PASSWORD@HOST/NAME)"
        )
    for problem in database_problems(settings):
        fail(problem)


def sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file the settings point at; None for another database (or memory)."""
    url = make_url(settings.effective_database_url())
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve()


def database_description(settings: Settings) -> str:
    """Where the command acts: the SQLite file's path, or the URL with any password
    masked (``postgresql://devicelink:***@db/devicelink``)."""
    file = sqlite_file(settings)
    if file is not None:
        return str(file)
    shown = make_url(settings.effective_database_url()).render_as_string(hide_password=True)
    schema = settings.database_schema
    return f"{shown} (schema {schema})" if schema else shown


def require_database(settings: Settings) -> None:
    """Fail, saying where the command looked and how to point it elsewhere, when the
    SQLite file the settings name does not exist: only ``serve`` and ``db upgrade``
    create a database (run in the wrong folder, any other command would quietly make
    one of its own that no server reads)."""
    file = sqlite_file(settings)
    if file is None or file.exists():
        return
    where = (
        f"DEVICELINK_DATABASE_URL is not set and there is no embedded database at {file}"
        if settings.embedded
        else f"there is no database at {file} (DEVICELINK_DATABASE_URL)"
    )
    fail(
        f"{where}: point this command at the server's database with its settings "
        "(--env-file /etc/devicelink/env, or DEVICELINK_DATABASE_URL), or run it from the "
        "folder `serve` runs in or with its --data-dir; only `devicelink serve` and "
        "`devicelink db upgrade` create a database"
    )


def admin_settings(data_dir: Path | None = None) -> Settings:
    """The settings of a command that acts on an existing database: checked, the
    database required, and named on standard error (``database: ...``), so the
    operator sees which one was changed or listed."""
    settings = load_settings(data_dir)
    check_database(settings)
    require_database(settings)
    click.echo(f"database: {database_description(settings)}", err=True)
    return settings


def run_with_store(settings: Settings, action: Callable[[SqlStore], Awaitable[T]]) -> T:
    """Run an administrative action on the existing database (an embedded one is
    migrated first; another must have been upgraded with ``db upgrade``)."""
    check_database(settings)
    require_database(settings)
    schema = settings.database_schema
    migrate = settings.should_migrate()
    if migrate:
        upgrade_database(settings.effective_database_url(), schema=schema)

    async def run() -> T:
        engine = create_engine_for_url(settings.effective_database_url(), schema=schema)
        try:
            if not migrate:
                await check_schema(engine, schema=schema)
            return await action(SqlStore(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except SchemaOutOfDate as exc:
        fail(str(exc))
        raise  # fail() exits


def fail(message: str, code: AdminExit = AdminExit.USAGE) -> None:
    click.echo(f"devicelink: {message}", err=True)
    sys.exit(code)


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


def iso_time(moment: datetime | None) -> str | None:
    """A time of ``--json`` output: ISO 8601 with its zone (UTC), to the second."""
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def print_json(value: object) -> None:
    """``--json`` output: one document on standard output. Control characters and
    every character beyond ASCII are escaped (``\\u001b``), so a name cannot reach the
    terminal as a control sequence, yet reads back exactly."""
    click.echo(json.dumps(value, indent=2))


def print_table(rows: list[list[str]]) -> None:
    """Rows in aligned columns; what a terminal would obey (a newline, an escape
    sequence) in a name or any other cell is shown escaped, so no value forges a row."""
    rows = [[terminal_safe(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array (times in ISO 8601, UTC)."
)
"""``--json`` of the listing commands."""
