"""The operator's directory: ``clients add|edit|list|remove``,
``users add|list|passwd|disable``, ``keys list|revoke`` and ``audit``."""

from __future__ import annotations

import re
import secrets
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from devicelink.admin.common import (
    FIRST_ACCOUNT,
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
from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import parse_scope
from devicelink.core.models import Client
from devicelink.core.names import printable_name
from devicelink.idp.local import hash_password
from devicelink.runtime.checks import FIRST_PASSWORD_MARKER
from devicelink.runtime.clients import GRANT_NAMES, canonical_grants, client_grant_problems
from devicelink.runtime.settings import ConfigurationError
from devicelink.service.admin import (
    AdminService,
    ClientInUse,
    ClientListing,
    KeyListing,
    NotFound,
)
from devicelink.service.clock import utc_now
from devicelink.storage import SqlStore

_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_GRANT_OPTION = click.option(
    "--grant",
    "grants",
    multiple=True,
    type=click.Choice(sorted(GRANT_NAMES)),
    help="A grant the client may use (repeatable): authorization_code (same-device "
    "sign-in), device_code (the device flow) [default: device_code].",
)
_REDIRECT_URI_OPTION = click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="A loopback redirect URI for authorization_code (repeatable): "
    "http://127.0.0.1/PATH or http://[::1]/PATH; any port matches.",
)


@click.group()
def clients() -> None:
    """Register, list and remove OAuth clients."""


@clients.command("add")
@click.argument("client_id")
@click.option("--name", "display_name", help="Name shown to users (default: the client id).")
@click.option("--scope", "scopes", default="api", show_default=True, help="Space-separated scopes.")
@click.option("--confidential", is_flag=True, help="Issue a client secret (printed once).")
@click.option(
    "--resource-server",
    is_flag=True,
    help="May call the introspection endpoint (RFC 7662); needs --confidential.",
)
@click.option(
    "--key-lifetime",
    type=int,
    default=None,
    help="Seconds its keys live; 0 for keys that never expire [default: DEVICELINK_KEY_LIFETIME].",
)
@_GRANT_OPTION
@_REDIRECT_URI_OPTION
@settings_options
def clients_add(
    client_id: str,
    display_name: str | None,
    scopes: str,
    confidential: bool,
    resource_server: bool,
    key_lifetime: int | None,
    grants: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    data_dir: Path | None,
) -> None:
    """Register a client called CLIENT_ID."""
    if not _CLIENT_ID.match(client_id):
        fail("a client id is 1 to 128 letters, digits, dots, dashes or underscores")
    if resource_server and not confidential:
        fail(_RESOURCE_SERVER_AUTHENTICATES)
    grant_types = _checked_grants(grants or ("device_code",), redirect_uris)
    try:
        scope = parse_scope(scopes) or ()
    except ValueError:
        fail("--scope must be space-separated scope tokens")
        return
    settings = admin_settings(data_dir)
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
        resource_server=resource_server,
        grant_types=grant_types,
        redirect_uris=tuple(dict.fromkeys(redirect_uris)),
    )

    async def add(store: SqlStore) -> None:
        async with store.transaction() as tx:
            await tx.clients.add(client)

    try:
        run_with_store(settings, add)
    except ValueError as exc:  # the id or name is taken
        fail(str(exc), AdminExit.EXISTS)
    click.echo(f"client_id: {client_id}")
    if secret:
        click.echo(f"client_secret: {secret}")
        click.echo("(the secret is shown once; store it now)", err=True)


@clients.command("edit")
@click.argument("client_id")
@click.option(
    "--resource-server/--no-resource-server",
    default=None,
    help="Allow, or no longer allow, the client to call the introspection endpoint "
    "(RFC 7662); allowing needs a confidential client.",
)
@_GRANT_OPTION
@_REDIRECT_URI_OPTION
@settings_options
def clients_edit(
    client_id: str,
    resource_server: bool | None,
    grants: tuple[str, ...],
    redirect_uris: tuple[str, ...],
    data_dir: Path | None,
) -> None:
    """Change the registered client CLIENT_ID (what is not given stays; --grant and
    --redirect-uri replace the client's grants and redirect URIs)."""
    if resource_server is None and not grants and not redirect_uris:
        fail(
            "nothing to change: give --resource-server, --no-resource-server, --grant "
            "or --redirect-uri"
        )
        return
    settings = admin_settings(data_dir)

    async def edit(store: SqlStore) -> str | None:
        async with store.transaction() as tx:
            stored = await tx.clients.get(client_id)
            if stored is None:
                return f"no client {client_id!r}"
            if resource_server and not stored.confidential:
                return _RESOURCE_SERVER_AUTHENTICATES
            uris = tuple(dict.fromkeys(redirect_uris)) or stored.redirect_uris
            problems = client_grant_problems(grants or stored.grant_types, uris)
            if problems:
                return "; ".join(problems)
            await tx.clients.update(
                replace(
                    stored,
                    resource_server=stored.resource_server
                    if resource_server is None
                    else resource_server,
                    grant_types=canonical_grants(grants) if grants else stored.grant_types,
                    redirect_uris=uris,
                )
            )
            return None

    refusal = run_with_store(settings, edit)
    if refusal is not None:
        fail(refusal)
    if resource_server is not None:
        state = "is" if resource_server else "is not"
        click.echo(f"client {client_id} {state} a resource server")
    if grants or redirect_uris:
        click.echo(f"client {client_id}: grants and redirect URIs updated")


_JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array (times in ISO 8601, UTC)."
)


@clients.command("list")
@_JSON_OPTION
@settings_options
def clients_list(as_json: bool, data_dir: Path | None) -> None:
    """List the registered clients, with how many live keys each has."""
    settings = admin_settings(data_dir)
    listing = run_with_store(settings, lambda store: AdminService(store).list_clients())
    if as_json:
        print_json([_client_json(item) for item in listing])
        return
    if not listing:
        click.echo("no clients")
        return
    rows = [["ID", "NAME", "TYPE", "GRANTS", "SCOPES", "KEY LIFETIME", "LIVE KEYS", "CREATED"]]
    for item in listing:
        client = item.client
        rows.append(
            [
                client.client_id,
                client.name[:60],
                _client_type(client),
                ",".join(grant.rsplit(":", 1)[-1] for grant in client.grant_types),
                " ".join(client.scopes) or "-",
                f"{client.key_lifetime}s" if client.key_lifetime else "never expire",
                str(item.live_keys),
                when(client.created_at),
            ]
        )
    print_table(rows)


def _client_type(client: Client) -> str:
    if not client.confidential:
        return "public"
    return "confidential, resource server" if client.resource_server else "confidential"


def _client_json(item: ClientListing) -> dict[str, object]:
    client = item.client
    return {
        "client_id": client.client_id,
        "name": client.name,
        "confidential": client.confidential,
        "resource_server": client.resource_server,
        "grant_types": list(client.grant_types),
        "redirect_uris": list(client.redirect_uris),
        "scopes": list(client.scopes),
        "key_lifetime": client.key_lifetime,
        "live_keys": item.live_keys,
        "created_at": iso_time(client.created_at),
    }


@clients.command("remove")
@click.argument("client_id")
@click.option(
    "--revoke-keys",
    is_flag=True,
    help="Revoke the client's live keys first (without it, a client with live keys is refused).",
)
@settings_options
def clients_remove(client_id: str, revoke_keys: bool, data_dir: Path | None) -> None:
    """Remove the client CLIENT_ID: its pending sign-ins end (a device polling gets
    invalid_client) and its ended keys go with it.

    Refused while it has live keys, unless --revoke-keys revokes them (each as `keys
    revoke` does, in the audit log). A running server passes revocations on to the key
    issuer within seconds; until then the client stays, and running this again removes
    it."""
    settings = admin_settings(data_dir)
    try:
        removal = run_with_store(
            settings,
            lambda store: AdminService(store).remove_client(client_id, revoke_keys=revoke_keys),
        )
    except NotFound as exc:
        fail(str(exc))
        return
    except ClientInUse as exc:
        fail(str(exc), AdminExit.IN_USE)
        return
    if removal.revoked:
        click.echo(f"revoked {removal.revoked} key(s) of client {client_id}")
    if removal.removed:
        click.echo(f"removed client {client_id}")
        return
    fail(
        f"client {client_id!r} stays until the key issuer has heard of "
        f"{removal.undelivered} revocation(s) of its keys, which a running server passes "
        "on within DEVICELINK_REVOCATION_DRAIN_INTERVAL seconds: run "
        f"`devicelink clients remove {client_id}` again then",
        AdminExit.IN_USE,
    )


def _checked_grants(grants: tuple[str, ...], redirect_uris: tuple[str, ...]) -> tuple[str, ...]:
    """The grants as stored, or the command fails saying what is wrong."""
    problems = client_grant_problems(grants, redirect_uris)
    if problems:
        fail("; ".join(problems))
    return canonical_grants(grants)


_RESOURCE_SERVER_AUTHENTICATES = (
    "a resource server authenticates to introspect: only a confidential client "
    "(clients add --confidential) can be one"
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
@_JSON_OPTION
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
@_JSON_OPTION
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
