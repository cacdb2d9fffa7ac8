"""``logout``: revoke the key on the server, then forget it here (DESIGN.md defect 10)."""

from __future__ import annotations

import time

from devicelink.client.api import logout as revoke_and_forget
from devicelink.client.commands.failures import CommandFailed, ExitCode, failure_for
from devicelink.client.commands.invocation import Invocation
from devicelink.client.commands.output import describe_expiry


def logout(invocation: Invocation, *, server: str | None, as_json: bool) -> None:
    """Revoke the key on the server (RFC 7009), then forget it here.

    When the server cannot be reached or refuses, the key is still forgotten here,
    with a warning that it was not revoked, and the exit code is 8. Not logged in:
    nothing to do, exit 0.
    """
    output, config, hooks = invocation.output, invocation.config, invocation.hooks
    store = invocation.store()
    target = invocation.target(server, store)
    if store.from_environment(target) is not None:
        output.warn(f"{config.token_env} is set; its key is not revoked nor removed by logout")
    result = revoke_and_forget(
        target,
        store=store,
        client_id=config.client_id,
        transport=hooks.transport,
        sleep=hooks.sleep or time.sleep,
        user_agent=config.user_agent,
    )
    if not result.had_credential:
        if as_json:
            output.result({"server": target, "revoked": False, "removed": False})
        else:
            output.say(f"Not logged in to {target}; nothing to do.")
        return
    if result.error is not None:
        expiry = describe_expiry(result.expires_at, invocation.now())
        raise CommandFailed(
            ExitCode.NOT_REVOKED,
            "not_revoked",
            f"forgot the key for {target} here, but could not revoke it on the server: "
            f"{result.error}",
            hint=(
                f"The key keeps working until it expires ({expiry}) unless the server's "
                "operator revokes it."
            ),
            server=target,
            revoked=False,
            removed=True,
            reason=failure_for(result.error).error,
        )
    if as_json:
        output.result({"server": target, "revoked": result.revoked, "removed": True})
        return
    output.say(
        ("Logged out", "bold green"),
        f" of {target}: the key was revoked on the server and removed from this computer.",
    )


__all__ = ["logout"]
