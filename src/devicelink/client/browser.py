"""The user's browser: whether one can open on this machine, and opening a link in it
without waiting for it nor letting it write to this command's output.

Apart from ``api`` (which re-exports these names): how a link reaches a browser is not how
a login runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devicelink.client.loopback_request import AuthorizationRequest

BrowserOpener = Callable[[str], bool]
"""Opens a URL in the user's browser; ``True`` if a browser was started."""

_GRAPHICAL_PLATFORMS = ("darwin", "win32", "cygwin")


def browser_plausible(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a browser can plausibly be opened for the user on this machine.

    Not over SSH (``SSH_CONNECTION`` or ``SSH_TTY`` set): the browser would open on the
    remote machine, or fail, and a redirect to this machine's loopback could not reach
    it. Otherwise yes when ``$BROWSER`` names one, on macOS and Windows, and elsewhere
    (Linux, the BSDs) in a graphical session (``DISPLAY`` or ``WAYLAND_DISPLAY`` set).
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
        return False
    if env.get("BROWSER") or platform.startswith(_GRAPHICAL_PLATFORMS):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_in_browser(url: str) -> bool:
    """Start the user's browser on ``url`` without waiting for it; ``True`` if started.

    With ``$BROWSER`` set, :mod:`webbrowser` (which honours it), in a process of its own.
    Otherwise not :mod:`webbrowser`: on Linux it may fall back to a text browser that
    takes over the terminal, and browsers it starts inherit standard output (which
    ``--json`` keeps for its one object). ``xdg-open``, ``open`` on macOS,
    ``os.startfile`` on Windows; their output is discarded.
    """
    if not url.startswith(("https://", "http://")):
        return False
    if os.environ.get("BROWSER"):
        # Python's webbrowser honours $BROWSER; in an interpreter of its own, so that
        # what the browser prints never reaches this command's output and a $BROWSER
        # that runs until the page is done never blocks the wait.
        return _spawn([sys.executable, "-m", "webbrowser", url])
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        startfile = getattr(os, "startfile", None)
        if startfile is None:
            return False
        try:
            startfile(url)
        except OSError:
            return False
        return True
    launcher = "open" if sys.platform == "darwin" else "xdg-open"
    executable = shutil.which(launcher)
    if executable is None:
        return False
    return _spawn([executable, url])


def _spawn(argv: list[str]) -> bool:
    """Start ``argv`` (a fixed program, an http(s) URL) detached, its output discarded;
    whether it started. Reaped in the background (xdg-open may wait for the browser):
    never waited for."""
    try:
        process = subprocess.Popen(  # noqa: S603 - a fixed program and an http(s) URL
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        return False
    threading.Thread(target=process.wait, name="devicelink-browser", daemon=True).start()
    return True


def show_link_on_stderr(request: AuthorizationRequest, lifetime: float) -> None:
    """The fallback ``on_link``: the loopback flow's link, on standard error."""
    print(
        f"To sign in, open {request.url} in a browser on this computer",
        file=sys.stderr,
        flush=True,
    )


__all__ = ["BrowserOpener", "browser_plausible", "open_in_browser", "show_link_on_stderr"]
