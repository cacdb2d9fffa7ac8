"""``devicelink purge``: the purge each server process runs periodically
(:mod:`devicelink.server.purging`), now, from the command line; ``devicelink secret
adopt``: the database takes a new server secret on purpose."""

from __future__ import annotations

from pathlib import Path

import click

from devicelink.admin.common import load_settings, print_table, run_with_store, settings_options
from devicelink.core.codes import CodeHasher
from devicelink.core.ports import PURGE_KINDS
from devicelink.server.purging import build_maintenance
from devicelink.service.instance import adopt_secret
from devicelink.service.maintenance import PurgeReport
from devicelink.storage import SqlStore
from devicelink.storage.purge import SqlPurger


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@settings_options
def purge(dry_run: bool, data_dir: Path | None) -> None:
    """Delete what has ended, now: device authorizations expired past
    DEVICELINK_CODE_RETENTION, keys revoked or expired past DEVICELINK_KEY_RETENTION,
    expired browser sessions, audit events older than DEVICELINK_AUDIT_RETENTION.

    Safe beside running servers: rows go in small batches, each its own transaction,
    and rows another purge holds are skipped, never waited for.
    """
    settings = load_settings(data_dir)

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


@secret.command("adopt")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def secret_adopt(yes: bool, data_dir: Path | None) -> None:
    """Make DEVICELINK_SECRET_KEY the database's secret, after changing it on purpose.

    Every process refuses to start with a secret other than the database's. Adopting a
    new one ends what the old one protected: pending codes, browser sessions, API keys
    and client secrets stop working (users log in again; confidential clients get new
    secrets with `devicelink clients add`). Stop every server first; start them with the
    new secret after.
    """
    settings = load_settings(data_dir)
    hasher = CodeHasher(settings.secret_bytes())
    if not yes:
        click.confirm(
            "Adopting a new secret ends every pending code, browser session, API key and "
            "client secret made under the old one. Go on?",
            abort=True,
        )
    replaced = run_with_store(settings, lambda store: adopt_secret(store, hasher))
    if replaced is None:
        click.echo(f"the database already uses this secret (fingerprint {hasher.fingerprint})")
    else:
        click.echo(f"the database now uses the secret {hasher.fingerprint} (was {replaced})")
