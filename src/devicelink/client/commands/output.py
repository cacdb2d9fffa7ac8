"""Where and how the auth commands speak, and the wording of times and places.

Results go to standard output (the status report, the key, the single ``--json`` object);
the code, the link, the countdown, warnings and errors go to standard error. With
``--json`` standard error holds only JSON lines. Colour appears only on a terminal and
never with ``NO_COLOR`` set.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.text import Text

from devicelink.client.commands.failures import CommandFailed
from devicelink.client.store import KEYRING

ENVIRONMENT = "environment"
"""``stored_in`` of a key that comes from the ``{PREFIX}_TOKEN`` variable."""

Part = str | Text | tuple[str, str]
"""A piece of a line: plain text, rich text, or (text, style)."""


def colour_allowed(env: Mapping[str, str] | None = None) -> bool:
    """``NO_COLOR`` (any non-empty value, https://no-color.org) turns colour off."""
    env = os.environ if env is None else env
    return not env.get("NO_COLOR")


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") not in ("dumb", "unknown")
    except (AttributeError, ValueError):
        return False


def _console(stream: IO[str]) -> Console:
    return Console(
        file=stream,
        color_system="auto" if colour_allowed() else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,  # a link wrapped at 80 columns cannot be copied
    )


def _json_line(stream: IO[str], document: dict[str, Any]) -> None:
    stream.write(json.dumps(document, separators=(", ", ": ")) + "\n")
    stream.flush()


class Output:
    """Where and how a command speaks: rich text for people, JSON for programs."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self.stdout: IO[str] = sys.stdout
        self.stderr: IO[str] = sys.stderr
        self.out = _console(self.stdout)
        self.err = _console(self.stderr)
        self.colour = colour_allowed() and self.err.color_system is not None
        self.live_terminal = _is_tty(self.stderr)
        self._deferred: list[tuple[str, str]] | None = None

    def result(self, document: dict[str, Any]) -> None:
        """The one object of ``--json`` mode, on standard output."""
        _json_line(self.stdout, document)

    def event(self, document: dict[str, Any]) -> None:
        """One JSON line on standard error (``--json`` mode)."""
        _json_line(self.stderr, document)

    def say(self, *parts: Part) -> None:
        """A line of the result, for people, on standard output."""
        self.out.print(Text.assemble(*parts))

    def tell(self, *parts: Part) -> None:
        """A line about the run, for people, on standard error."""
        self.err.print(Text.assemble(*parts))

    def warn(self, message: str) -> None:
        self._notice("warning", message)

    def store_warning(self, message: str) -> None:
        """The credential store's own warning, which names the program already."""
        self._notice("store", message)

    def note(self, message: str) -> None:
        self._notice("note", message)

    def _notice(self, kind: str, message: str) -> None:
        if self._deferred is not None:
            self._deferred.append((kind, message))
            return
        if self.as_json:
            self.event({"event": "warning" if kind == "store" else kind, "message": message})
        elif kind == "warning":
            self.tell(("Warning: ", "bold yellow"), message)
        elif kind == "store":
            self.tell((message, "yellow"))
        else:
            self.tell(message)

    def defer_notices(self) -> None:
        """Hold warnings and notes back until :meth:`flush_notices` (login shows the code
        and the link before anything else)."""
        if self._deferred is None:
            self._deferred = []

    def flush_notices(self) -> None:
        pending, self._deferred = self._deferred or [], None
        for kind, message in pending:
            self._notice(kind, message)

    def failure(self, failure: CommandFailed) -> None:
        self.flush_notices()
        if self.as_json:
            self.result({"error": failure.error, "message": failure.message, **failure.extra})
            return
        message = failure.message.rstrip(".")
        self.tell(("Error: ", "bold red"), message[:1].upper() + message[1:] + ".")
        if failure.hint:
            self.tell(failure.hint)


def iso(moment: datetime | None) -> str | None:
    """``moment`` for ``--json``: ISO 8601 in UTC, or ``None``."""
    return None if moment is None else moment.astimezone(UTC).isoformat()


def describe_expiry(moment: datetime | None, now: datetime | None = None) -> str:
    """``2026-12-29 10:00 UTC (in 30 days)``, or ``never``."""
    if moment is None:
        return "never"
    now = now or datetime.now(UTC)
    seconds = (moment - now).total_seconds()
    when = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    amount = _span(abs(seconds))
    return f"{when} (in {amount})" if seconds >= 0 else f"{when} ({amount} ago)"


def _span(seconds: float) -> str:
    if seconds >= 2 * 86_400:
        return f"{round(seconds / 86_400)} days"
    if seconds >= 2 * 3600:
        return f"{round(seconds / 3600)} hours"
    if seconds >= 120:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds)} seconds"


def format_left(seconds: float) -> str:
    """``9:05``: minutes and seconds, rounded up (a code is never shown as 0:00 early)."""
    whole = max(0, int(seconds + 0.999))
    return f"{whole // 60}:{whole % 60:02d}"


def describe_storage(where: str, token_env: str) -> str:
    """Where a key is, in words: ``where`` is :data:`KEYRING`, :data:`ENVIRONMENT` or a
    file's path (under the home directory shown with ``~``)."""
    if where == KEYRING:
        return "the system keyring"
    if where == ENVIRONMENT:
        return f"the environment variable {token_env}"
    try:
        return "~/" + Path(where).relative_to(Path.home()).as_posix()
    except (ValueError, RuntimeError):
        return where


__all__ = [
    "ENVIRONMENT",
    "Output",
    "colour_allowed",
    "describe_expiry",
    "describe_storage",
    "format_left",
    "iso",
]
