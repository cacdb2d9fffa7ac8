"""``devicelink serve`` and ``devicelink db upgrade``: migrations and the first account
once, then uvicorn with one or several workers."""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click
from sqlalchemy.pool import NullPool

from devicelink.admin.common import (
    FIRST_ACCOUNT,
    check_database,
    fail,
    load_settings,
    run_with_store,
    settings_options,
)
from devicelink.core.codes import CodeHasher
from devicelink.idp.local import hash_password
from devicelink.runtime.checks import FIRST_PASSWORD_MARKER
from devicelink.runtime.metrics import MULTIPROCESS_ENV
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.service.clock import utc_now
from devicelink.service.instance import SecretMismatch, check_secret
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.storage.migrate import SchemaOutOfDate, check_schema_at


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@settings_options
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
    from devicelink.admin.workers import run_server
    from devicelink.runtime.logging import configure_logging, get_logger

    settings = load_settings(data_dir, log_level=log_level.lower() if log_level else None)
    if not settings.public_url:
        shown = f"[{host}]" if ":" in host else host
        settings = settings.model_copy(update={"public_url": f"http://{shown}:{port}"})
    try:
        settings.check(workers=workers)
        settings.secret_bytes()
    except ConfigurationError as exc:
        fail(str(exc))
    log_format = configure_logging(settings.log_format, settings.log_level)
    unshared = settings.unshared_limits(workers)
    if unshared:  # development only: check() refuses it elsewhere
        get_logger("devicelink").warning("rate limits not shared", problem=unshared)
    # Once, here, before any worker starts: migrations and the first account.
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.should_migrate():
        upgrade_database(settings.effective_database_url(), schema=settings.database_schema)
    else:
        try:
            check_schema_at(settings.effective_database_url(), schema=settings.database_schema)
        except SchemaOutOfDate as exc:
            fail(str(exc))
    try:
        asyncio.run(_check_secret(settings))
    except SecretMismatch as exc:
        fail(str(exc))
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
    run_server(  # uvicorn.run, with a worker's death logged as a warning
        "devicelink.server.app:create_app_from_environment",
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
@settings_options
def db_upgrade(data_dir: Path | None) -> None:
    """Apply the schema migrations (run before starting new versions on PostgreSQL)."""
    settings = load_settings(data_dir)
    check_database(settings)
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    applied = upgrade_database(settings.effective_database_url(), schema=settings.database_schema)
    where = f", schema {settings.database_schema}" if settings.database_schema else ""
    if applied:
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        click.echo("nothing to apply")
    click.echo(f"database at {_describe_db(settings)}{where} is up to date")


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


async def _check_secret(settings: Settings) -> None:
    """Once, before any worker starts: the secret is the database's (each worker checks
    again as it builds its app; here the refusal is one clear message)."""
    engine = create_engine_for_url(
        settings.effective_database_url(), schema=settings.database_schema, poolclass=NullPool
    )
    try:
        await check_secret(SqlStore(engine), CodeHasher(settings.secret_bytes()))
    finally:
        await engine.dispose()
