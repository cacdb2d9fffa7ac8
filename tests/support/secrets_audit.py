"""Secrets audit: after the whole test session, no device code, user code, API key,
browser session token, upstream sign-in secret (``state``, ``nonce``, PKCE verifier),
same-device authorization code or PKCE verifier that the tests handled may be found in
clear in the logs or in the databases (DESIGN.md: "Neither is stored in clear"; README:
the logs hold "no secrets"). A pytest plugin, loaded by tests/conftest.py
(``pytest_plugins``).

1. What is handed out is recorded, where it is born: the results of
   ``DeviceFlowService.start`` (device and user code) and ``.poll`` (the key), the
   tokens of ``BrowserSessions.unsaved``/``.sign_in`` and the secrets of
   ``OidcAuthenticator.login_redirect`` and the authorization codes of
   ``AuthorizationCodeService.approve``, for every app running in this process; and,
   for servers running in other processes, the JSON answers and session cookies httpx
   receives over a real connection (``network_stream`` in the response's extensions,
   so respx mocks and in-process transports, whose codes are made up, are left out).
   Authorization codes a server in another process issues, and PKCE verifiers (born in
   the native application), are recorded by the tests that see them
   (``REGISTRY.add("authorization_code", ...)``, ``REGISTRY.add("code_verifier", ...)``).
2. What could hold them is collected: every log record of the session (a handler on
   the root logger; devicelink's loggers are opened to DEBUG), the PostgreSQL session
   database of tests/conftest.py (a text snapshot of every table before each test
   empties it, and ``pg_dump`` before it is dropped), any other database a fixture
   hands to :func:`snapshot_postgres`, and, under the session's base temporary
   directory, the output of server processes (``*.stderr``, ``*.stdout``) and every
   SQLite file (``*.db``, ``*.sqlite`` and their journals, read as raw bytes, free
   pages included).
3. At the end everything is searched (tests/support/secret_scanner.py). A finding fails
   the session (exit status 1) with a report of what was found where.

``--no-secrets-audit`` turns it off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.databases import Database, dsn, pg_dump
from tests.support.secret_scanner import (
    KIND_NAMES,
    REGISTRY,
    Finding,
    Scanner,
    candidate_files,
    record_secrets,
)

# --- what could hold them ------------------------------------------------------------------


_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RecordCollector(logging.Handler):
    """Keeps the text of every log record: message, exception, and extra attributes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.name, record.getMessage()]
            if record.exc_info:
                parts.append(self._formatter.formatException(record.exc_info))
            if record.stack_info:
                parts.append(record.stack_info)
            for name, value in record.__dict__.items():
                if name not in _STANDARD_ATTRIBUTES:
                    parts.append(f"{name}={value!r}")
            self.texts.append(" ".join(parts))
        except Exception:  # an audit must never break a test's logging
            self.texts.append(f"{record.name} {record.msg!r}")


@dataclass
class Snapshot:
    label: str
    text: str


SNAPSHOTS: list[Snapshot] = []
"""Text of databases read during the session (scanned at the end)."""


async def _every_row_query(conn: Any) -> str:
    """One query for every row of every table, as text: ``table: (the row)``."""
    names = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return " UNION ALL ".join(
        f"SELECT '{name}: ' || t::text FROM \"{name}\" t" for (name,) in names
    )


async def _rows_as_text(conn: Any, query: str) -> str:
    if not query:
        return ""
    rows = await conn.fetch(query)
    return "\n".join(row[0] for row in rows)


async def _tables_as_text(url: str) -> str:
    conn = await asyncpg.connect(dsn(url), timeout=10)
    try:
        return await _rows_as_text(conn, await _every_row_query(conn))
    finally:
        await conn.close()


class PostgresReader:
    """Every row of a PostgreSQL database as text, on one connection kept open in a
    thread of its own (its own event loop): a snapshot is one query, about a
    millisecond, where a new connection each time would cost tens."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="secrets-audit-postgres", daemon=True
        )
        self._thread.start()
        self._connection: Any = None
        self._query: str | None = None

    async def _read(self) -> str:
        if self._connection is None:
            self._connection = await asyncpg.connect(dsn(self.url), timeout=10)
        if self._query is None:
            self._query = await _every_row_query(self._connection)
        return await _rows_as_text(self._connection, self._query)

    def read(self) -> str:
        return asyncio.run_coroutine_threadsafe(self._read(), self._loop).result(timeout=60)

    def close(self) -> None:
        async def close_connection() -> None:
            if self._connection is not None:
                await self._connection.close()

        try:
            asyncio.run_coroutine_threadsafe(close_connection(), self._loop).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


def snapshot_postgres(url: str, label: str) -> None:
    """Keep the content of the PostgreSQL database at ``url`` for the end-of-session
    scan: ``pg_dump`` when available, else every table's rows as text. For fixtures that
    drop their database: call it just before."""
    try:
        SNAPSHOTS.append(Snapshot(f"{label} (pg_dump)", pg_dump(url)))
    except (OSError, RuntimeError, subprocess.SubprocessError):
        SNAPSHOTS.append(Snapshot(f"{label} (rows)", asyncio.run(_tables_as_text(url))))


# --- the plugin ------------------------------------------------------------------------------


@dataclass
class AuditResult:
    findings: list[Finding]
    log_records: int
    files: int
    file_bytes: int
    snapshots: int
    seconds: float
    notes: list[str]


def _recording(*kinds: str, **attributes: str) -> Callable[[Any], Any]:
    """A wrapper for an async method whose result carries secrets: its attributes
    ``kinds`` (and ``attributes``, named by the kind they are) are recorded."""
    wanted = {**{kind: kind for kind in kinds}, **attributes}

    def wrap(original: Any) -> Any:
        async def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
            result = await original(self, *args, **kwargs)
            for attribute, kind in wanted.items():
                REGISTRY.add(kind, getattr(result, attribute))
            return result

        return recorded

    return wrap


class SecretsAudit:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collector = RecordCollector()
        self.notes: list[str] = []
        self.result: AuditResult | None = None
        self._undo: list[Callable[[], None]] = []
        self._truncate_snapshots = 0
        self._reader_failed = False

    # set-up ---------------------------------------------------------------------------

    def start(self) -> None:
        root = logging.getLogger()
        root.addHandler(self.collector)
        self._undo.append(lambda: root.removeHandler(self.collector))
        ours = logging.getLogger("devicelink")
        if ours.level == logging.NOTSET:
            ours.setLevel(logging.DEBUG)
            self._undo.append(lambda: ours.setLevel(logging.NOTSET))
        self._record_births()
        self._record_network_answers()

    def stop(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        setattr(owner, name, functools.wraps(original)(make(original)))
        self._undo.append(lambda: setattr(owner, name, original))

    def _record_births(self) -> None:
        try:
            from devicelink.service.device_flow import DeviceFlowService
            from devicelink.service.sessions import BrowserSessions
        except ImportError:  # the client alone is installed: no server in this process
            self.notes.append("devicelink's server is not installed: no in-process births")
            return

        self._patch(DeviceFlowService, "start", _recording("device_code", "user_code"))
        self._patch(DeviceFlowService, "poll", _recording("access_token"))

        def token_of(original: Any) -> Any:
            def unsaved(self: Any, *args: Any, **kwargs: Any) -> Any:
                session = original(self, *args, **kwargs)
                REGISTRY.add("session_token", session.token)
                return session

            return unsaved

        self._patch(BrowserSessions, "unsaved", token_of)
        self._patch(BrowserSessions, "sign_in", _recording(token="session_token"))
        from devicelink.idp.oidc import OidcAuthenticator

        def transient_of(original: Any) -> Any:
            async def login_redirect(self: Any, *args: Any, **kwargs: Any) -> Any:
                redirect = await original(self, *args, **kwargs)
                for value in redirect.transient.values():  # state, nonce, PKCE verifier
                    REGISTRY.add("upstream_secret", value)
                return redirect

            return login_redirect

        self._patch(OidcAuthenticator, "login_redirect", transient_of)
        from devicelink.service.authorization_codes import AuthorizationCodeService

        def code_of(original: Any) -> Any:
            async def approve(self: Any, *args: Any, **kwargs: Any) -> Any:
                code = await original(self, *args, **kwargs)
                REGISTRY.add("authorization_code", code)
                return code

            return approve

        self._patch(AuthorizationCodeService, "approve", code_of)

    def _record_network_answers(self) -> None:
        import httpx

        def json_of(original: Any) -> Any:
            def json(self: httpx.Response, **kwargs: Any) -> Any:
                body = original(self, **kwargs)
                if "network_stream" in self.extensions:
                    record_secrets(body)
                return body

            return json

        def cookies_of(original: Any) -> Any:
            def extract_cookies(self: httpx.Cookies, response: httpx.Response) -> None:
                original(self, response)
                if "network_stream" in response.extensions:
                    for header in response.headers.get_list("set-cookie"):
                        name, _, rest = header.partition("=")
                        if name.strip() in ("devicelink_session", "__Host-devicelink"):
                            REGISTRY.add("session_token", rest.partition(";")[0].strip())

            return extract_cookies

        self._patch(httpx.Response, "json", json_of)
        self._patch(httpx.Cookies, "extract_cookies", cookies_of)

    def watch_session_database(self, fixturedef: pytest.FixtureDef[Any], url: str) -> None:
        """The session database of tests/conftest.py: a snapshot before every test
        empties it, and a pg_dump before it is dropped."""
        reader = PostgresReader(url)
        fixturedef.addfinalizer(lambda: self._final_dump(url, reader))
        audit = self

        def truncating(original: Any) -> Any:
            async def truncate(self: Any) -> None:
                if getattr(self, "backend", None) == "postgres" and self.url == url:
                    audit._snapshot_before_truncate(reader)
                await original(self)

            return truncate

        self._patch(Database, "truncate", truncating)

    def _snapshot_before_truncate(self, reader: PostgresReader) -> None:
        if self._reader_failed:
            return
        try:
            text = reader.read()
        except Exception as exc:  # reported; the audit goes on with the final dump
            self._reader_failed = True
            self.notes.append(f"snapshots of the PostgreSQL session database stopped: {exc!r}")
            return
        self._truncate_snapshots += 1
        if text:
            SNAPSHOTS.append(Snapshot("PostgreSQL session database (a test's rows)", text))

    def _final_dump(self, url: str, reader: PostgresReader) -> None:
        try:
            reader.close()
            snapshot_postgres(url, "PostgreSQL session database")
        except Exception as exc:  # reported; the audit goes on
            self.notes.append(f"could not read the PostgreSQL session database: {exc!r}")

    # the audit ------------------------------------------------------------------------

    def run(self) -> AuditResult:
        started = time.monotonic()
        scanner = Scanner(REGISTRY)
        findings: list[Finding] = []
        files = file_bytes = 0
        if not scanner.empty:
            findings += scanner.scan_text("\n".join(self.collector.texts), "the log records")
            for snapshot in SNAPSHOTS:
                findings += scanner.scan_text(snapshot.text, snapshot.label)
            basetemp = self._basetemp()
            if basetemp is not None:
                for path in candidate_files(basetemp):
                    files += 1
                    file_bytes += path.stat().st_size
                    findings += scanner.scan_file(path)
        if self._truncate_snapshots:
            self.notes.append(
                f"{self._truncate_snapshots} snapshots of the PostgreSQL session database"
            )
        self.result = AuditResult(
            findings=findings,
            log_records=len(self.collector.texts),
            files=files,
            file_bytes=file_bytes,
            snapshots=len(SNAPSHOTS),
            seconds=time.monotonic() - started,
            notes=self.notes,
        )
        return self.result

    def _basetemp(self) -> Path | None:
        factory = getattr(self.config, "_tmp_path_factory", None)
        basetemp = getattr(factory, "_basetemp", None)
        return Path(basetemp) if basetemp is not None else None

    def report(self, terminal: pytest.TerminalReporter) -> None:
        result = self.result
        if result is None:
            return
        terminal.section("secrets audit", red=bool(result.findings), green=not result.findings)
        counts = REGISTRY.counts()
        terminal.write_line(
            "recorded: " + ", ".join(f"{counts[kind]} {name}s" for kind, name in KIND_NAMES.items())
        )
        terminal.write_line(
            f"searched: {result.log_records} log records, {result.snapshots} database "
            f"snapshots, {result.files} files ({result.file_bytes / 1e6:.1f} MB) "
            f"in {result.seconds:.1f} s"
        )
        for note in result.notes:
            terminal.write_line(f"note: {note}")
        if not len(REGISTRY):
            terminal.write_line("no secret was handed out in this session: nothing to search")
            return
        if not result.findings:
            terminal.write_line("no recorded secret was found in clear", green=True)
            return
        terminal.write_line(
            f"FAILED: {len(result.findings)} recorded secrets found in clear "
            "(the session fails, exit status 1):",
            red=True,
            bold=True,
        )
        for finding in result.findings[:30]:
            terminal.write_line(f"  {finding.describe()}", red=True)
        if len(result.findings) > 30:
            terminal.write_line(f"  ... and {len(result.findings) - 30} more", red=True)


_AUDIT = pytest.StashKey[SecretsAudit]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-secrets-audit",
        action="store_true",
        default=False,
        help="do not record secrets or search the logs and databases at the end",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("no_secrets_audit"):
        return
    audit = SecretsAudit(config)
    audit.start()
    config.stash[_AUDIT] = audit


def pytest_unconfigure(config: pytest.Config) -> None:
    audit = config.stash.get(_AUDIT, None)
    if audit is not None:
        audit.stop()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    result = yield
    if fixturedef.argname == "postgres_database" and isinstance(result, str):
        audit = request.config.stash.get(_AUDIT, None)
        if audit is not None:
            audit.watch_session_database(fixturedef, result)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    audit = session.config.stash.get(_AUDIT, None)
    if audit is None or exitstatus == pytest.ExitCode.INTERRUPTED:
        return
    result = audit.run()
    if result.findings and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    audit = terminalreporter.config.stash.get(_AUDIT, None)
    if audit is not None:
        audit.report(terminalreporter)
