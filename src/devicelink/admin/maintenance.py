"""``devicelink purge``: the purge each server process runs periodically
(:mod:`devicelink.server.purging`), now, from the command line; ``devicelink secret``:
a new secret, its rotation's progress (``status``), and the database taking a new one
on purpose (``adopt``)."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

import click

from devicelink.admin.common import (
    admin_settings,
    fail,
    print_table,
    run_with_store,
    settings_options,
    when,
)
from devicelink.core.codes import CodeHasher
from devicelink.core.ports import PURGE_KINDS
from devicelink.runtime.settings import ConfigurationError, Settings
from devicelink.runtime.wiring import code_hasher
from devicelink.server.purging import build_maintenance
from devicelink.service.clock import utc_now
from devicelink.service.instance import RotationReport, adopt_secret, rotation_report
from devicelink.service.maintenance import PurgeReport
from devicelink.storage import SqlStore
from devicelink.storage.purge import SqlPurger


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@settings_options
def purge(dry_run: bool, data_dir: Path | None) -> None:
    """Delete what has ended, now: device authorizations and same-device sign-in codes
    (redeemed or not) expired past DEVICELINK_CODE_RETENTION, keys revoked or expired
    past DEVICELINK_KEY_RETENTION, expired browser sessions, audit events older than
    DEVICELINK_AUDIT_RETENTION.

    Safe beside running servers: rows go in small batches, each its own transaction,
    and rows another purge holds are skipped, never waited for.
    """
    settings = admin_settings(data_dir)

    async def action(store: SqlStore) -> PurgeReport:
        maintenance = build_maintenance(settings, SqlPurger(store.engine))
        return await (maintenance.pending() if dry_run else maintenance.purge_all())

    report = run_with_store(settings, action)
    rows = [["KIND", "WOULD DELETE" if dry_run else "DELETED"]]
    rows += [[kind, str(report.deleted[kind])] for kind in PURGE_KINDS]
    rows.append(["total", str(report.total)])
    print_table(rows)


@click.group()
def secret() -> None:
    """The server secret that the database is set up with."""


@secret.command("new")
def secret_new() -> None:
    """Print a new random secret (64 characters), for DEVICELINK_SECRET_KEY."""
    click.echo(secrets.token_urlsafe(48))


@secret.command("adopt")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def secret_adopt(yes: bool, data_dir: Path | None) -> None:
    """Make DEVICELINK_SECRET_KEY the database's secret, after changing it on purpose.

    Every process refuses to start with a secret other than the database's (or one of
    its DEVICELINK_SECRET_KEY_FALLBACKS: to change the secret without ending anything,
    rotate it instead, see docs/deploy.md). Adopting a new one ends what the old one
    protected, unless the old one is among the fallbacks: pending codes, browser
    sessions, API keys and client secrets stop working (users log in again; confidential
    clients get new secrets with `devicelink clients add`). Stop every server first;
    start them with the new secret after.
    """
    settings = admin_settings(data_dir)
    hasher = _hasher(settings)
    if not yes:
        click.confirm(
            "Adopting a new secret ends every pending code, browser session, API key and "
            "client secret made under the old one, unless it is among "
            "DEVICELINK_SECRET_KEY_FALLBACKS. Go on?",
            abort=True,
        )
    replaced = run_with_store(settings, lambda store: adopt_secret(store, hasher, now=utc_now()))
    if replaced is None:
        click.echo(f"the database already uses this secret (fingerprint {hasher.fingerprint})")
    else:
        click.echo(f"the database now uses the secret {hasher.fingerprint} (was {replaced})")


@secret.command("status")
@click.option(
    "--limit", default=20, show_default=True, type=click.IntRange(0), help="Keys listed at most."
)
@settings_options
def secret_status(limit: int, data_dir: Path | None) -> None:
    """Which secrets are configured and which one the database has (fingerprints only),
    and during a rotation what still needs the previous secret: the API keys that would
    stop working if DEVICELINK_SECRET_KEY_FALLBACKS were dropped now.

    A key is rewritten under the new secret when it is used; one not used since the
    rotation's step 2 may still carry the previous secret's hash (the database keeps no
    key in clear, so no command can rewrite it). Run it with the servers' settings.
    """
    settings = admin_settings(data_dir)
    hasher = _hasher(settings)
    now = utc_now()
    lifetimes = (settings.session_lifetime, settings.code_lifetime)
    report = run_with_store(
        settings, lambda store: rotation_report(store, hasher, now=now, lifetimes=lifetimes)
    )
    _print_status(report, limit=limit, now=now)


def _hasher(settings: Settings) -> CodeHasher:
    try:
        return code_hasher(settings)
    except ConfigurationError as exc:
        fail(str(exc))
        raise  # fail() exits


def _print_status(report: RotationReport, *, limit: int, now: datetime) -> None:
    stored = report.state.fingerprint
    rows = [["SECRET", "FINGERPRINT", "DATABASE'S"]]
    rows.append(
        ["DEVICELINK_SECRET_KEY", report.current, "yes" if stored == report.current else ""]
    )
    for place, fingerprint in enumerate(report.fallbacks, start=1):
        rows.append([f"fallback {place}", fingerprint, "yes" if stored == fingerprint else ""])
    print_table(rows)
    click.echo(f"database's secret: {stored or '(none yet)'}")
    known = (report.current, *report.fallbacks)
    if stored is not None and stored not in known:
        click.echo(
            "no configured secret is the database's: a server with these settings refuses to start"
        )
        return
    if report.step == 1:
        click.echo(
            "rotation step 1: every process accepts the fallback; "
            "start step 2 once every process runs these settings"
        )
        return
    if report.step != 2:
        click.echo("no rotation in progress")
        return
    started = report.state.rotation_started_at
    click.echo(
        f"rotation step 2: from {report.state.rotated_from}, counted since {when(started)} "
        "UTC (the last start of a process with this secret and fallback)"
    )
    waiting = report.waiting_keys
    click.echo(
        f"{len(waiting)} live API keys not used since then still need the previous "
        "secret" + (":" if waiting else "")
    )
    if waiting and limit:
        table = [["ID", "USER", "CLIENT", "CREATED", "LAST USED", "EXPIRES"]]
        for key, user in waiting[:limit]:
            table.append(
                [
                    str(key.id),
                    user.username,
                    key.client_id,
                    when(key.created_at),
                    when(key.last_used_at),
                    when(key.expires_at) if key.expires_at else "never",
                ]
            )
        print_table(table)
        if len(waiting) > limit:
            click.echo(f"... and {len(waiting) - limit} more")
    click.echo(
        f"browser sessions and codes made under the previous secret end by "
        f"{when(report.sessions_end)} UTC"
    )
    if report.confidential_clients:
        click.echo(
            "confidential clients, each moved at its first authenticated request since "
            "then (none is recorded): " + ", ".join(report.confidential_clients)
        )
    if report.previous_needed(now):
        click.echo(
            "dropping DEVICELINK_SECRET_KEY_FALLBACKS now would end these (their CLIs "
            "would have to log in again)"
        )
    else:
        click.echo("safe to drop DEVICELINK_SECRET_KEY_FALLBACKS (step 3)")
