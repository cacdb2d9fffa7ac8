"""``switch``: choose the default server among those with a stored key (as ``gh auth
switch``), and ``status --all``: every server with a stored key, where each key is, and
which server is the default (issue 16)."""

from __future__ import annotations

import os
from typing import Any

from devicelink.client.commands.failures import CommandFailed, ExitCode
from devicelink.client.commands.invocation import Invocation
from devicelink.client.commands.output import describe_expiry, describe_storage, iso
from devicelink.client.credentials import Credential
from devicelink.client.store import CredentialStore
from devicelink.client.urls import normalise_server


def switch(invocation: Invocation, *, server: str, as_json: bool) -> None:
    """Make SERVER the default: the server commands talk to without --server.

    SERVER must have a stored key (status --all lists them). Exit codes: 0 done, 6 no
    key stored for SERVER, 2 SERVER is not a server URL.
    """
    output, config = invocation.output, invocation.config
    store = invocation.store()
    target = normalise_server(server)
    credential = _stored_key(store, target)
    if credential is None:
        known = store.servers()
        listed = f" Servers with a stored key: {', '.join(known)}." if known else ""
        raise CommandFailed(
            ExitCode.NOT_LOGGED_IN,
            "not_logged_in",
            f"no key is stored for {target}",
            hint=f"Run {invocation.command_line('login')} --server {target} to log in.{listed}",
            server=target,
        )
    store.make_default(target)
    if os.environ.get(config.server_env, "").strip():
        output.warn(
            f"{config.server_env} is set: commands use its server, not the default, while it is set"
        )
    if as_json:
        output.result({"default": target, "user": credential.username})
        return
    user = credential.username or "an unknown user"
    output.say(
        ("Switched", "bold green"),
        f": the default server is now {target} (as ",
        (user, "bold"),
        ").",
    )


def status_all(invocation: Invocation, *, as_json: bool) -> None:
    """``status --all``: the servers with a stored key, from this computer alone."""
    output, config = invocation.output, invocation.config
    store = invocation.store()
    default = invocation.target(None, store)
    token_env = config.token_env
    from_env = store.from_environment(default) is not None
    keys = [(server, _stored_key(store, server)) for server in store.servers()]
    found = [(server, key) for server, key in keys if key is not None]
    entries = [_entry(store, server, key, default) for server, key in found]
    if as_json:
        output.result({"default": default, "servers": entries, "token_env_set": from_env})
        return
    if from_env:
        output.say(
            (token_env, "bold"),
            " is set: every command uses its key, whichever the server, not a stored one.",
        )
    if not entries:
        output.say(f"No key is stored on this computer. Run {invocation.login_command} to log in.")
        return
    now = invocation.now()
    for entry, (_, key) in zip(entries, found, strict=True):
        mark = "* " if entry["default"] else "  "
        output.say(mark, (entry["server"], "bold"), " (default)" if entry["default"] else "")
        if key.revocation_pending:
            detail = "its key is marked to be revoked (a logout could not revoke it)"
        else:
            user = entry["user"] or "(unknown)"
            detail = f"as {user}; the key expires {describe_expiry(key.expires_at, now)}"
        output.say(f"    {detail}; stored in {describe_storage(entry['stored_in'], token_env)}")
    if not any(entry["default"] for entry in entries):
        output.say(f"The default server, {default}, has no stored key.")
    output.say(f"Change the default with {invocation.command_line('switch')} SERVER.")


def _stored_key(store: CredentialStore, server: str) -> Credential | None:
    current = store.get(server)
    if current is not None:
        return current
    marked = store.pending_revocation(server)
    return marked[-1] if marked else None


def _entry(
    store: CredentialStore, server: str, credential: Credential, default: str
) -> dict[str, Any]:
    return {
        "server": server,
        "user": credential.username,
        "expires_at": iso(credential.expires_at),
        "client_id": credential.client_id or None,
        "stored_in": store.stored_in(server),
        "default": server == default,
        "revocation_pending": credential.revocation_pending,
    }


__all__ = ["status_all", "switch"]
