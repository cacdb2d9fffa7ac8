"""Server-side commands: ``serve``, ``db upgrade``, ``clients add``."""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import parse_scope
from devicelink.core.models import Client
from devicelink.service.clock import utc_now
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.web.settings import ConfigurationError, Settings

T = TypeVar("T")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def load_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    settings = Settings()
    updates: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    return settings.model_copy(update=updates) if updates else settings


def run_with_store(settings: Settings, action: Callable[[SqlStore], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine_for_url(settings.effective_database_url())
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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@data_dir_option
@click.option("--log-level", default="info", show_default=True)
def serve(host: str, port: int, data_dir: Path | None, log_level: str) -> None:
    """Run the devicelink server.

    With no configuration it uses an embedded SQLite database in ./devicelink-data,
    migrates it, creates the secret and the default client `devicelink-cli`.
    """
    import uvicorn

    from devicelink.web.app import create_app

    settings = load_settings(data_dir)
    if not settings.public_url:
        shown = f"[{host}]" if ":" in host else host
        settings = settings.model_copy(update={"public_url": f"http://{shown}:{port}"})
    try:
        settings.check()
        settings.secret_bytes()
    except ConfigurationError as exc:
        fail(str(exc))
    if settings.should_migrate():
        upgrade_database(settings.effective_database_url())
    click.echo(f"devicelink {settings.public_url} (database: {_describe_db(settings)})", err=True)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        server_header=False,
    )


def _describe_db(settings: Settings) -> str:
    url = settings.effective_database_url()
    if url.startswith("sqlite"):
        return url.split(":///", 1)[1]
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@data_dir_option
def db_upgrade(data_dir: Path | None) -> None:
    """Apply the schema migrations (run before starting new versions on PostgreSQL)."""
    settings = load_settings(data_dir)
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.effective_database_url())
    click.echo(f"database at {_describe_db(settings)} is up to date")


@click.group()
def clients() -> None:
    """Register OAuth clients."""


@clients.command("add")
@click.argument("client_id")
@click.option("--name", "display_name", help="Name shown to users (default: the client id).")
@click.option("--scope", "scopes", default="api", show_default=True, help="Space-separated scopes.")
@click.option("--confidential", is_flag=True, help="Issue a client secret (printed once).")
@click.option(
    "--key-lifetime",
    type=int,
    default=None,
    help="Seconds its keys live; 0 for keys that never expire [default: DEVICELINK_KEY_LIFETIME].",
)
@data_dir_option
def clients_add(
    client_id: str,
    display_name: str | None,
    scopes: str,
    confidential: bool,
    key_lifetime: int | None,
    data_dir: Path | None,
) -> None:
    """Register a client called CLIENT_ID."""
    if not _CLIENT_ID.match(client_id):
        fail("a client id is 1 to 128 letters, digits, dots, dashes or underscores")
    try:
        scope = parse_scope(scopes) or ()
    except ValueError:
        fail("--scope must be space-separated scope tokens")
        return
    settings = load_settings(data_dir)
    try:
        hasher = CodeHasher(settings.secret_bytes())
    except ConfigurationError as exc:
        fail(str(exc))
        return
    lifetime = settings.key_lifetime if key_lifetime is None else key_lifetime
    secret = secrets.token_urlsafe(32) if confidential else None
    client = Client(
        client_id=client_id,
        name=display_name or client_id,
        scopes=scope,
        key_lifetime=lifetime or None,
        confidential=confidential,
        secret_hash=hasher.client_secret(secret) if secret else None,
        created_at=utc_now(),
    )

    async def add(store: SqlStore) -> None:
        async with store.transaction() as tx:
            await tx.clients.add(client)

    try:
        run_with_store(settings, add)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"client_id: {client_id}")
    if secret:
        click.echo(f"client_secret: {secret}")
        click.echo("(the secret is shown once; store it now)", err=True)


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(db)
    group.add_command(clients)
