"""What reaches the screen: no colour or escape codes off a terminal or with NO_COLOR,
a plain countdown line every 30 s off a terminal, and the browser decision."""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from devicelink.cli import main
from devicelink.client import browser_plausible
from devicelink.client.api import open_in_browser
from devicelink.client.commands.login_view import LoginView, qr_text
from devicelink.client.commands.output import Output, describe_expiry, format_left
from devicelink.client.messages import DeviceAuthorization

from .conftest import SERVER, Cli

ESC = "\x1b"


@pytest.mark.parametrize(
    "env",
    [{}, {"NO_COLOR": "1"}, {"NO_COLOR": "1", "FORCE_COLOR": "1"}],
    ids=["not-a-tty", "NO_COLOR", "NO_COLOR-beats-FORCE_COLOR"],
)
def test_no_escape_codes_when_not_a_terminal_or_no_color(cli: Cli, env: dict[str, str]) -> None:
    outputs = []
    outputs.append(cli(main, "login", "--server", SERVER, "--no-browser", "--qr", env=env))
    outputs.append(cli(main, "login", "--server", SERVER, env=env))  # already logged in
    outputs.append(cli(main, "status", env=env))
    outputs.append(cli(main, "token", env=env))
    outputs.append(cli(main, "logout", env=env))
    outputs.append(cli(main, "status", env=env))  # an error
    assert [r.exit_code for r in outputs] == [0, 0, 0, 0, 0, 6]
    for result in outputs:
        assert ESC not in result.stdout, result.output
        assert ESC not in result.stderr, result.output
    assert "█" in outputs[0].stderr  # the QR code is there, drawn without colour


def test_with_colour_the_qr_code_paints_both_module_colours() -> None:
    text = qr_text("https://login.example.com/x", colour=True)
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard")
    console.print(text, end="")
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    assert ESC in rendered
    assert set(text.plain) <= {"▀", "\n"}


def test_qr_text_is_square_and_scannable_shape() -> None:
    plain = qr_text(
        "https://login.example.com/oauth/device/verify?user_code=WDJB-MJHT", colour=False
    )
    lines = plain.plain.splitlines()
    # version 4 (33 modules) + 2 x 2 border = 37 columns, ceil(37 / 2) = 19 lines
    assert {len(line) for line in lines} == {37}
    assert len(lines) == 19


def test_off_a_terminal_the_countdown_is_a_line_every_30_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    output = Output()
    assert output.live_terminal is False
    view = LoginView(output, server=SERVER, qr=False)
    remaining = 600.0
    for _ in range(30):  # 30 polls 5.25 s apart: a line at 0, 31.5, 63, 94.5, 126 s
        view.waiting(5.25, remaining)
        now[0] += 5.25
        remaining -= 5.25
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines == [
        "Waiting for approval in the browser: 10:00 left",
        "Waiting for approval in the browser: 9:29 left",
        "Waiting for approval in the browser: 8:57 left",
        "Waiting for approval in the browser: 8:26 left",
        "Waiting for approval in the browser: 7:54 left",
    ]
    view.stop()


def test_json_mode_prints_no_countdown(capsys: pytest.CaptureFixture[str]) -> None:
    view = LoginView(Output(as_json=True), server=SERVER, qr=False)
    view.show_code(
        DeviceAuthorization("BCDF-GHJK", f"{SERVER}/v", None, 600, 5, device_code="d" * 43)
    )
    view.waiting(5.25, 600)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert '"event": "code"' in captured.err


BROWSER_CASES = [
    # platform, environment, plausible
    ("linux", {}, False),
    ("linux", {"DISPLAY": ":0"}, True),
    ("linux", {"WAYLAND_DISPLAY": "wayland-0"}, True),
    ("linux", {"DISPLAY": ""}, False),
    ("linux", {"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22"}, False),
    ("linux", {"WAYLAND_DISPLAY": "wayland-0", "SSH_TTY": "/dev/pts/3"}, False),
    ("freebsd14", {"DISPLAY": ":0"}, True),
    ("freebsd14", {}, False),
    ("darwin", {}, True),
    ("darwin", {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22"}, False),
    ("win32", {}, True),
    ("win32", {"SSH_TTY": "windows-pty"}, False),
    ("cygwin", {}, True),
]


@pytest.mark.parametrize(("platform", "env", "plausible"), BROWSER_CASES)
def test_browser_plausible(platform: str, env: dict[str, str], plausible: bool) -> None:
    assert browser_plausible(env, platform) is plausible


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(600, "10:00"), (599.2, "10:00"), (61, "1:01"), (0.1, "0:01"), (-3, "0:00")],
)
def test_format_left_rounds_up(seconds: float, shown: str) -> None:
    assert format_left(seconds) == shown


def test_describe_expiry() -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert describe_expiry(None) == "never"
    assert (
        describe_expiry(now + timedelta(days=29, hours=23), now)
        == "2026-12-29 11:00 UTC (in 30 days)"
    )
    assert describe_expiry(now + timedelta(hours=5), now) == "2026-11-29 17:00 UTC (in 5 hours)"
    assert (
        describe_expiry(now - timedelta(minutes=10), now) == "2026-11-29 11:50 UTC (10 minutes ago)"
    )


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="xdg-open is the Linux opener")
def test_open_in_browser_runs_xdg_open_detached_and_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen"
    opener = tmp_path / "bin" / "xdg-open"
    opener.parent.mkdir()
    opener.write_text(f'#!/bin/sh\necho "$1" > {seen}\necho noise; echo noise >&2\n')
    opener.chmod(0o755)
    monkeypatch.setenv("PATH", str(opener.parent))
    assert open_in_browser("https://login.example.com/verify?user_code=WDJB-MJHT")
    deadline = time.monotonic() + 10
    while not (seen.exists() and seen.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert seen.read_text() == "https://login.example.com/verify?user_code=WDJB-MJHT\n"

    assert not open_in_browser("file:///etc/passwd")  # only http(s) links are opened
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not open_in_browser("https://login.example.com/")  # no opener: say so, no error
