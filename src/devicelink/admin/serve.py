"""``devicelink serve`` and ``devicelink db upgrade``: migrations and the first account
once, then uvicorn with one or several workers."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import secrets
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

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
from devicelink.idp.local import hash_password
from devicelink.runtime.checks import FIRST_PASSWORD_MARKER
from devicelink.runtime.metrics import MULTIPROCESS_ENV
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.runtime.wiring import code_hasher
from devicelink.service.clock import utc_now
from devicelink.service.instance import SecretMismatch, check_secret
from devicelink.storage import SqlStore, create_engine_for_url, upgrade_database
from devicelink.storage.migrate import SchemaOutOfDate, check_schema_at

if TYPE_CHECKING:
    from devicelink.admin.workers import Listener


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
@click.option(
    "--ssl-certfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Serve https with this certificate (PEM, the chain after it); with --ssl-keyfile.",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The certificate's private key (PEM, unencrypted); with --ssl-certfile.",
)
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    log_level: str | None,
    workers: int,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
) -> None:
    """Run the devicelink server.

    With no configuration it uses an embedded SQLite database in ./devicelink-data,
    migrates it, creates the secret and the default client `devicelink-cli`. With
    --ssl-certfile and --ssl-keyfile it terminates TLS itself (no proxy needed, say, to
    approve from a phone on the local network).
    """
    from devicelink.admin.workers import run_server
    from devicelink.runtime.logging import configure_logging, get_logger

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    settings = load_settings(data_dir, log_level=log_level.lower() if log_level else None)
    settings, other_scheme = _public_url(settings, host, port, "https" if ssl_certfile else "http")
    try:
        settings.check(workers=workers)
        settings.secret_bytes()
    except ConfigurationError as exc:
        fail(str(exc))
    log_format = configure_logging(settings.log_format, settings.log_level)
    if other_scheme:  # a proxy in front may change it; said at once, in case none does
        get_logger("devicelink").warning(other_scheme)
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
    # The port first: a start that cannot listen creates nothing (no first account).
    listener = _listen(settings, host, port, workers, ssl_certfile, ssl_keyfile)
    first_password = _create_first_account(settings)
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
    _tell_the_operator(settings, log_format, first_password)
    # uvicorn re-raises SIGTERM once it has shut down gracefully: exit 0 then.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    run_server(  # uvicorn, a worker's death a warning
        listener, on_serving=functools.partial(_log_serving, settings, workers)
    )


def _log_serving(settings: Settings, workers: int) -> None:
    """Said once the application answers on the bound port, never before."""
    from devicelink.runtime.logging import get_logger

    get_logger("devicelink").info(
        "devicelink serving",
        public_url=settings.issuer,
        database=_describe_db(settings),
        workers=workers,
        trusted_proxies=settings.trusted_proxy_list(),
    )


def _listen(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
) -> Listener:
    """uvicorn's configuration, its socket bound; a clear refusal when it cannot be."""
    from devicelink.admin.workers import PortUnavailable, listen

    proxies = settings.trusted_proxy_list()
    try:
        return listen(
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
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )
    except PortUnavailable as exc:
        fail(
            f"cannot listen on {exc}: another server may be using the port (choose another "
            "with --port), or the address is not this machine's (--host)"
        )
        raise  # fail() exits


def _public_url(settings: Settings, host: str, port: int, scheme: str) -> tuple[Settings, str]:
    """``settings`` with the listening address as PUBLIC_URL when none is set; a warning
    when the one set has another scheme than the one served."""
    if not settings.public_url:
        shown = f"[{host}]" if ":" in host else host
        return settings.model_copy(update={"public_url": f"{scheme}://{shown}:{port}"}), ""
    if settings.issuer.startswith(f"{scheme}://"):
        return settings, ""
    return settings, (
        f"serving {scheme}, and DEVICELINK_PUBLIC_URL is {settings.issuer}: the links "
        "devicelink hands out use the latter"
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


def _create_first_account(settings: Settings) -> str | None:
    """On the embedded default, the first start with no account creates one; its
    one-time password, which :func:`_tell_the_operator` shows once; nothing else ever
    shows it.

    In development only: elsewhere a printed password would be a default password left
    on (and in the service's log), so the operator adds accounts with `users add`. A
    marker file next to the database remembers that the password is the printed one
    until `users passwd admin`; outside development `serve` refuses to start while it
    is there (Settings.check)."""
    if not (settings.embedded and settings.local_accounts):
        return None
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
        from devicelink.runtime.logging import get_logger

        get_logger("devicelink").warning(
            "no local account yet: add one with `devicelink users add NAME --password-stdin`"
        )
        return None
    if not created:
        return None
    marker = settings.data_dir / FIRST_PASSWORD_MARKER
    with open(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        out.write(f"the account {FIRST_ACCOUNT} still has its printed one-time password\n")
    return password


def _tell_the_operator(settings: Settings, log_format: str, first_password: str | None) -> None:
    """The first start ends with the one-time password and the next step (the pages,
    and the login command); later starts remind that the password was never changed.

    In the log stream's own format: JSON events when the logs are JSON (a plain line
    would break every reader of the stream), else lines for the person at the terminal.
    The password is written only here, once, where the operator reads the server."""
    from devicelink.runtime.logging import get_logger

    log = get_logger("devicelink")
    change = f"devicelink users passwd {FIRST_ACCOUNT}"
    login = f"{_devicelink_command()} login --server {settings.issuer}"
    pages = f"{settings.issuer}/"
    if first_password is not None:
        if log_format == "json":
            log.warning(
                "created the first account; its one-time password is shown only now",
                username=FIRST_ACCOUNT,
                password=first_password,
                change_it_with=change,
            )
            log.info("next step: sign a command line in", pages=pages, login=login)
            return
        click.echo(
            "\n  Created the first account. Sign in to approve devices with:\n"
            f"    username: {FIRST_ACCOUNT}\n"
            f"    password: {first_password}\n"
            f"  This password is shown only now; change it with `{change}`.\n"
            "\n"
            f"  Next: the pages are at {pages}; sign a command line in with\n"
            f"    {login}\n",
            err=True,
        )
        return
    if not (settings.embedded and (settings.data_dir / FIRST_PASSWORD_MARKER).exists()):
        return
    unchanged = f"the account {FIRST_ACCOUNT} still has the one-time password of its first start"
    if log_format == "json":
        log.warning(unchanged, username=FIRST_ACCOUNT, change_it_with=change)
    else:
        click.echo(f"\n  Note: {unchanged}; change it with `{change}`.\n", err=True)


def _devicelink_command() -> str:
    """How the operator runs this program: ``devicelink`` when that is it on PATH, else
    its path (``./scripts/serve`` runs .venv/bin/devicelink, on no PATH until the
    virtualenv is activated)."""
    program = Path(sys.argv[0])
    if program.name != "devicelink":
        return "devicelink"
    found = shutil.which("devicelink")
    if found and Path(found).resolve() == program.resolve():
        return "devicelink"
    return str(program.absolute())


async def _check_secret(settings: Settings) -> None:
    """Once, before any worker starts: the secret is the database's (each worker checks
    again as it builds its app; here the refusal is one clear message)."""
    engine = create_engine_for_url(
        settings.effective_database_url(), schema=settings.database_schema, poolclass=NullPool
    )
    try:
        await check_secret(SqlStore(engine), code_hasher(settings), now=utc_now())
    finally:
        await engine.dispose()
