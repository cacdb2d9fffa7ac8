"""The layers of DESIGN.md, checked mechanically: a wrong import fails the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import run_without_server_packages

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml: layers point down, core is pure,
    the client never imports server code."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_client_install_works_without_server_packages() -> None:
    """`pip install devicelink` (no [server] extra) gives a working command: with every
    server package made unimportable, the CLI still loads and the client imports."""
    result = run_without_server_packages(
        """
        import click
        import devicelink.client
        import devicelink.core.codes
        from devicelink.cli import main
        verbs = main.list_commands(click.Context(main))
        assert "serve" not in verbs and "login" in verbs and "token" in verbs, verbs
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
