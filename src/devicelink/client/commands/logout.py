"""``logout``: revoke the key on the server, then forget it here (DESIGN.md defect 10);
a key that cannot be revoked is kept, marked to be revoked (issue 13, finding 6)."""

from __future__ import annotations

from devicelink.client.commands.failures import CommandFailed, ExitCode, failure_for
from devicelink.client.commands.invocation import Invocation
from devicelink.client.commands.marked import (
    by_hand,
    still_valid,
    valid_until,
    what_revokes_it,
)
from devicelink.client.commands.output import describe_expiry
from devicelink.client.revocation import LogoutResult, log_out
from devicelink.client.urls import devices_page


def logout(invocation: Invocation, *, server: str | None, as_json: bool, force: bool) -> None:
    """Revoke the key on the server (RFC 7009), then forget it here.

    When the key cannot be revoked (the server unreachable, failing or refusing), it is
    kept here, marked to be revoked, and no longer used: the next logout, or the next
    command that reaches the server, revokes it first, then forgets it. Exit code 8.
    With --force it is forgotten anyway, after one try (exit code 8 too, if it could not
    be revoked). Not logged in: nothing to do, exit 0.
    """
    output, config = invocation.output, invocation.config
    store = invocation.store()
    target = invocation.target(server, store)
    if store.from_environment(target) is not None:
        output.warn(f"{config.token_env} is set; its key is not revoked nor removed by logout")
    result = log_out(
        store,
        target,
        client_for=invocation.client_for(target),
        now=invocation.now(),
        force=force,
    )
    if not result.had_credential:
        if as_json:
            output.result({"server": target, "revoked": False, "removed": False})
        else:
            output.say(f"Not logged in to {target}; nothing to do.")
        return
    if not result.revoked:
        raise _not_revoked(invocation, result)
    for revocation in result.revocations:
        if revocation.expired:
            output.note(
                f"The server could not be told ({revocation.error}), but the key expired "
                f"{describe_expiry(revocation.credential.expires_at, invocation.now())}: "
                "it no longer works."
            )
    if as_json:
        output.result({"server": target, "revoked": True, "removed": True})
        return
    output.say(
        ("Logged out", "bold green"),
        f" of {target}: the key was revoked on the server and removed from this computer.",
    )


def _not_revoked(invocation: Invocation, result: LogoutResult) -> CommandFailed:
    target, error, keys = result.server, result.error, result.unrevoked
    assert error is not None
    the_key = "the keys" if len(keys) > 1 else "the key"
    if result.forced:
        message = (
            f"forgot {the_key} for {target} here, but it was not revoked on the server: {error}"
        )
        hint = (
            f"The key may still be valid {valid_until(invocation, keys)}: to revoke it, "
            f"{by_hand(target)}."
        )
    else:
        logout = invocation.command_line("logout")
        message = f"{the_key} for {target} was not revoked: {error}"
        hint = (
            f"It is {still_valid(invocation, keys)}. It stays on this computer, marked to be "
            f"revoked, and is no longer used: {what_revokes_it(invocation)}, then forgets "
            f"it. To revoke it now, {by_hand(target)}; {logout} --force forgets it here "
            "anyway."
        )
    return CommandFailed(
        ExitCode.NOT_REVOKED,
        "not_revoked",
        message,
        hint=hint,
        server=target,
        reason=failure_for(error).error,
        revoked=False,
        removed=result.removed,
        revocation_pending=not result.forced,
        devices_page=devices_page(target),
    )


__all__ = ["logout"]
