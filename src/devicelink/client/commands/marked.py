"""Keys marked to be revoked, as the commands handle and word them.

A logout that cannot revoke the key keeps it, marked (``devicelink.client.revocation``).
Every command that would reach the server (``login``, ``status``, ``token``, ``logout``)
first revokes the marked keys of its server, which sends nothing when none is marked; what
cannot be revoked yet is never handed out, and every message about it says that the key
still works, what will revoke it, and where the user can revoke it by hand (the server's
devices page). No message shows a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from devicelink.client.commands.failures import CommandFailed, ExitCode, failure_for
from devicelink.client.commands.invocation import Invocation
from devicelink.client.commands.output import describe_expiry
from devicelink.client.credentials import Credential
from devicelink.client.errors import DeviceFlowError
from devicelink.client.revocation import latest_expiry, revoke_pending_keys
from devicelink.client.store import CredentialStore
from devicelink.client.urls import devices_page


@dataclass(frozen=True)
class StillMarked:
    """The keys of a server still marked to be revoked after a try, and why."""

    server: str
    keys: list[Credential] = field(default_factory=list)
    error: DeviceFlowError | None = None


def revoke_marked_keys(invocation: Invocation, store: CredentialStore, target: str) -> StillMarked:
    """Revoke the keys of ``target`` marked to be revoked and forget those that are gone
    (with a note); the keys that could not be revoked yet."""
    revocations = revoke_pending_keys(
        store, target, client_for=invocation.client_for(target), now=invocation.now()
    )
    gone = [r for r in revocations if r.gone]
    if gone:
        keys = "keys" if len(gone) > 1 else "key"
        invocation.output.note(
            f"The {keys} that an earlier logout of {target} could not revoke "
            f"{'are' if len(gone) > 1 else 'is'} now revoked (or no longer valid), "
            "and forgotten here."
        )
    left = [r for r in revocations if not r.gone]
    return StillMarked(target, [r.credential for r in left], left[0].error if left else None)


def valid_until(invocation: Invocation, keys: Sequence[Credential]) -> str:
    """``until 2030-01-01 12:00 UTC (in 30 days)``: how long unrevoked keys work."""
    until = latest_expiry(keys)
    if until is None:
        return "for good (it does not expire)"
    return f"until {describe_expiry(until, invocation.now())}"


def still_valid(invocation: Invocation, keys: Sequence[Credential]) -> str:
    """``still valid until 2030-01-01 12:00 UTC (in 30 days)``."""
    return f"still valid {valid_until(invocation, keys)}"


def by_hand(target: str) -> str:
    """Where and how to revoke a key without this client."""
    return f"sign in at {devices_page(target)} and revoke it there"


def what_revokes_it(invocation: Invocation) -> str:
    logout = invocation.command_line("logout")
    return f"the next {logout}, or the next command that reaches the server, revokes it first"


def still_marked_failure(invocation: Invocation, marked: StillMarked) -> CommandFailed:
    """``status`` and ``token`` with no key but a marked one: refuse (the marked key is
    never handed out), exit 8."""
    target, error = marked.server, marked.error
    assert error is not None
    logout = invocation.command_line("logout")
    return CommandFailed(
        ExitCode.NOT_REVOKED,
        "revocation_pending",
        f"the key for {target} is marked to be revoked (a logout could not revoke it), "
        f"and it could not be revoked now either: {error}",
        hint=(
            f"It is {still_valid(invocation, marked.keys)}, but no longer used: "
            f"{what_revokes_it(invocation)}. To revoke it now, {by_hand(target)}; "
            f"{logout} --force forgets it here anyway. Run {invocation.login_command} to "
            "log in again."
        ),
        server=target,
        reason=failure_for(error).error,
        devices_page=devices_page(target),
    )


def warn_still_marked(invocation: Invocation, marked: StillMarked) -> None:
    """A command that goes on with another key: say that an earlier key is still not
    revoked (on standard error)."""
    if not marked.keys:
        return
    target = marked.server
    invocation.output.warn(
        f"an earlier key for {target} is marked to be revoked but could not be revoked now "
        f"({marked.error}); it is {still_valid(invocation, marked.keys)} and no longer used: "
        f"{what_revokes_it(invocation)}. To revoke it now, {by_hand(target)}."
    )


__all__ = [
    "StillMarked",
    "by_hand",
    "revoke_marked_keys",
    "still_marked_failure",
    "still_valid",
    "valid_until",
    "warn_still_marked",
    "what_revokes_it",
]
