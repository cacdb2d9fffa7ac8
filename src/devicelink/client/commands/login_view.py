"""What a person (or, with ``--json``, a program) sees while ``login`` waits: the code and
the link first (RFC 8628 section 3.3), a QR code on request, or, in the loopback flow, the
link the browser opens; then a countdown: a live line on a terminal, a plain line every
:data:`PLAIN_PROGRESS_EVERY` seconds otherwise."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import segno
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from devicelink.client.api import BrowserOpener
from devicelink.client.commands.output import Output, format_left
from devicelink.client.messages import DeviceAuthorization

if TYPE_CHECKING:
    from devicelink.client.loopback_request import AuthorizationRequest

PLAIN_PROGRESS_EVERY = 30.0
"""Seconds between two "waiting" lines when standard error is not a terminal."""


def qr_text(url: str, *, colour: bool) -> Text:
    """``url`` as a QR code in half blocks, two modules a character cell.

    With colour, dark and light modules are painted black and white explicitly (right on
    any terminal theme); without, light modules are drawn as blocks in the foreground
    colour, which suits the usual light-on-dark terminal.
    """
    qr = segno.make(url, error="l", micro=False)
    rows = [list(row) for row in qr.matrix_iter(border=2)]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    text = Text()
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        for upper, lower in zip(top, bottom, strict=True):
            if colour:
                fg = "black" if upper else "bright_white"
                bg = "black" if lower else "bright_white"
                text.append("▀", style=f"{fg} on {bg}")
            else:
                text.append(" ▄▀█"[(0 if upper else 2) + (0 if lower else 1)])
        text.append("\n")
    return text


class _Countdown:
    """The live line: a spinner (with colour), the time left, how to cancel."""

    def __init__(self, deadline: float, spinner: bool) -> None:
        self.deadline = deadline
        self.spinner = Spinner("dots", style="cyan") if spinner else None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        left = format_left(self.deadline - time.monotonic())
        line = Text.assemble(
            "Waiting for approval in the browser: ",
            (left, "bold"),
            " left (Ctrl-C to cancel)",
        )
        if self.spinner is None:
            yield line
        else:
            self.spinner.update(text=line)
            yield self.spinner


class LoginView:
    """What a person (or, with ``--json``, a program) sees while ``login`` runs."""

    def __init__(
        self, output: Output, *, server: str, qr: bool, browser: BrowserOpener | None = None
    ) -> None:
        self.output = output
        self.server = server
        self.qr = qr
        self.browser = browser
        self.deadline: float | None = None
        self._live: Live | None = None
        self._countdown: _Countdown | None = None
        self._last_line: float | None = None

    def show_code(self, authorization: DeviceAuthorization) -> None:
        """RFC 8628 section 3.3: the code and the link, first; then the QR code."""
        self.deadline = time.monotonic() + authorization.expires_in
        if self.output.as_json:
            self.output.event(
                {
                    "event": "code",
                    "server": self.server,
                    "user_code": authorization.user_code,
                    "verification_uri": authorization.verification_uri,
                    "verification_uri_complete": authorization.verification_uri_complete,
                    "expires_in": authorization.expires_in,
                    "interval": authorization.interval,
                }
            )
        else:
            self._tell_code(authorization)
        self.output.flush_notices()

    def _tell_code(self, authorization: DeviceAuthorization) -> None:
        out = self.output
        link = authorization.verification_uri_complete or authorization.verification_uri
        out.tell("To log in to ", self.server, ", open this link in a browser:")
        out.tell("")
        out.tell("    ", (link, "bold underline"))
        out.tell("")
        out.tell("and check that the page shows the code  ", (authorization.user_code, "bold cyan"))
        if authorization.verification_uri_complete:
            out.tell("(or open ", authorization.verification_uri, " and type the code).")
        if self.qr:
            out.tell("")
            out.err.print(qr_text(link, colour=out.colour), end="")
        out.tell("")

    def show_link(self, request: AuthorizationRequest, lifetime: float) -> None:
        """The loopback flow: the link the browser is about to open, first, for when it
        does not (it works only on this computer: the answer comes to 127.0.0.1)."""
        self.deadline = time.monotonic() + lifetime
        if self.output.as_json:
            self.output.event(
                {
                    "event": "authorize",
                    "server": self.server,
                    "url": request.url,
                    "redirect_uri": request.redirect_uri,
                    "expires_in": round(lifetime),
                }
            )
        else:
            out = self.output
            out.tell("To log in to ", self.server, ", sign in with the browser on this computer.")
            out.tell("If no browser opens, open this link in a browser on this computer:")
            out.tell("")
            out.tell("    ", (request.url, "bold underline"))
            out.tell("")
        self.output.flush_notices()

    def open_link(self, url: str) -> bool:
        """Open ``url`` with ``browser`` and say whether a browser started."""
        opened = self.browser(url) if self.browser is not None else False
        self.browser_opened(opened)
        return opened

    def browser_opened(self, opened: bool) -> None:
        if self.output.as_json:
            self.output.event({"event": "browser", "opened": opened})
        elif opened:
            self.output.tell("Opened the link in your browser.")
        else:
            self.output.tell("Could not open a browser: open the link yourself.")

    def waiting(self, seconds: float, remaining: float | None) -> None:
        """Before each wait: refresh the countdown (``remaining`` is the code's time)."""
        if remaining is None or self.output.as_json:
            return
        self.deadline = time.monotonic() + remaining
        if self.output.live_terminal:
            self._refresh_live(self.deadline)
        else:
            self._plain_line(remaining)

    def _refresh_live(self, deadline: float) -> None:
        if self._live is not None and self._countdown is not None:
            self._countdown.deadline = deadline
            return
        self._countdown = _Countdown(deadline, spinner=self.output.colour)
        self._live = Live(
            self._countdown, console=self.output.err, refresh_per_second=4, transient=True
        )
        self._live.start()

    def _plain_line(self, remaining: float) -> None:
        now = time.monotonic()
        if self._last_line is None or now - self._last_line >= PLAIN_PROGRESS_EVERY:
            self._last_line = now
            self.output.tell(f"Waiting for approval in the browser: {format_left(remaining)} left")

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


__all__ = ["PLAIN_PROGRESS_EVERY", "LoginView", "qr_text"]
