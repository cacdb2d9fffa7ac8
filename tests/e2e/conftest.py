"""End-to-end fixtures: ``devicelink serve`` processes over real HTTP on loopback.

The helpers live in ``e2e_support.py``; this file holds the fixtures and attaches the
output of every server still running to the report of a failed test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from e2e_support import RUNNING, Launcher, launcher

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """``launch(env=..., cwd=..., port=...)`` starts a server, stopped at teardown."""
    with launcher(tmp_path / "server-logs") as start:
        yield start


@pytest.fixture(scope="session")
def test_secret(pytestconfig: pytest.Config) -> str:
    """``TEST_SECRET`` of tests/conftest.py.

    Conftest files outside packages all import as ``conftest``, so the constant is read
    from the registered plugin rather than with ``from conftest import TEST_SECRET``.
    """
    for plugin in pytestconfig.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None) if isinstance(plugin, ModuleType) else None
        if path and Path(path).resolve() == ROOT_CONFTEST:
            return str(plugin.TEST_SECRET)
    raise RuntimeError(f"{ROOT_CONFTEST} is not loaded")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in list(RUNNING):
            report.sections.append(
                (f"devicelink serve on port {server.port} ({report.when})", server.logs())
            )
