"""Server-side commands: ``serve``, ``db upgrade``, ``clients add``."""

from __future__ import annotations

import asyncio
import atexit
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import click

from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import parse_scope
from devicelink.core.models import Client
from devicelink.idp.local import hash_password
from devicelink.service.admin import AdminService, NotFound
from devicelink.service.clock import utc_now
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.web.config_commands import config
from devicelink.web.metrics import MULTIPROCESS_ENV
from devicelink.web.settings import FIRST_PASSWORD_MARKER, ConfigurationError, Settings

T = TypeVar("T")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def load_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    settings = Settings()
    updates: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        updates["data_dir"] = data_dir
    return settings.model_copy(update=updates) if updates else settings


def run_with_store(settings: Settings, action: Callable[[SqlStore], Awaitable[T]]) -> T:
    """Run an administrative action; the embedded database is created and migrated first."""
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.should_migrate():
        upgrade_database(settings.effective_database_url())

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
@click.option(
    "--log-level",
    default=None,
    help="debug, info, warning or error [env: DEVICELINK_LOG_LEVEL; default: info].",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes sharing the port.",
)
def serve(host: str, port: int, data_dir: Path | None, log_level: str | None, workers: int) -> None:
    """Run the devicelink server.

    With no configuration it uses an embedded SQLite database in ./devicelink-data,
    migrates it, creates the secret and the default client `devicelink-cli`.
    """
    import uvicorn

    from devicelink.web.logging import configure_logging, get_logger

    settings = load_settings(data_dir, log_level=log_level.lower() if log_level else None)
    if not settings.public_url:
        shown = f"[{host}]" if ":" in host else host
        settings = settings.model_copy(update={"public_url": f"http://{shown}:{port}"})
    try:
        settings.check()
        settings.secret_bytes()
    except ConfigurationError as exc:
        fail(str(exc))
    log_format = configure_logging(settings.log_format, settings.log_level)
    # Once, here, before any worker starts: migrations and the first account.
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.should_migrate():
        upgrade_database(settings.effective_database_url())
    if settings.embedded and settings.local_accounts:
        _create_first_account(settings)
    # Each worker builds its app from the environment: hand it what was decided here.
    os.environ.update(
        {
            "DEVICELINK_DATA_DIR": str(settings.data_dir.resolve()),
            "DEVICELINK_PUBLIC_URL": settings.issuer,
            "DEVICELINK_LOG_FORMAT": log_format,
            "DEVICELINK_LOG_LEVEL": settings.log_level,
            "DEVICELINK_AUTO_MIGRATE": "false",
        }
    )
    if workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
        # Every worker writes its samples here and /metrics adds them all up.
        metrics_dir = tempfile.mkdtemp(prefix="devicelink-metrics-")
        os.environ[MULTIPROCESS_ENV] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    proxies = settings.trusted_proxy_list()
    get_logger("devicelink").info(
        "devicelink serving",
        public_url=settings.issuer,
        database=_describe_db(settings),
        workers=workers,
        trusted_proxies=proxies,
    )
    # uvicorn re-raises SIGTERM once it has shut down gracefully: exit 0 then.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "devicelink.web.app:create_app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        log_config=None,  # configure_logging's handler, in every worker
        access_log=False,  # ours (devicelink.access) leaves the query string out
        proxy_headers=bool(proxies),
        forwarded_allow_ips=",".join(proxies) if proxies else None,
        timeout_graceful_shutdown=settings.graceful_timeout,
        server_header=False,
    )


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


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


FIRST_ACCOUNT = "admin"


def _create_first_account(settings: Settings) -> None:
    """On the embedded default, the first start with no account creates one and prints
    its one-time password, once; nothing else ever shows it.

    In development only: elsewhere a printed password would be a default password left
    on (and in the service's log), so the operator adds accounts with `users add`. A
    marker file next to the database remembers that the password is the printed one
    until `users passwd admin`; outside development `serve` refuses to start while it
    is there (Settings.check)."""
    development = settings.is_development()
    password = secrets.token_urlsafe(12)

    async def create(store: SqlStore) -> bool | None:
        async with store.transaction() as tx:
            if await tx.users.count() > 0:
                return False
            if not development:
                return None
            await tx.users.add(FIRST_ACCOUNT, hash_password(password), utc_now())
            return True

    created = run_with_store(settings, create)
    if created is None:
        click.echo(
            "devicelink: no local account yet; add one with "
            "`devicelink users add NAME --password-stdin`",
            err=True,
        )
    elif created:
        marker = settings.data_dir / FIRST_PASSWORD_MARKER
        with open(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(f"the account {FIRST_ACCOUNT} still has its printed one-time password\n")
        click.echo(
            "\n  Created the first account. Sign in to approve devices with:\n"
            f"    username: {FIRST_ACCOUNT}\n"
            f"    password: {password}\n"
            "  This password is shown only now; change it with "
            f"`devicelink users passwd {FIRST_ACCOUNT}`.\n",
            err=True,
        )


@click.group()
def users() -> None:
    """Local accounts (for sign-in without an upstream provider)."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        fail("a password needs at least 8 characters")
    if len(password) > 1024:
        fail("a password may have at most 1024 characters")
    return password


@users.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
def users_add(name: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Create the local account NAME."""
    if not 1 <= len(name) <= 200 or name != name.strip() or any(ch.isspace() for ch in name):
        fail("a username is 1 to 200 characters without spaces")
    settings = load_settings(data_dir)
    password_hash = hash_password(_read_password(password_stdin))

    async def add(store: SqlStore) -> None:
        async with store.transaction() as tx:
            await tx.users.add(name, password_hash, utc_now())

    try:
        run_with_store(settings, add)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"created user {name}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@data_dir_option
def users_passwd(name: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Set a new password for the local account NAME."""
    settings = load_settings(data_dir)
    password_hash = hash_password(_read_password(password_stdin))

    async def change(store: SqlStore) -> bool:
        async with store.transaction() as tx:
            user = await tx.users.get_by_username(name)
            if user is None or user.provider != "local":
                return False
            return await tx.users.set_password(user.id, password_hash)

    if not run_with_store(settings, change):
        fail(f"no local account named {name!r}")
    if name == FIRST_ACCOUNT and settings.embedded:
        (settings.data_dir / FIRST_PASSWORD_MARKER).unlink(missing_ok=True)
    click.echo(f"password of {name} changed")


@users.command("disable")
@click.argument("name")
@data_dir_option
def users_disable(name: str, data_dir: Path | None) -> None:
    """Disable the account NAME: its keys stop working at once."""
    settings = load_settings(data_dir)
    try:
        changed = run_with_store(settings, lambda store: AdminService(store).disable_user(name))
    except NotFound as exc:
        fail(str(exc))
        return
    if name == FIRST_ACCOUNT and settings.embedded:
        (settings.data_dir / FIRST_PASSWORD_MARKER).unlink(missing_ok=True)
    click.echo(f"disabled {name}" if changed else f"{name} was already disabled")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@click.group()
def keys() -> None:
    """API keys issued to devices."""


@keys.command("list")
@click.option("--user", "username", help="Only the keys of this user.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired keys.")
@data_dir_option
def keys_list(username: str | None, show_all: bool, data_dir: Path | None) -> None:
    """List API keys (active ones unless --all)."""
    settings = load_settings(data_dir)
    try:
        listing = run_with_store(settings, lambda store: AdminService(store).list_keys(username))
    except NotFound as exc:
        fail(str(exc))
        return
    now = utc_now()
    rows = [["ID", "USER", "CLIENT", "NAME", "CREATED", "LAST USED", "EXPIRES", "STATE"]]
    for item in listing:
        key = item.key
        state = (
            "revoked"
            if key.revoked_at
            else "expired"
            if not key.is_active(now)
            else "disabled user"
            if item.owner.disabled
            else "active"
        )
        if state != "active" and not show_all:
            continue
        rows.append(
            [
                str(key.id),
                item.owner.username,
                key.client_id,
                key.name[:60],
                _when(key.created_at),
                _when(key.last_used_at) + (f" {key.last_used_ip}" if key.last_used_ip else ""),
                _when(key.expires_at) if key.expires_at else "never",
                state,
            ]
        )
    if len(rows) == 1:
        click.echo("no keys")
        return
    _table(rows)


@keys.command("revoke")
@click.argument("key_id", type=int)
@data_dir_option
def keys_revoke(key_id: int, data_dir: Path | None) -> None:
    """Revoke the key KEY_ID (see `devicelink keys list`): it stops working at once."""
    settings = load_settings(data_dir)
    try:
        changed = run_with_store(settings, lambda store: AdminService(store).revoke_key(key_id))
    except NotFound as exc:
        fail(str(exc))
        return
    click.echo(f"revoked key {key_id}" if changed else f"key {key_id} was already revoked")


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(value: str, now: datetime) -> datetime:
    """``30m``, ``2h``, ``7d``, ``1w`` ago, or an ISO 8601 date or time (UTC if no zone)."""
    match = _DURATION.match(value.strip().lower())
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter("use 30m, 2h, 7d, 1w or an ISO date such as 2026-11-29") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.option("--user", "username", help="Only events of this user.")
@click.option("--since", help="How far back: 30m, 2h, 7d, 1w, or an ISO date.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@data_dir_option
def audit(username: str | None, since: str | None, limit: int, data_dir: Path | None) -> None:
    """Print recent audit events: flows started, wrong codes, approvals, keys, revocations."""
    settings = load_settings(data_dir)
    after = parse_since(since, utc_now()) if since else None
    try:
        events = run_with_store(
            settings,
            lambda store: AdminService(store).audit(username=username, since=after, limit=limit),
        )
    except NotFound as exc:
        fail(str(exc))
        return
    if not events:
        click.echo("no events")
        return
    rows = [["WHEN (UTC)", "EVENT", "USER", "CLIENT", "FROM", "DETAIL"]]
    for event in events:
        rows.append(
            [
                event.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                event.kind.value,
                event.username or "-",
                event.client_id or "-",
                event.ip or "-",
                " ".join(
                    part
                    for part in (
                        f"key {event.api_key_id}" if event.api_key_id else "",
                        f"flow {event.device_authorization_id}"
                        if event.device_authorization_id
                        else "",
                        event.detail or "",
                    )
                    if part
                ),
            ]
        )
    _table(rows)


def register(group: click.Group) -> None:
    group.add_command(serve)
    group.add_command(db)
    group.add_command(clients)
    group.add_command(users)
    group.add_command(keys)
    group.add_command(audit)
    group.add_command(config)
    from devicelink.web.maintenance_commands import purge  # imports this module

    group.add_command(purge)
