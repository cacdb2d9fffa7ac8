"""The first start of ``devicelink serve`` on its embedded default (issue 16, item 3): the
one-time password of ``admin`` and the next step (the pages, the login command) in the
log stream's own format, a JSON event when the logs are JSON, never a plain line among
them; later starts remind that the password was never changed, until it is."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.http import run, sign_in
from tests.support.processes import clean_env, free_port, one_time_passwords, run_devicelink
from tests.support.servers import GRACEFUL_EXIT, Launcher

pytestmark = pytest.mark.slow

CHANGE = "devicelink users passwd admin"


def events(records: list[dict[str, Any]], logger: str = "devicelink") -> list[dict[str, Any]]:
    return [r for r in records if r.get("logger") == logger]


def assert_runnable(command_line: str) -> None:
    """The login command shown can be typed as it is: its program exists."""
    program = shlex.split(command_line)[0]
    assert shutil.which(program) or os.access(program, os.X_OK), command_line


def test_json_logs_carry_the_password_and_the_next_step_as_events(
    workdir: Path, launch: Launcher
) -> None:
    port = free_port()
    first = launch(env=clean_env(), cwd=workdir, port=port)  # a pipe: JSON logs
    records = first.json_lines()  # strict: every line of standard error is JSON
    (account,) = [r for r in events(records) if "password" in r]
    assert account["username"] == "admin"
    assert account["change_it_with"] == CHANGE
    assert one_time_passwords(first.stderr()) == [account["password"]]
    (step,) = [r for r in events(records) if "login" in r]
    assert step["pages"] == f"{first.base_url}/"
    assert step["login"].endswith(f"devicelink login --server {first.base_url}")
    assert_runnable(step["login"])
    with httpx.Client(base_url=first.base_url, timeout=10) as browser:
        run(browser, sign_in("admin", account["password"]))  # the password shown works
    assert first.stop() in GRACEFUL_EXIT, first.logs()

    second = launch(env=clean_env(), cwd=workdir, port=port)
    assert account["password"] not in second.stderr()
    reminders = [r for r in events(second.json_lines()) if r.get("change_it_with")]
    assert reminders == [
        {
            **reminders[0],
            "event": "the account admin still has the one-time password of its first start",
            "level": "warning",
            "username": "admin",
            "change_it_with": CHANGE,
        }
    ]
    assert second.stop() in GRACEFUL_EXIT, second.logs()

    changed = run_devicelink(
        "users", "passwd", "admin", "--password-stdin",
        env=clean_env(), cwd=workdir, stdin="a new password of one's own\n",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    third = launch(env=clean_env(), cwd=workdir, port=port)
    assert [r for r in events(third.json_lines()) if r.get("change_it_with")] == []


def test_a_console_shows_the_banner_and_the_next_step(workdir: Path, launch: Launcher) -> None:
    env = clean_env(DEVICELINK_LOG_FORMAT="console")
    server = launch(env=env, cwd=workdir)
    output = server.stderr()
    (password,) = one_time_passwords(output)
    lines = [line.strip() for line in output.splitlines()]
    banner = lines.index("Created the first account. Sign in to approve devices with:")
    assert lines[banner : banner + 4] == [
        "Created the first account. Sign in to approve devices with:",
        "username: admin",
        f"password: {password}",
        f"This password is shown only now; change it with `{CHANGE}`.",
    ]
    assert lines[banner + 5] == (
        f"Next: the pages are at {server.base_url}/; sign a command line in with"
    )
    assert lines[banner + 6].endswith(f"devicelink login --server {server.base_url}")
    assert_runnable(lines[banner + 6])
