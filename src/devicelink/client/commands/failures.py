"""How an auth command ends badly: its exit code (:class:`ExitCode`) and the error name
that ``--json`` prints, for every client error."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from devicelink.client import errors
from devicelink.client.credentials import CredentialStoreError
from devicelink.client.errors import DeviceFlowError


class ExitCode(IntEnum):
    """The exit status of every auth command (docs/cli.md has the table)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DENIED = 3
    EXPIRED = 4
    NETWORK = 5
    NOT_LOGGED_IN = 6
    KEY_REJECTED = 7
    NOT_REVOKED = 8
    SERVER_FAILED = 9
    INTERRUPTED = 130


class CommandFailed(Exception):
    """Ends a command with ``code``; ``error`` is the machine-readable name in ``--json``,
    ``extra`` more fields of the ``--json`` error object."""

    def __init__(
        self, code: ExitCode, error: str, message: str, *, hint: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message
        self.hint = hint
        self.extra = extra


# Checked in order: the first class the error is an instance of decides.
_FAILURES: tuple[tuple[type[DeviceFlowError], ExitCode, str], ...] = (
    (errors.LoginDenied, ExitCode.DENIED, "access_denied"),
    (errors.LoginExpired, ExitCode.EXPIRED, "expired_token"),
    (errors.LoginFailedOnServer, ExitCode.SERVER_FAILED, "server_error"),
    (errors.DeviceCodeRefused, ExitCode.EXPIRED, "invalid_grant"),
    (errors.ServerUnreachable, ExitCode.NETWORK, "server_unreachable"),
    (errors.KeyRefused, ExitCode.KEY_REJECTED, "invalid_token"),
    (errors.BadServerURL, ExitCode.USAGE, "invalid_server"),
    (errors.DiscoveryFailed, ExitCode.ERROR, "discovery_failed"),
    (errors.ClientIdRefused, ExitCode.ERROR, "invalid_client"),
)


def failure_for(exc: DeviceFlowError) -> CommandFailed:
    """The exit code and error name of a client error."""
    for kind, code, error in _FAILURES:
        if isinstance(exc, kind):
            return CommandFailed(code, error, str(exc))
    fallback = "server_error" if isinstance(exc, errors.ServerRejected) else "error"
    return CommandFailed(ExitCode.ERROR, exc.error or fallback, str(exc))


ENDINGS = (CommandFailed, DeviceFlowError, CredentialStoreError, KeyboardInterrupt)
"""What a command may raise to end with a message and an exit code (anything else is a bug)."""


def failure_of(
    exc: CommandFailed | DeviceFlowError | CredentialStoreError | KeyboardInterrupt,
) -> CommandFailed:
    """How a command that raised one of :data:`ENDINGS` ends."""
    if isinstance(exc, CommandFailed):
        return exc
    if isinstance(exc, DeviceFlowError):
        return failure_for(exc)
    if isinstance(exc, CredentialStoreError):
        return CommandFailed(ExitCode.ERROR, "credential_store", str(exc))
    return CommandFailed(ExitCode.INTERRUPTED, "interrupted", "interrupted (Ctrl-C)")


__all__ = ["ENDINGS", "CommandFailed", "ExitCode", "failure_for", "failure_of"]
