"""The ``devicelink`` command of this venv, run as a user or an operator runs it: an
environment without the caller's ``DEVICELINK_*`` settings, a free port, output captured."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner

DEVICELINK = Path(sys.executable).with_name("devicelink")
SERVER_PACKAGES = (
    "fastapi", "starlette", "sqlalchemy", "alembic", "asyncpg", "aiosqlite",
    "pydantic_settings", "uvicorn", "authlib", "argon2", "limits", "jinja2",
)  # fmt: skip
"""What the ``[server]`` extra installs: absent from a client-only install."""
_BLOCK_SERVER_PACKAGES = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVER_PACKAGES!r}:
            raise ImportError(f"blocked server package {{name}}")
        return None
sys.meta_path.insert(0, Block())
"""


def devicelink_command() -> list[str]:
    """The installed console script of the venv running the tests."""
    assert DEVICELINK.exists(), f"{DEVICELINK} is missing: install the package in this venv"
    return [str(DEVICELINK)]


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ``DEVICELINK_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_devicelink(
    *args: str,
    env: Mapping[str, str],
    cwd: Path,
    stdin: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run one short ``devicelink`` command to completion, its output captured."""
    return subprocess.run(
        [*devicelink_command(), *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_without_server_packages(
    program: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the Python ``program`` in a new interpreter of this venv where every server
    package is unimportable, as after ``pip install devicelink`` without ``[server]``;
    its output captured."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_SERVER_PACKAGES + textwrap.dedent(program)],
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_time_passwords(output: str) -> list[str]:
    """The passwords ``serve`` showed for a first local account it created: a line of
    the banner on a console, a field of a JSON event in JSON logs."""
    found = re.findall(r"^\s*password: (\S+)\s*$", output, flags=re.MULTILINE)
    for line in output.splitlines():
        if line.startswith("{") and '"password"' in line:
            found.append(json.loads(line)["password"])
    return found


def config_check(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    """``devicelink config check ARGS`` in this process (it starts nothing), with
    exactly ``env``'s settings, run from ``cwd``."""
    from devicelink.cli import main

    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DEVICELINK_")}
    overrides.update({k: v for k, v in env.items() if k.startswith("DEVICELINK_")})
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, ["config", "check", *args], env=overrides)
    finally:
        os.chdir(previous)
    return result.exit_code, result.stdout + result.stderr


async def run_operator(
    database_url: str, cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``devicelink ARGS`` as the operator runs it beside a test's server (a process of
    its own, on that server's database, with its public URL and secret), awaited in a
    worker thread so the server in the test's event loop keeps answering."""
    import anyio

    from tests.support.app import PUBLIC_URL, TEST_SECRET

    env = clean_env(
        DEVICELINK_DATABASE_URL=database_url,
        DEVICELINK_PUBLIC_URL=PUBLIC_URL,
        DEVICELINK_SECRET_KEY=TEST_SECRET,
        DEVICELINK_AUTO_MIGRATE="false",
    )
    return await anyio.to_thread.run_sync(
        lambda: run_devicelink(*args, env=env, cwd=cwd, stdin=stdin)
    )
