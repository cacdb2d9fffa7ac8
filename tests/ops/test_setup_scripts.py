"""The README's first command sets up only what serving needs (issue 16, item 2):
``./scripts/serve`` installs requirements-server.lock, ``./scripts/test`` and CI
requirements.lock, and an interpreter too old for devicelink is refused with a message
that says which one and what to do, before anything is created."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.processes import clean_env

ROOT = Path(__file__).resolve().parents[2]
SERVER_LOCK = ROOT / "requirements-server.lock"
DEV_LOCK = ROOT / "requirements.lock"


def pins(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", lock.read_text(), re.MULTILINE))


def test_serving_installs_the_same_versions_as_the_test_setup_and_no_test_tool() -> None:
    """A checkout set up for the tests serves with what it has (scripts/bootstrap
    --server then installs nothing), and one set up to serve gets the tested versions."""
    server, dev = pins(SERVER_LOCK), pins(DEV_LOCK)
    assert {name: dev.get(name) for name in server} == server
    assert {"fastapi", "uvicorn", "sqlalchemy", "alembic", "asyncpg"} <= server.keys()
    assert not {"pytest", "mypy", "ruff", "playwright", "schemathesis"} & server.keys()
    assert 'scripts/bootstrap" --server' in (ROOT / "scripts" / "serve").read_text()


def test_an_old_python_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """Python 3.10 cannot be run here, so a stand-in interpreter reports that version."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap", checkout / "scripts" / "bootstrap")
    for name in ("pyproject.toml", SERVER_LOCK.name, DEV_LOCK.name):
        shutil.copy(ROOT / name, checkout / name)
    old_python = tmp_path / "python3.10"
    old_python.write_text("#!/bin/sh\necho 3.10\n")
    old_python.chmod(0o755)

    result = subprocess.run(
        [str(checkout / "scripts" / "bootstrap"), "--server"],
        env=clean_env(PYTHON=str(old_python)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"bootstrap: devicelink needs Python 3.11 or newer, and {old_python} is Python 3.10:"
        " install Python 3.11 or newer and name it with PYTHON, for example"
        " PYTHON=python3.12 ./scripts/serve\n"
    )
    assert not (checkout / ".venv").exists()
