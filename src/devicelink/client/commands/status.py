"""``status`` (is the key still good, according to the server?) and ``token`` (the key
itself, for scripts): both read the key in use for a server."""

from __future__ import annotations

from typing import Any

from devicelink.client.api import owner_key_expiry, owner_name
from devicelink.client.commands.failures import CommandFailed, ExitCode, failure_for
from devicelink.client.commands.invocation import Invocation
from devicelink.client.commands.marked import (
    revoke_marked_keys,
    still_marked_failure,
    warn_still_marked,
)
from devicelink.client.commands.output import (
    ENVIRONMENT,
    describe_expiry,
    describe_storage,
    iso,
)
from devicelink.client.commands.switch import status_all
from devicelink.client.credentials import Credential
from devicelink.client.errors import DeviceFlowError, KeyRefused
from devicelink.client.store import CredentialStore


def status(invocation: Invocation, *, server: str | None, all_servers: bool, as_json: bool) -> None:
    """Show the server, the user and the key's expiry; check the key with the server.

    With --all, list every server with a stored key instead (asking none of them).
    Exit codes: 0 logged in and the key works, 6 not logged in, 7 the key was refused
    or has expired, 5 server unreachable, 8 the key is marked to be revoked (a logout
    could not revoke it) and still cannot be revoked.
    """
    if all_servers:
        status_all(invocation, as_json=as_json)
        return
    store = invocation.store()
    target = invocation.target(server, store)
    credential, where = current_key(invocation, store, target)
    owner = _owner(invocation, credential, target, where)
    expires_at = owner_key_expiry(owner) or credential.expires_at
    scope = owner.get("scope") if isinstance(owner.get("scope"), str) else None
    result = {
        "server": target,
        "user": owner_name(owner),
        "expires_at": iso(expires_at),
        "scope": scope or credential.scope,
        "client_id": owner.get("client_id") or credential.client_id or None,
        "stored_in": where,
        "logged_in": True,
    }
    output = invocation.output
    if as_json:
        output.result(result)
        return
    rows = [
        ("Server", target),
        ("User", str(result["user"] or "(unknown)")),
        ("Key expires", describe_expiry(expires_at, invocation.now())),
        ("Scope", str(result["scope"] or "(none)")),
        ("Stored in", describe_storage(where, invocation.config.token_env)),
    ]
    for label, value in rows:
        output.say((f"{label + ':':<13}", "bold"), value)
    if where == ENVIRONMENT:
        output.say(
            ("Logged in", "bold green"),
            f" with the key in {invocation.config.token_env}; the server accepts it.",
        )
        return
    output.say(("Logged in", "bold green"), "; the server accepts the key.")


def _owner(
    invocation: Invocation, credential: Credential, target: str, where: str
) -> dict[str, Any]:
    """The key's owner according to the server's ``/api/me``; failures name the server."""
    client_id = credential.client_id or invocation.config.client_id
    token_env = invocation.config.token_env
    with invocation.client(target, client_id) as client:
        try:
            return client.whoami(credential.access_token)
        except KeyRefused:
            if where == ENVIRONMENT:  # logging in would change nothing: the variable wins
                raise CommandFailed(
                    ExitCode.KEY_REJECTED,
                    "invalid_token",
                    f"the server {target} does not accept the key in {token_env} (revoked, "
                    "expired, or its user disabled)",
                    hint=(
                        f"{token_env} is set, and commands use its key: set it to a key that "
                        f"works, or unset it to use the key stored by "
                        f"{invocation.login_command}."
                    ),
                    server=target,
                    stored_in=ENVIRONMENT,
                ) from None
            raise CommandFailed(
                ExitCode.KEY_REJECTED,
                "invalid_token",
                f"the server {target} no longer accepts the key (revoked, expired, "
                "or its user disabled)",
                hint=f"Run {invocation.login_command} to log in again.",
                server=target,
            ) from None
        except DeviceFlowError as exc:
            failure = failure_for(exc)
            failure.extra["server"] = target
            raise failure from None


def token(invocation: Invocation, *, server: str | None) -> None:
    """Print the API key, for scripts.

    \b
        curl -H "Authorization: Bearer $({cmd})" ...

    Prints nothing on standard output when there is no usable key (exit 6 not logged
    in, 7 expired, 8 marked to be revoked: a key that a logout could not revoke is never
    printed; this command revokes it first). The key in the environment variable, when
    set, wins.
    """
    store = invocation.store()
    credential, _ = current_key(invocation, store, invocation.target(server, store))
    stdout = invocation.output.stdout
    stdout.write(credential.access_token + "\n")
    stdout.flush()


def current_key(
    invocation: Invocation, store: CredentialStore, target: str
) -> tuple[Credential, str]:
    """The key to use for ``target`` (the environment's first) and where it is; fails
    with exit 6 when there is none, 7 when it has expired, and 8 when the only key is
    marked to be revoked and still cannot be revoked (it is never handed out).

    Keys marked to be revoked are revoked first (nothing is sent when there are none)."""
    # devicelink.launcher answers `devicelink token` itself in the plain case (no key
    # marked, a usable key), with the store's same reads: a change here is a change there
    # (tests/client_cli/test_quick_token.py runs both).
    marked = revoke_marked_keys(invocation, store, target)
    from_env = store.from_environment(target)
    if from_env is not None:
        warn_still_marked(invocation, marked)
        return from_env, ENVIRONMENT
    credential = store.get(target)
    if credential is None and marked.keys:
        raise still_marked_failure(invocation, marked)
    warn_still_marked(invocation, marked)
    if credential is None:
        raise CommandFailed(
            ExitCode.NOT_LOGGED_IN,
            "not_logged_in",
            f"not logged in to {target}",
            hint=f"Run {invocation.login_command} to log in.",
            server=target,
        )
    now = invocation.now()
    if credential.is_expired(now):
        raise CommandFailed(
            ExitCode.KEY_REJECTED,
            "expired",
            f"the key for {target} expired {describe_expiry(credential.expires_at, now)}",
            hint=f"Run {invocation.login_command} to log in again.",
            server=target,
        )
    return credential, store.stored_in(target)


__all__ = ["current_key", "status", "token"]
