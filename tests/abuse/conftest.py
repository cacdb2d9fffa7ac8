"""Fixtures of the abuse tests: one real ``devicelink serve`` over loopback for them all.

The server starts once (a few seconds) and every test attacks it from its own loopback
address, so that the per-address limits of one test do not touch another's: Linux
answers on all of 127.0.0.0/8, and httpx binds the client side with ``local_address``.
127.0.0.3 is the one trusted proxy: a test that needs many client addresses connects
from there and names them in ``X-Forwarded-For`` (which every other peer is denied).

The output of every server still running is attached to the report of a failed test,
and the figures the tests measured are printed at the end of the run under "Abuse
figures".
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from abuse_support import (
    FIGURES,
    PROXY_ADDRESS,
    RUNNING,
    ServerProcess,
    fresh_postgres_database,
    running_server,
)

import secrets_audit


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``devicelink serve`` on a PostgreSQL database of its own (dropped at the end,
    after the secrets audit has read it)."""
    root = tmp_path_factory.mktemp("abuse")
    with (
        fresh_postgres_database() as database_url,
        running_server(
            root / "work",
            root / "server-logs",
            database_url,
            DEVICELINK_TRUSTED_PROXIES=PROXY_ADDRESS,
        ) as started,
    ):
        try:
            yield started
        finally:
            started.stop()
            secrets_audit.snapshot_postgres(database_url, "the abuse tests' server database")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server in list(RUNNING):
            report.sections.append(
                (f"devicelink serve on port {server.port} ({report.when})", server.logs())
            )
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("Abuse figures")
        width = max(len(name) for name in FIGURES)
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name:<{width}}  {value}")
