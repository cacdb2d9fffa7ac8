"""The operator's directory: ``users add|list|passwd|disable``, ``keys list|revoke``
and ``audit`` (``clients``: :mod:`devicelink.admin.clients`)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from devicelink.admin.common import (
    FIRST_ACCOUNT,
    JSON_OPTION,
    AdminExit,
    admin_settings,
    fail,
    iso_time,
    print_json,
    print_table,
    run_with_store,
    settings_options,
    when,
)
from devicelink.core.names import printable_name
from devicelink.idp.local import hash_password
from devicelink.runtime.checks import FIRST_PASSWORD_MARKER
from devicelink.service.admin import (
    AdminService,
    KeyListing,
    NotFound,
)
from devicelink.service.clock import utc_now
from devicelink.storage import SqlStore


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
@settings_options
def users_add(name: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Create the local account NAME."""
    if printable_name(name) != name or any(ch.isspace() for ch in name):
        fail(
            "a username is 1 to 200 printable characters without spaces, in Unicode's "
            f"NFKC form (such as {printable_name(name.replace(' ', '')) or 'alice'!r})"
        )
    settings = admin_settings(data_dir)
    password_hash = hash_password(_read_password(password_stdin))

    async def add(store: SqlStore) -> None:
        async with store.transaction() as tx:
            await tx.users.add(name, password_hash, utc_now())

    try:
        run_with_store(settings, add)
    except ValueError as exc:  # the id or name is taken
        fail(str(exc), AdminExit.EXISTS)
    click.echo(f"created user {name}")


@users.command("list")
@JSON_OPTION
@settings_options
def users_list(as_json: bool, data_dir: Path | None) -> None:
    """List the accounts: local ones and those of an upstream provider or the host."""
    settings = admin_settings(data_dir)
    accounts = run_with_store(settings, lambda store: AdminService(store).list_users())
    if as_json:
        print_json(
            [
                {
                    "username": user.username,
                    "display_name": user.display_name,
                    "provider": user.provider,
                    "disabled": user.disabled,
                    "created_at": iso_time(user.created_at),
                }
                for user in accounts
            ]
        )
        return
    if not accounts:
        click.echo("no users")
        return
    rows = [["NAME", "PROVIDER", "STATE", "CREATED", "DISPLAY NAME"]]
    for user in accounts:
        rows.append(
            [
                user.username,
                user.provider,
                "disabled" if user.disabled else "active",
                when(user.created_at),
                (user.display_name or "-")[:60],
            ]
        )
    print_table(rows)


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@settings_options
def users_passwd(name: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Set a new password for the local account NAME; its browsers are signed out."""
    settings = admin_settings(data_dir)
    password_hash = hash_password(_read_password(password_stdin))
    try:
        run_with_store(
            settings, lambda store: AdminService(store).change_password(name, password_hash)
        )
    except NotFound as exc:
        fail(str(exc))
    if name == FIRST_ACCOUNT and settings.embedded:
        (settings.data_dir / FIRST_PASSWORD_MARKER).unlink(missing_ok=True)
    click.echo(f"password of {name} changed")


@users.command("disable")
@click.argument("name")
@settings_options
def users_disable(name: str, data_dir: Path | None) -> None:
    """Disable the account NAME: its keys stop working at once and are revoked (an
    embedding application's key issuer hears of it when its server next drains), and
    its browsers are signed out."""
    settings = admin_settings(data_dir)
    try:
        changed = run_with_store(settings, lambda store: AdminService(store).disable_user(name))
    except NotFound as exc:
        fail(str(exc))
        return
    if name == FIRST_ACCOUNT and settings.embedded:
        (settings.data_dir / FIRST_PASSWORD_MARKER).unlink(missing_ok=True)
    click.echo(f"disabled {name}" if changed else f"{name} was already disabled")


@click.group()
def keys() -> None:
    """API keys issued to devices."""


@keys.command("list")
@click.option("--user", "username", help="Only the keys of this user.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked and expired keys.")
@JSON_OPTION
@settings_options
def keys_list(username: str | None, show_all: bool, as_json: bool, data_dir: Path | None) -> None:
    """List API keys (active ones unless --all)."""
    settings = admin_settings(data_dir)
    try:
        listing = run_with_store(settings, lambda store: AdminService(store).list_keys(username))
    except NotFound as exc:
        fail(str(exc))
        return
    now = utc_now()
    shown = [(item, _key_state(item, now)) for item in listing]
    shown = [(item, state) for item, state in shown if show_all or state == "active"]
    if as_json:
        print_json([_key_json(item, state) for item, state in shown])
        return
    rows = [["ID", "USER", "CLIENT", "NAME", "CREATED", "LAST USED", "EXPIRES", "STATE"]]
    for item, state in shown:
        key = item.key
        rows.append(
            [
                str(key.id),
                item.owner.username,
                key.client_id,
                key.name,  # whole: two keys of one device differ at the end (its address)
                _zoned(key.created_at),
                _zoned(key.last_used_at) + (f" {key.last_used_ip}" if key.last_used_ip else ""),
                _zoned(key.expires_at) if key.expires_at else "never",
                state,
            ]
        )
    if len(rows) == 1:
        click.echo("no keys")
        return
    print_table(rows)


def _zoned(moment: datetime | None) -> str:
    """A time of the table with its zone, so an operator elsewhere does not read it as
    local time."""
    return f"{when(moment)} UTC" if moment else "-"


def _key_state(item: KeyListing, now: datetime) -> str:
    key = item.key
    if key.revoked_at:
        return "revoked"
    if not key.is_active(now):
        return "expired"
    return "disabled user" if item.owner.disabled else "active"


def _key_json(item: KeyListing, state: str) -> dict[str, object]:
    key = item.key
    return {
        "id": key.id,
        "user": item.owner.username,
        "client_id": key.client_id,
        "name": key.name,
        "scopes": list(key.scope),
        "created_at": iso_time(key.created_at),
        "last_used_at": iso_time(key.last_used_at),
        "last_used_ip": key.last_used_ip,
        "expires_at": iso_time(key.expires_at),
        "revoked_at": iso_time(key.revoked_at),
        "state": state,
    }


@keys.command("revoke")
@click.argument("key_id", type=int)
@settings_options
def keys_revoke(key_id: int, data_dir: Path | None) -> None:
    """Revoke the key KEY_ID (see `devicelink keys list`): it stops working at once (an
    embedding application's key issuer hears of it when its server next drains)."""
    settings = admin_settings(data_dir)
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
@settings_options
def audit(username: str | None, since: str | None, limit: int, data_dir: Path | None) -> None:
    """Print recent audit events: flows started, wrong codes, approvals, keys, revocations."""
    settings = admin_settings(data_dir)
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
    print_table(rows)
