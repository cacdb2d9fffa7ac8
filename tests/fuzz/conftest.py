"""Fixtures of the fuzz run: the report of what the servers answered, and their logs
attached to a failed test's report (as in tests/e2e)."""

from __future__ import annotations

import re
from collections.abc import Generator

import pytest

from tests.support.servers import RUNNING, ServerProcess

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server in list(RUNNING):
            report.sections.append(
                (f"devicelink serve on port {server.port} ({report.when})", log_excerpt(server))
            )
    return report


def log_excerpt(server: ServerProcess, tail: int = 60) -> str:
    """A fuzz run's log is long: its warnings and errors, then its last lines."""
    lines = server.stderr().splitlines()
    alarming = [line for line in lines if re.search(r'"level": "(warning|error|critical)"', line)]
    return "\n".join(
        [
            f"--- {len(alarming)} warnings and errors (the last {tail}) ---",
            *alarming[-tail:],
            f"--- the last {tail} of {len(lines)} lines ---",
            *lines[-tail:],
        ]
    )
