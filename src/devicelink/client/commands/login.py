"""``login``: the loopback flow (a browser on this machine) or the device flow (any
device), or nothing when a stored key still works."""

from __future__ import annotations

from typing import Any, Literal

import click

from devicelink.client.api import (
    LoginMethod,
    browser_plausible,
    open_in_browser,
    owner_key_expiry,
    owner_name,
    scope_covers,
    sign_in,
)
from devicelink.client.commands.invocation import (
    AuthCommand,
    AuthConfig,
    Invocation,
    force_option,
    json_option,
    server_option,
)
from devicelink.client.commands.login_view import LoginView
from devicelink.client.commands.marked import (
    by_hand,
    revoke_marked_keys,
    still_valid,
    warn_still_marked,
    what_revokes_it,
)
from devicelink.client.commands.output import describe_expiry, describe_storage, iso
from devicelink.client.credentials import Credential
from devicelink.client.errors import DeviceFlowError, KeyRefused, ServerUnreachable
from devicelink.client.http import DeviceFlowClient
from devicelink.client.revocation import revoke_keys
from devicelink.client.store import CredentialStore


def login_command(config: AuthConfig) -> AuthCommand:
    params: list[click.Parameter] = [
        server_option(config),
        click.Option(
            ["--client-id"],
            default=config.client_id,
            show_default=True,
            help="The OAuth client id to sign in as.",
        ),
        click.Option(
            ["--scope"],
            default=config.scope,
            help="Space-separated scopes to ask for (default: the server's).",
        ),
        click.Option(
            ["--device-code"],
            is_flag=True,
            help="Sign in with a code and a link on any device (the device flow), not with "
            "a browser on this computer.",
        ),
        click.Option(
            ["--no-browser"],
            is_flag=True,
            help="Do not open a browser: the device flow, with the link printed.",
        ),
        click.Option(["--qr"], is_flag=True, help="Also draw the link as a QR code (for a phone)."),
        json_option(),
        force_option("Log in again even if already logged in."),
    ]
    return AuthCommand("login", config, login, params)


def login(
    invocation: Invocation,
    *,
    server: str | None,
    client_id: str | None,
    scope: str | None,
    device_code: bool,
    no_browser: bool,
    qr: bool,
    as_json: bool,
    force: bool,
) -> None:
    """Log in through the browser and store an API key for the server.

    Where a browser can open on this computer (and never over SSH), it opens the sign-in
    page there and takes the answer on 127.0.0.1. Otherwise, or with --device-code or
    --no-browser, it prints a code and a link: open the link on any device (a phone
    works), sign in, check the code and approve. A key it replaces (another client's,
    another scope's) is revoked on the server, not left working. Exit codes: 0 logged
    in (or already), 3 denied, 4 expired (or no answer in time), 5 server unreachable,
    130 interrupted, 1 other errors.
    """
    output = invocation.output
    output.defer_notices()  # the code and the link come first
    store = invocation.store(warn=True)
    target = invocation.target(server, store)
    if store.from_environment(target) is not None:
        output.note(
            f"{invocation.config.token_env} is set: commands use its key, not the one stored "
            "by this login."
        )
    marked = revoke_marked_keys(invocation, store, target)
    if marked.keys:
        # Signing in anew is still useful; the old key stays marked (never lost) beside it.
        warn_still_marked(invocation, marked)
        if isinstance(marked.error, ServerUnreachable) and marked.error.status_code is None:
            raise marked.error  # no connection at all: the sign-in could not get one either
    with invocation.client(target, client_id, scope) as client:
        existing = None if force else _existing_login(invocation, client, store, client_id, scope)
        if existing is not None:
            credential, owner = existing
            where = store.stored_in(target)
            _say_logged_in(invocation, credential, where, method=None, already=True, owner=owner)
            return
        view = LoginView(
            output,
            server=target,
            qr=qr and not as_json,
            browser=invocation.hooks.browser or open_in_browser,
        )
        wanted: LoginMethod = "device" if device_code or no_browser else invocation.config.method
        ran: list[str] = []

        def method_chosen(method: str, why: str | None) -> None:
            ran.append(method)
            if why:  # held back, as every note, until the code and the link are shown
                output.note(f"{why[:1].upper()}{why[1:]}: signing in with a code instead.")

        try:
            credential = sign_in(
                client,
                method=wanted,
                on_method=method_chosen,
                on_code=view.show_code,
                on_link=view.show_link,
                on_wait=view.waiting,
                open_browser=browser_plausible(invocation.hooks.browser_env) and not no_browser,
                browser=view.open_link,
                clock=invocation.now,
            )
        finally:
            view.stop()
        # Whatever key it replaces (another client's, an older scope's, a key stored by
        # a login that ran at the same time) is revoked, not left working (issue 16).
        where, replaced = store.replace(credential, since=invocation.now())
        previous_key = None if replaced is None else _revoke_replaced(invocation, store, replaced)
    _say_logged_in(invocation, credential, where, method=ran[-1], previous_key=previous_key)


def _existing_login(
    invocation: Invocation,
    client: DeviceFlowClient,
    store: CredentialStore,
    client_id: str | None,
    scope: str | None,
) -> tuple[Credential, dict[str, Any]] | None:
    """The stored credential and its owner, when it is for this client and scope and the
    server still accepts it; otherwise ``None`` (and a note saying why, where useful)."""
    output, target = invocation.output, client.server
    credential = store.get(target)
    if credential is None:
        return None
    if (credential.client_id or None) != (client_id or None):
        return None
    if not scope_covers(credential.scope, scope):
        output.note(f"The stored key does not cover the scope {scope!r}; logging in again.")
        return None
    if credential.is_expired(invocation.now()):
        output.note(f"The stored key for {target} has expired; logging in again.")
        return None
    try:
        owner = client.whoami(credential.access_token)
    except KeyRefused:
        output.note(f"The server no longer accepts the stored key for {target}; logging in again.")
        return None
    except ServerUnreachable:
        raise  # logging in again could not reach it either
    except DeviceFlowError:
        return None  # the login itself will say what is wrong
    return credential, owner


PreviousKey = Literal["revoked", "revocation_pending"]
"""What became of the key a login replaced: revoked on the server (or no longer valid
there), or kept marked to be revoked because the server could not revoke it."""


def _revoke_replaced(
    invocation: Invocation, store: CredentialStore, replaced: Credential
) -> PreviousKey:
    """The key a login replaced is revoked, not left working; if it cannot be, it stays
    marked to be revoked (and is revoked by the next command), and a warning says so."""
    target = replaced.server
    (revocation,) = revoke_keys(
        store, [replaced], client_for=invocation.client_for(target), now=invocation.now()
    )
    if revocation.gone:
        return "revoked"
    invocation.output.warn(
        f"the previous key was not revoked on the server ({revocation.error}); it is "
        f"{still_valid(invocation, [replaced])}, marked to be revoked and no longer "
        f"used: {what_revokes_it(invocation)}. To revoke it now, {by_hand(target)}."
    )
    return "revocation_pending"


def _login_result(
    credential: Credential,
    where: str,
    *,
    method: str | None,
    already: bool,
    owner: dict[str, Any] | None = None,
    previous_key: PreviousKey | None = None,
) -> dict[str, Any]:
    """The ``--json`` object of a login; ``method`` is the flow that ran (``None`` when
    none did: already logged in); ``previous_key`` what became of the key it replaced
    (``None``: it replaced none)."""
    expires_at = (owner_key_expiry(owner) if owner else None) or credential.expires_at
    return {
        "server": credential.server,
        "user": (owner_name(owner) if owner else None) or credential.username,
        "expires_at": iso(expires_at),
        "scope": credential.scope,
        "client_id": credential.client_id or None,
        "stored_in": where,
        "already_logged_in": already,
        "method": method,
        "previous_key": previous_key,
    }


def _say_logged_in(
    invocation: Invocation,
    credential: Credential,
    where: str,
    *,
    method: str | None,
    already: bool = False,
    owner: dict[str, Any] | None = None,
    previous_key: PreviousKey | None = None,
) -> None:
    output = invocation.output
    result = _login_result(
        credential, where, method=method, already=already, owner=owner, previous_key=previous_key
    )
    output.flush_notices()
    if output.as_json:
        output.result(result)
        return
    user = (str(result["user"] or "an unknown user"), "bold")
    expiry = describe_expiry(credential.expires_at, invocation.now())
    if already:
        output.say(
            ("Already logged in", "bold green"),
            f" to {credential.server} as ",
            user,
            f"; the key expires {expiry}.",
        )
        output.say(f"Use {invocation.login_command} --force to log in again.")
    else:
        output.say(("Logged in", "bold green"), f" to {credential.server} as ", user, ".")
        storage = describe_storage(where, invocation.config.token_env)
        output.say(f"The key expires {expiry} and is stored in {storage}.")
        if previous_key == "revoked":
            output.say("The key it replaces was revoked on the server.")


__all__ = ["login", "login_command"]
