"""The operator's clients: ``clients add|edit|list|remove``."""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from pathlib import Path

import click

from devicelink.admin.common import (
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
from devicelink.core.codes import CodeHasher
from devicelink.core.lifecycle import parse_scope
from devicelink.core.models import Client
from devicelink.runtime.clients import GRANT_NAMES, canonical_grants, client_grant_problems
from devicelink.runtime.settings import ConfigurationError
from devicelink.service.admin import (
    AdminService,
    ClientInUse,
    ClientListing,
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


@clients.command("list")
@JSON_OPTION
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
