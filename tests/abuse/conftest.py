"""Fixtures of the abuse tests: one real ``devicelink serve`` over loopback for them all.

The server starts once (a few seconds) and every test attacks it from its own loopback
address, so that the per-address limits of one test do not touch another's: Linux
answers on all of 127.0.0.0/8, and httpx binds the client side with ``local_address``.
127.0.0.3 is the one trusted proxy: a test that needs many client addresses connects
from there and names them in ``X-Forwarded-For`` (which every other peer is denied).

The figures the tests measured are printed at the end of the run under "Abuse figures".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.abuse.attack import FIGURES, PROXY_ADDRESS
from tests.support.databases import fresh_postgres_database
from tests.support.processes import clean_env
from tests.support.secrets_audit import snapshot_postgres
from tests.support.servers import STRONG_SECRET, ServerProcess, launcher


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``devicelink serve`` with JSON logs on a PostgreSQL database of its own (as in
    production: many sessions writing at once is what these tests do, and SQLite answers
    that with "database is locked"), dropped at the end, after the secrets audit has
    read it."""
    root = tmp_path_factory.mktemp("abuse")
    with (
        fresh_postgres_database("devicelink_abuse") as database_url,
        launcher(root / "server-logs") as launch,
    ):
        env = clean_env(
            DEVICELINK_DATABASE_URL=database_url,
            DEVICELINK_DATA_DIR=str(root / "work" / "data"),
            DEVICELINK_SECRET_KEY=STRONG_SECRET,
            DEVICELINK_LOG_FORMAT="json",
            DEVICELINK_PURGE_INTERVAL="0",
            DEVICELINK_TRUSTED_PROXIES=PROXY_ADDRESS,
        )
        started = launch(env=env, cwd=root / "work")
        try:
            yield started
        finally:
            started.stop()
            snapshot_postgres(database_url, "the abuse tests' server database")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("Abuse figures")
        width = max(len(name) for name in FIGURES)
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name:<{width}}  {value}")
