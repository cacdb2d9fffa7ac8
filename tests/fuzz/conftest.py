"""Fixtures of the fuzz run: the report of what the servers answered. A failed test's
report carries the servers' logs through the hook of tests/conftest.py (their warnings
and errors, then their last lines: ``ServerProcess.log_excerpt``)."""

from __future__ import annotations

import pytest

FUZZ_REPORT = pytest.StashKey[dict[str, str]]()


@pytest.fixture(scope="session")
def fuzz_report(pytestconfig: pytest.Config) -> dict[str, str]:
    """Lines for the terminal summary, one per fuzzed server (``backend -> text``)."""
    return pytestconfig.stash.setdefault(FUZZ_REPORT, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report = terminalreporter.config.stash.get(FUZZ_REPORT, {})
    if report:
        terminalreporter.section("devicelink fuzz run: what the server answered")
        for backend, text in report.items():
            terminalreporter.write_line(f"[{backend}] {text}")
