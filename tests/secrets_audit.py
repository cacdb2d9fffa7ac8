"""Secrets audit: after the whole test session, no device code, user code, API key or
browser session token that the tests handled may be found in clear in the logs or in
the databases (DESIGN.md: "Neither is stored in clear"; README: the logs hold "no
secrets"). A pytest plugin, loaded by tests/conftest.py (``pytest_plugins``).

1. What is handed out is recorded, where it is born: the results of
   ``DeviceFlowService.start`` (device and user code) and ``.poll`` (the key) and the
   tokens of ``BrowserSessions.start``/``.sign_in``, for every app running in this
   process; and, for servers running in other processes (tests/e2e, tests/ops,
   tests/abuse), the JSON answers and session cookies httpx receives over a real
   connection (``network_stream`` in the response's extensions, so respx mocks and
   in-process transports, whose codes are made up, are left out).
2. What could hold them is collected: every log record of the session (a handler on
   the root logger; devicelink's loggers are opened to DEBUG), the PostgreSQL session
   database of tests/conftest.py (a text snapshot of every table before each test
   empties it, and ``pg_dump`` before it is dropped), any other database a fixture
   hands to :func:`snapshot_postgres`, and, under the session's base temporary
   directory, the output of server processes (``*.stderr``, ``*.stdout``) and every
   SQLite file (``*.db``, ``*.sqlite`` and their journals, read as raw bytes, free
   pages included).
3. At the end everything is searched for every recorded secret: as handed out, user
   codes in any case with or without the dash, API keys also without their prefix, and
   the hex of each (how pg_dump and sqlite3 show binary columns). A finding fails the
   session (exit status 1) with a report of what was found where.

``--no-secrets-audit`` turns it off. The scanner's functions are public so that tests can
prove it finds planted secrets (tests/abuse/test_secrets_audit.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
MIN_TOKEN_LENGTH = 32
"""Device codes (43), API keys (54) and session tokens (43) are longer; anything shorter
handed out under those names is made up by a test (and would match everywhere)."""

KIND_NAMES = {
    "device_code": "device code",
    "user_code": "user code",
    "access_token": "API key",
    "session_token": "session token",
}

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-]{16,}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")
_USER_RUN = re.compile(
    rf"[{USER_CODE_ALPHABET}](?:[ \-]?[{USER_CODE_ALPHABET}]){{{USER_CODE_LENGTH - 1},}}",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"[ \-]")
SQLITE_PATTERNS = ("*.db", "*.db-wal", "*.db-journal", "*.sqlite", "*.sqlite3")
OUTPUT_PATTERNS = ("*.stderr", "*.stdout")


# --- what the tests handled ----------------------------------------------------------------


def normalise_user_code(value: str) -> str | None:
    letters = _SEPARATORS.sub("", value).upper()
    if len(letters) == USER_CODE_LENGTH and all(ch in USER_CODE_ALPHABET for ch in letters):
        return letters
    return None


class SecretRegistry:
    """The secrets handed out during the session, by kind."""

    def __init__(self) -> None:
        self.values: dict[str, set[str]] = {kind: set() for kind in KIND_NAMES}

    def add(self, kind: str, value: object) -> bool:
        """Record ``value``; False (and nothing recorded) when it cannot be a real one."""
        if kind not in self.values or not isinstance(value, str):
            return False
        if kind == "user_code":
            normalised = normalise_user_code(value)
            if normalised is None:
                return False
            self.values[kind].add(normalised)
            return True
        if len(value) < MIN_TOKEN_LENGTH or len(value) > 4096 or not _TOKEN.match(value):
            return False
        self.values[kind].add(value)
        return True

    def counts(self) -> dict[str, int]:
        return {kind: len(values) for kind, values in self.values.items()}

    def __len__(self) -> int:
        return sum(len(values) for values in self.values.values())


REGISTRY = SecretRegistry()


def record_secrets(body: object) -> None:
    """Record the secrets in a JSON answer of devicelink (device authorization, token)."""
    if isinstance(body, Mapping):
        for kind in ("device_code", "user_code", "access_token"):
            if kind in body:
                REGISTRY.add(kind, body[kind])


# --- the scanner ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    """device code, user code, API key, session token"""
    form: str
    """how it appeared: as handed out, without the dash, in hex, ..."""
    where: str
    excerpt: str
    """the text around it, the secret itself cut short"""

    def describe(self) -> str:
        return f"{self.kind} ({self.form}) in {self.where}: …{self.excerpt}…"


class Scanner:
    """Searches text for the secrets of a registry, in every form they could take."""

    def __init__(self, registry: SecretRegistry) -> None:
        self._tokens: dict[int, dict[str, tuple[str, str]]] = {}
        self._hex: dict[int, dict[str, tuple[str, str]]] = {}
        self._user_codes: set[str] = set()
        for kind, values in registry.values.items():
            name = KIND_NAMES[kind]
            for value in values:
                if kind == "user_code":
                    self._user_codes.add(value)
                    shown = f"{value[:4]}-{value[4:]}"
                    self._add(self._hex, value.encode().hex(), name, "hex, without the dash")
                    self._add(self._hex, shown.encode().hex(), name, "hex")
                    continue
                self._add(self._tokens, value, name, "as handed out")
                self._add(self._hex, value.encode().hex(), name, "hex")
                prefix, sep, rest = value.partition("_")
                if sep and prefix == "dlk":  # dlk_<random>_<checksum>: the random part
                    self._add(self._tokens, rest.partition("_")[0], name, "without its prefix")

    @staticmethod
    def _add(
        table: dict[int, dict[str, tuple[str, str]]], needle: str, kind: str, form: str
    ) -> None:
        if len(needle) >= 16:
            table.setdefault(len(needle), {})[needle] = (kind, form)

    @property
    def empty(self) -> bool:
        return not (self._tokens or self._user_codes)

    def scan_text(self, text: str, where: str) -> list[Finding]:
        findings: list[Finding] = []
        if self._tokens:
            findings += self._windows(text, _TOKEN_RUN, self._tokens, where, lower=False)
        if self._hex:
            findings += self._windows(text, _HEX_RUN, self._hex, where, lower=True)
        if self._user_codes:
            for match in _USER_RUN.finditer(text):
                letters = _SEPARATORS.sub("", match.group(0)).upper()
                for offset in range(len(letters) - USER_CODE_LENGTH + 1):
                    code = letters[offset : offset + USER_CODE_LENGTH]
                    if code in self._user_codes:
                        findings.append(self._user_code_finding(text, match, code, where))
                        break
        return findings

    def _user_code_finding(self, text: str, run: re.Match[str], code: str, where: str) -> Finding:
        exact = re.compile("[ \\-]?".join(code), re.IGNORECASE)
        found = exact.search(text, run.start(), run.end())
        assert found is not None
        typed = found.group(0)
        form = "with the dash" if "-" in typed else "without the dash"
        if typed != typed.upper():
            form += ", in lower case"
        return self._finding(text, found, "user code", form, where)

    def _windows(
        self,
        text: str,
        run_pattern: re.Pattern[str],
        table: dict[int, dict[str, tuple[str, str]]],
        where: str,
        *,
        lower: bool,
    ) -> list[Finding]:
        findings = []
        lengths = sorted(table, reverse=True)  # the longest first: a key before its body
        for match in run_pattern.finditer(text):
            run = match.group(0).lower() if lower else match.group(0)
            hit = None
            for length in lengths:
                needles = table[length]
                for offset in range(len(run) - length + 1):
                    hit = needles.get(run[offset : offset + length])
                    if hit is not None:
                        break
                if hit is not None:
                    findings.append(self._finding(text, match, hit[0], hit[1], where))
                    break  # one finding per run
        return findings

    @staticmethod
    def _finding(text: str, match: re.Match[str], kind: str, form: str, where: str) -> Finding:
        start, end = match.span()
        secret = text[start:end]
        shown = secret[:6] + "…" if len(secret) > 8 else secret[:4] + "…"
        excerpt = text[max(0, start - 50) : start] + shown + text[end : end + 30]
        return Finding(kind, form, where, excerpt.replace("\n", "⏎").replace("\x00", "·"))

    def scan_bytes(self, data: bytes, where: str) -> list[Finding]:
        """Binary content (a SQLite file): each byte as one character, so text in clear
        appears as itself whatever surrounds it."""
        return self.scan_text(data.decode("latin-1"), where)

    def scan_file(self, path: Path) -> list[Finding]:
        try:
            data = path.read_bytes()
        except OSError:
            return []
        return self.scan_bytes(data, str(path))


def candidate_files(root: Path) -> Iterator[Path]:
    """Server output and SQLite files under ``root``."""
    for pattern in (*OUTPUT_PATTERNS, *SQLITE_PATTERNS):
        yield from (path for path in root.rglob(pattern) if path.is_file())


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


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _tables_as_text(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        names = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        lines = []
        for (name,) in names:
            rows = await conn.fetch(f'SELECT t::text FROM "{name}" t')
            lines += [f"{name}: {row[0]}" for row in rows]
        return "\n".join(lines)
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
        import asyncpg

        if self._connection is None:
            self._connection = await asyncpg.connect(_dsn(self.url), timeout=10)
        if self._query is None:
            names = await self._connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            self._query = " UNION ALL ".join(
                f"SELECT '{name}: ' || t::text FROM \"{name}\" t" for (name,) in names
            )
        if not self._query:
            return ""
        rows = await self._connection.fetch(self._query)
        return "\n".join(row[0] for row in rows)

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


def pg_dump(url: str) -> str:
    from sqlalchemy.engine import make_url

    binary = shutil.which("pg_dump")
    if binary is None:
        raise RuntimeError("pg_dump is not on PATH")
    parsed = make_url(_dsn(url))
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    result = subprocess.run(
        [
            binary,
            "-h",
            parsed.host or "127.0.0.1",
            "-p",
            str(parsed.port or 5432),
            "-U",
            parsed.username or "postgres",
            "--no-password",
            str(parsed.database),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pg_dump failed: {result.stderr.strip()}")
    return result.stdout


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

        def started(original: Any) -> Any:
            async def start(self: Any, *args: Any, **kwargs: Any) -> Any:
                flow = await original(self, *args, **kwargs)
                REGISTRY.add("device_code", flow.device_code)
                REGISTRY.add("user_code", flow.user_code)
                return flow

            return start

        def polled(original: Any) -> Any:
            async def poll(self: Any, *args: Any, **kwargs: Any) -> Any:
                grant = await original(self, *args, **kwargs)
                REGISTRY.add("access_token", grant.access_token)
                return grant

            return poll

        def session_opened(original: Any) -> Any:
            async def opened(self: Any, *args: Any, **kwargs: Any) -> Any:
                session = await original(self, *args, **kwargs)
                REGISTRY.add("session_token", session.token)
                return session

            return opened

        self._patch(DeviceFlowService, "start", started)
        self._patch(DeviceFlowService, "poll", polled)
        self._patch(BrowserSessions, "start", session_opened)
        self._patch(BrowserSessions, "sign_in", session_opened)

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
        database_class = self._root_conftest_attribute("Database")
        if database_class is None or "truncate" not in database_class.__dict__:
            self.notes.append("tests/conftest.py has no Database.truncate: final dump only")
            return
        audit = self

        def truncating(original: Any) -> Any:
            async def truncate(self: Any) -> None:
                if getattr(self, "backend", None) == "postgres" and self.url == url:
                    audit._snapshot_before_truncate(reader)
                await original(self)

            return truncate

        self._patch(database_class, "truncate", truncating)

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

    def _root_conftest_attribute(self, name: str) -> Any:
        root_conftest = Path(__file__).with_name("conftest.py").resolve()
        for plugin in self.config.pluginmanager.get_plugins():
            path = getattr(plugin, "__file__", None)
            if path and Path(path).resolve() == root_conftest:
                return getattr(plugin, name, None)
        return None

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


def audit_findings(texts: Iterable[tuple[str, str]], registry: SecretRegistry) -> list[Finding]:
    """Scan ``(where, text)`` pairs for the secrets of ``registry`` (for tests)."""
    scanner = Scanner(registry)
    return [finding for where, text in texts for finding in scanner.scan_text(text, where)]


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
