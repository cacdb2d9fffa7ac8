"""Hand-run benchmark of devicelink's hot endpoints, beside bare ceilings and a peer.

    .venv/bin/python bench/run.py                                # 10 s x 3 runs, all scenarios
    .venv/bin/python bench/run.py --duration 5 --runs 1          # a quick look
    .venv/bin/python bench/run.py --rows 1000,1000000            # and again on 10^6 old rows
    .venv/bin/python bench/run.py --only 'pg-*,asgi' --json
    .venv/bin/python bench/run.py --smoke                        # every scenario ~1 s, for CI

Not a test: it needs wrk, taskset, two or more CPUs and a PostgreSQL server, and its
figures only mean something on a quiet machine. See bench/README.md. The one exception
is ``--smoke``: tiny pools, one second a scenario, no figures worth reading, exit status 1
when any scenario got an answer other than the expected one.

How it measures: every server under test is ONE process pinned to one CPU
(``taskset -c 0``); wrk runs pinned to another (``taskset -c 1``) with 32 connections and
2 threads; each scenario gets a warm-up, then ``--runs`` runs of ``--duration`` seconds,
taken in turns (run 1 of every scenario, then run 2, ...) so that a noisy moment hits all
of them alike; the table shows the median of the runs. Latency percentiles come from
wrk's own histogram through the Lua ``done()`` hook in bench/lua/common.lua.

Structure: a :class:`Target` is a server process (how to start it, what to clean up); a
:class:`Scenario` is one request shape against a target (its wrk script and arguments, the
answers it expects, its preparation); scenarios share :class:`CodePool` and
:class:`KeyPool` objects (pending device codes, valid API keys) when they run against the
same server. A :class:`Phase` is a group of scenarios measured in turns, after an optional
step (seeding old rows). ``build_plan`` lists them; :func:`evaluate_goals` computes the
ratios the performance targets are stated in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
PEER_DIR = BENCH_DIR / "peer"
RESULTS_DIR = BENCH_DIR / "results"

sys.path.insert(0, str(BENCH_DIR))
import seed as seeding  # noqa: E402 - bench/seed.py, beside this file

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ID = "devicelink-cli"  # the default public client `devicelink serve` creates
PEER_CLIENT_ID = "bench-device"  # the one client of bench/peer/provider.mjs
POLL_INTERVAL = 5  # seconds; devicelink's default DEVICELINK_INTERVAL, RFC 8628's default
# A token-poll body of the same shape and size as the real ones (43-character code),
# for the ceilings, so every endpoint parses the same bytes.
SAMPLE_POLL_BODY = (
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
    f"&device_code={'A' * 43}&client_id={CLIENT_ID}"
)
BASELINE = "fastapi-form"  # the ×form column divides by this scenario's req/s
PENDING = "400 authorization_pending"
SLOW_DOWN = "400 slow_down"
# Lifetime of the pre-created codes: the largest devicelink accepts, so that the pools
# outlive any run, seeding 10^6 rows included. It is a timestamp in the row: it changes
# no work the server does per request.
CODE_LIFETIME = 86_400

# The targets (see the README): (scenario the figure belongs to, label, threshold).
TARGET_POLL_VS_PEER = 1.2
TARGET_POLL_P99_MS = 20.0
TARGET_AUTHORIZE_VS_PEER = 1.0
TARGET_ME_VS_ASGI = 0.30
TARGET_ROWS_TOLERANCE = 0.10
TARGET_PURGE_STALL_MS = 100.0
TARGET_MEMORY_DELTA_MB = 50.0

SMOKE_DEFAULTS = {
    "duration": 1.0,
    "runs": 1,
    "warmup": 0.0,
    "connections": 8,
    "threads": 2,
    "codes": 150,
    "peer_codes": 150,
    "slow_codes": 4,
    "keys": 10,
    "memory_flows": 500,
}


class BenchError(Exception):
    """Something prevents a meaningful measurement; the message says what."""


class Skip(Exception):  # noqa: N818 - not an error: a target that cannot run here
    """A target cannot run on this machine (the peer without npm, say); its scenarios
    are reported as skipped, with the reason."""


# --- small helpers -------------------------------------------------------------------


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_command(name: str) -> str:
    """A console script of the interpreter running this file (the project's venv)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise BenchError(f"{name!r} not found next to {sys.executable}; run with the venv's python")
    return found


def pinned(cpus: str, command: list[str]) -> list[str]:
    """``taskset -c CPUS command``; the command alone when pinning is off (smoke mode on
    a machine without taskset or without the CPUs). taskset execs the command, so the
    process id is the command's own."""
    return ["taskset", "-c", cpus, *command] if cpus else command


def rows_label(rows: int) -> str:
    exponent = round(math.log10(rows)) if rows > 0 else 0
    return f"10^{exponent}" if rows > 0 and 10**exponent == rows else f"{rows:,}"


def check_tools(options: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise BenchError(
            "wrk is not installed. Install it (Debian/Ubuntu: `sudo apt-get install wrk`, "
            "macOS: `brew install wrk`) and run again."
        )
    cpus = os.sched_getaffinity(0)
    wanted = {int(c) for part in (options.server_cpus, options.wrk_cpus) for c in _cpu_list(part)}
    if options.smoke and (shutil.which("taskset") is None or not wanted <= cpus):
        # The smoke run checks answers, not figures: run unpinned rather than not at all.
        log(
            f"smoke: taskset or CPUs {sorted(wanted)} unavailable (this process may use "
            f"{sorted(cpus)}); running unpinned"
        )
        options.server_cpus = options.wrk_cpus = ""
        return
    if shutil.which("taskset") is None:
        raise BenchError("taskset is not installed (Debian/Ubuntu: package util-linux).")
    if not wanted <= cpus:
        raise BenchError(
            f"CPUs {sorted(wanted - cpus)} are not available (this process may use "
            f"{sorted(cpus)}); set --server-cpus and --wrk-cpus"
        )
    if set(_cpu_list(options.server_cpus)) & set(_cpu_list(options.wrk_cpus)):
        log("warning: server and wrk share a CPU; the figures will be lower and noisier")
    for module in ("uvloop", "httptools"):
        if importlib.util.find_spec(module) is None:
            log(f"warning: {module} is not installed; uvicorn falls back and the ceilings drop")


def _cpu_list(spec: str) -> list[int]:
    cpus: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part.strip():
            cpus.append(int(part))
    return cpus


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (VmRSS of /proc/<pid>/status),
    in MB (10^6 bytes). ``devicelink serve`` with one worker is one process; with more,
    the workers are its children."""
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(c) for c in children)
    return total_kb * 1024 / 1e6


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(pids: list[int], *, busy: float = 0.05, limit: float = 30.0) -> float:
    """Wait until none of ``pids`` uses more than ``busy`` of a CPU (over 0.2 s), at most
    ``limit`` seconds; the seconds waited. A server still answering the requests queued
    by the previous run (SQLite's, whose queue holds seconds of work) would otherwise
    share CPU 0 with the next scenario's server."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(0.2)
        if all(cpu_seconds(pid) - b < busy * 0.2 for pid, b in zip(pids, before, strict=True)):
            break
    return time.monotonic() - started


# --- server processes ----------------------------------------------------------------


@dataclass
class Process:
    """A server started by this script, in its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


def start_process(
    name: str, command: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> Process:
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log_path)


def wait_until_ready(process: Process, url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise BenchError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchError(
        f"{process.name} did not answer {url} within {timeout:.0f} s:\n{process.log_tail()}"
    )


# --- targets: the servers under test -------------------------------------------------


@dataclass(eq=False)
class Target:
    """A server under test: one process, pinned to the server CPUs."""

    id: str
    title: str

    base_url: str = ""
    process: Process | None = None
    started: bool = False
    skipped: str | None = None  # why it cannot run here (its scenarios are skipped)

    def start(self, ctx: Context) -> None:
        raise NotImplementedError

    def ensure_started(self, ctx: Context) -> None:
        if self.started or self.skipped:
            return
        log(f"starting {self.title}")
        try:
            self.start(ctx)
        except Skip as exc:
            self.skipped = str(exc)
            log(f"{self.id}: skipped: {exc}")
            ctx.notes.append(f"{self.title}: skipped: {exc}")
            return
        self.started = True

    def stop(self, ctx: Context) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def alive(self) -> bool:
        return self.process is None or self.process.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.popen.pid

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "skipped": self.skipped}


@dataclass(eq=False)
class UvicornTarget(Target):
    """An ASGI app of bench/bare_app.py under uvicorn with devicelink's settings:
    one process, uvloop, httptools, no access log, no Server header."""

    app: str = ""

    def start(self, ctx: Context) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), self.app,
            "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--no-server-header", "--log-level", "warning",
        ]  # fmt: skip
        self.process = start_process(
            self.id,
            pinned(ctx.options.server_cpus, command),
            env=os.environ.copy(),
            cwd=ctx.workdir,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "app": self.app}


@dataclass(eq=False)
class DevicelinkTarget(Target):
    """``devicelink serve`` (one process) on a database this script creates."""

    backend: str = ""  # "postgres" or "sqlite"
    database_url: str = ""
    database_version: str = ""
    seeded: int = 0  # old rows added by seed.py so far (to each of the two tables)

    def create_database(self, ctx: Context) -> None:
        raise NotImplementedError

    def start(self, ctx: Context) -> None:
        self.create_database(ctx)
        devicelink = venv_command("devicelink")
        if self.backend != "sqlite":  # `devicelink serve` migrates SQLite itself
            env = devicelink_env(self.database_url, public_url="", ctx=ctx)
            log(f"{self.id}: devicelink db upgrade")
            upgraded = subprocess.run(  # noqa: S603
                [devicelink, "db", "upgrade"],
                env=env,
                cwd=ctx.workdir,
                capture_output=True,
                text=True,
            )
            if upgraded.returncode != 0:
                raise BenchError(
                    f"devicelink db upgrade failed:\n{upgraded.stdout}{upgraded.stderr}"
                )
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = devicelink_env(self.database_url, public_url=self.base_url, ctx=ctx)
        command = [
            devicelink, "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = start_process(
            self.id,
            pinned(ctx.options.server_cpus, command),
            env=env,
            cwd=ctx.workdir,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/readyz")

    def seed_to(self, ctx: Context, rows: int) -> None:
        """Add old rows (bench/seed.py) until ``rows`` of them are in each table."""
        if rows <= self.seeded:
            return
        log(f"{self.id}: seeding {rows - self.seeded:,} old rows into each table (setup)")
        report = seeding.seed(
            self.database_url, rows - self.seeded, client_id=CLIENT_ID,
            log=lambda m: log(f"{self.id}: {m.strip()}"),
        )  # fmt: skip
        self.seeded = rows
        log(f"{self.id}: {report.describe()}")
        ctx.notes.append(f"{self.title}: {report.describe()}")
        ctx.seed_reports.append({"target": self.id, "to_rows": rows, **vars(report)})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "backend": self.backend,
            "database_version": self.database_version,
        }


@dataclass(eq=False)
class DevicelinkPostgresTarget(DevicelinkTarget):
    """On a fresh PostgreSQL database, migrated by ``devicelink db upgrade``; the database
    is dropped afterwards unless --keep-database."""

    database: str = ""
    backend: str = "postgres"

    def create_database(self, ctx: Context) -> None:
        admin = ctx.options.postgres.replace("postgresql+asyncpg://", "postgresql://")
        self.database_version = asyncio.run(_pg_recreate(admin, self.database))
        self.database_url = f"{admin.rsplit('/', 1)[0]}/{self.database}"
        ctx.cleanups.append(self._drop_later(ctx))
        log(f"{self.id}: created database {self.database} (PostgreSQL {self.database_version})")

    def _drop_later(self, ctx: Context) -> Callable[[], None]:
        def drop() -> None:
            if ctx.options.keep_database:
                log(f"kept database {self.database} (--keep-database)")
                return
            with contextlib.suppress(Exception):
                asyncio.run(_pg_drop(ctx.options.postgres, self.database))

        return drop


@dataclass(eq=False)
class DevicelinkSqliteTarget(DevicelinkTarget):
    """On a SQLite file in the work directory (on disk: /tmp here is not a tmpfs, check
    yours), in WAL mode as devicelink configures it."""

    backend: str = "sqlite"

    def create_database(self, ctx: Context) -> None:
        path = ctx.workdir / f"{self.id}.db"
        self.database_url = f"sqlite:///{path}"
        self.database_version = sqlite3.sqlite_version
        log(f"{self.id}: SQLite {self.database_version} at {path}")


def devicelink_env(database_url: str, *, public_url: str, ctx: Context) -> dict[str, str]:
    # Nothing of the caller's own DEVICELINK_* configuration (a Redis URL, say) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(
        DEVICELINK_DATABASE_URL=database_url,
        DEVICELINK_SECRET_KEY=ctx.secret_key,
        DEVICELINK_DATA_DIR=str(ctx.workdir / "data"),
        # So that the per-IP limit on starting flows never answers 429 to the benchmark;
        # a one-second window keeps the limiter's per-IP list short (see the README).
        DEVICELINK_START_RATE_LIMIT=ctx.options.start_rate_limit,
        DEVICELINK_CODE_LIFETIME=str(CODE_LIFETIME),
        # No periodic purge in the servers under test: it would delete the seeded rows
        # and compete with the measured requests at a moment nobody chose. The purge is
        # measured on its own (scenario pg-purge). Ignored by versions without it.
        DEVICELINK_PURGE_INTERVAL="0",
    )
    if public_url:
        env["DEVICELINK_PUBLIC_URL"] = public_url
    return env


async def _pg_recreate(admin_url: str, name: str) -> str:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(
            f"PostgreSQL at {admin_url} is unreachable: {exc} (see --postgres)"
        ) from None
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _pg_drop(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _pg_fetchval(url: str, query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


@dataclass(eq=False)
class NodePeerTarget(Target):
    """node-oidc-provider (bench/peer/provider.mjs) on Node.js, pinned like the others.
    Its node_modules are installed with ``npm ci`` from bench/peer/package-lock.json on
    first use; without node or npm, or when ``npm ci`` fails, the peer is skipped."""

    node_version: str = ""
    provider_version: str = ""

    def start(self, ctx: Context) -> None:
        if ctx.options.no_peer:
            raise Skip("--no-peer")
        node = shutil.which("node")
        if node is None:
            raise Skip("node is not installed (Node.js 20.19 or later runs the peer)")
        self.node_version = subprocess.run(  # noqa: S603
            [node, "--version"], capture_output=True, text=True
        ).stdout.strip()
        self.provider_version = ensure_peer_modules()
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "NODE_ENV": "production",
            "BENCH_CLIENT_ID": PEER_CLIENT_ID,
            "BENCH_DEVICE_CODE_TTL": str(CODE_LIFETIME),
        }
        self.process = start_process(
            self.id,
            pinned(ctx.options.server_cpus, [node, str(PEER_DIR / "provider.mjs"), str(port)]),
            env=env,
            cwd=PEER_DIR,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/.well-known/openid-configuration")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "node": self.node_version,
            "oidc_provider": self.provider_version,
        }


def ensure_peer_modules() -> str:
    """The installed oidc-provider version, after ``npm ci`` if node_modules do not match
    package-lock.json. Raises :class:`Skip` when that cannot be done here."""
    lock = json.loads((PEER_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/oidc-provider"]["version"]

    def installed() -> str | None:
        manifest = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            return str(json.loads(manifest.read_text())["version"])
        return None

    if installed() == wanted:
        return wanted
    npm = shutil.which("npm")
    if npm is None:
        raise Skip("npm is not installed, and bench/peer/node_modules is missing")
    log(f"peer: npm ci in {PEER_DIR} (oidc-provider {wanted}; first use)")
    try:
        done = subprocess.run(  # noqa: S603
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        raise Skip("npm ci did not finish within 300 s") from None
    if done.returncode != 0 or installed() != wanted:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise Skip(f"npm ci failed (exit {done.returncode}): {tail}")
    return wanted


# --- pools: what several scenarios of one server share --------------------------------


@dataclass(eq=False)
class CodePool:
    """Pending device codes created through the server's device authorization endpoint
    before the runs (setup, not measured), written one a line to a file that poll.lua
    walks. ``offsets`` is where each wrk thread stopped, so the next run continues there
    and a code is polled again only after all the others."""

    name: str
    target: Target
    count: int
    authorize_path: str
    client_id: str
    token_path: str = "/oauth/device/token"

    codes: list[str] = field(default_factory=list)
    file: Path | None = None
    offsets: list[int] = field(default_factory=list)
    created_per_second: float = 0.0
    sample: str = ""

    def ensure(self, ctx: Context) -> None:
        if self.file is not None:
            return
        log(f"{self.name}: creating {self.count:,} pending device codes (setup, not measured)")
        started = time.monotonic()
        flows = create_codes(
            ctx, self.name, self.target.base_url + self.authorize_path, self.client_id,
            self.count + 1,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        self.created_per_second = len(flows) / elapsed
        log(
            f"{self.name}: created {len(flows):,} codes in {elapsed:.1f} s "
            f"({self.created_per_second:,.0f}/s, wrk authorize_many.lua)"
        )
        codes = [device_code for device_code, _user_code in flows]
        # One code the pool does not use shows a real answer, body and all.
        self.sample = _sample_poll(
            self.target.base_url + self.token_path, codes.pop(), self.client_id
        )
        log(f"{self.name}: a poll of a fresh pending code answers {self.sample}")
        self.codes = codes
        self.file = ctx.workdir / f"{self.name}.txt"
        self.file.write_text("\n".join(codes) + "\n")
        self.offsets = [0] * ctx.options.threads


@dataclass(eq=False)
class KeyPool:
    """Valid API keys: flows started over HTTP, approved through devicelink's service
    layer against the server's own database (as tests/e2e/e2e_support.py's
    ``approve_through_service`` does; the logic is copied, tests are not imported),
    then redeemed by a poll of the token endpoint. Written one a line for bearer.lua."""

    name: str
    target: DevicelinkTarget
    count: int
    users: int = 20

    file: Path | None = None
    sample: str = ""

    def ensure(self, ctx: Context) -> None:
        if self.file is not None:
            return
        base = self.target.base_url
        log(f"{self.name}: minting {self.count} API keys for {min(self.users, self.count)} users")
        started = time.monotonic()
        flows = create_codes(
            ctx, self.name, base + "/oauth/device/authorize", CLIENT_ID, self.count
        )
        usernames = [f"bench-user-{i:03d}" for i in range(min(self.users, self.count))]
        asyncio.run(
            _approve_through_service(
                self.target.database_url,
                ctx.secret_key.encode("utf-8"),
                [user_code for _device_code, user_code in flows],
                usernames,
            )
        )
        keys = asyncio.run(_redeem_all(base + "/oauth/device/token", [code for code, _ in flows]))
        log(f"{self.name}: {len(keys)} keys in {time.monotonic() - started:.1f} s")
        import httpx

        answer = httpx.get(base + "/api/me", headers={"Authorization": f"Bearer {keys[0]}"})
        self.sample = f"{answer.status_code} {answer.text.strip()[:200]}"
        if answer.status_code != 200:
            raise BenchError(f"{self.name}: GET /api/me with a fresh key answered {self.sample}")
        self.file = ctx.workdir / f"{self.name}.txt"
        self.file.write_text("\n".join(keys) + "\n")


def _answer(response: Any) -> str:
    """The answer as common.lua classifies it: "200", or "400 <error>"."""
    if 200 <= response.status_code < 300:
        return str(response.status_code)
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    return f"{response.status_code} {error}" if error else str(response.status_code)


async def _poll_all(url: str, codes: list[str], client_id: str) -> list[str]:
    import httpx

    async with httpx.AsyncClient(timeout=30) as http:
        semaphore = asyncio.Semaphore(16)

        async def one(code: str) -> str:
            async with semaphore:
                response = await http.post(
                    url,
                    data={
                        "grant_type": DEVICE_CODE_GRANT,
                        "device_code": code,
                        "client_id": client_id,
                    },
                )
            return _answer(response)

        return list(await asyncio.gather(*(one(c) for c in codes)))


async def _redeem_all(url: str, codes: list[str]) -> list[str]:
    import httpx

    async with httpx.AsyncClient(timeout=30) as http:
        semaphore = asyncio.Semaphore(16)

        async def one(code: str) -> str:
            async with semaphore:
                response = await http.post(
                    url,
                    data={
                        "grant_type": DEVICE_CODE_GRANT,
                        "device_code": code,
                        "client_id": CLIENT_ID,
                    },
                )
            if response.status_code != 200:
                raise BenchError(f"redeeming an approved code answered {_answer(response)}")
            return str(response.json()["access_token"])

        return list(await asyncio.gather(*(one(c) for c in codes)))


async def _approve_through_service(
    database_url: str, secret: bytes, user_codes: list[str], usernames: list[str]
) -> None:
    """Approve each user code as one of ``usernames`` (created when missing) through the
    service layer, against the server's own database."""
    from devicelink.core.codes import CodeHasher
    from devicelink.service import DeviceFlowService, StoredKeyIssuer
    from devicelink.service.clock import utc_now
    from devicelink.storage import SqlStore, create_engine_for_url

    store = SqlStore(create_engine_for_url(database_url))
    try:
        flows = DeviceFlowService(store, CodeHasher(secret), StoredKeyIssuer())
        user_ids: list[int] = []
        for username in usernames:
            async with store.transaction() as tx:
                user = await tx.users.get_by_username(username)
                if user is None:
                    user = await tx.users.add(username, None, utc_now())
            user_ids.append(user.id)
        for n, user_code in enumerate(user_codes):
            verdict = await flows.approve(user_code, user_id=user_ids[n % len(user_ids)])
            if verdict != "ok":
                raise BenchError(f"approving {user_code} through the service gave {verdict!r}")
    finally:
        await store.dispose()


def _sample_poll(url: str, device_code: str, client_id: str) -> str:
    import httpx

    response = httpx.post(
        url,
        data={"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id},
    )
    return f"{response.status_code} {response.text.strip()[:300]}"


# --- scenarios: one request shape against one target ----------------------------------


@dataclass(eq=False)
class Scenario:
    """One endpoint under wrk.

    ``expect`` are the answers every response should be, as counted by common.lua's
    response(): ("200",), or ("400 authorization_pending",). Empty means the script does
    not classify (cheaper for wrk) and wrk's non-2xx/3xx counter is the check.
    """

    id: str
    title: str
    target: Target
    path: str
    script: str
    expect: tuple[str, ...] = ()
    method: str = "POST"
    skipped: str | None = None

    def prepare(self, ctx: Context) -> None:
        """Work before the first (warm-up) run; not measured."""

    def wrk_args(self, ctx: Context) -> list[str]:
        return []

    def before_run(self, ctx: Context) -> None:
        """Called before every wrk run, warm-up included; not measured."""

    def after_run(self, result: dict[str, Any]) -> None:
        """Called with every wrk result, warm-up included."""

    def notes(self, runs: list[Measurement]) -> list[str]:
        return []

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "target": self.target.id,
            "method": self.method,
            "path": self.path,
            "script": self.script,
            "expect": list(self.expect),
            "skipped": self.skipped,
        }


@dataclass(eq=False)
class FormScenario(Scenario):
    """POST one fixed form body (post_form.lua, or post_form_classified.lua with expect)."""

    body: str = ""

    def wrk_args(self, ctx: Context) -> list[str]:
        return [self.body]


@dataclass(eq=False)
class PollScenario(Scenario):
    """The token poll over a :class:`CodePool` walked round-robin by poll.lua. With a
    pool of pending codes large enough, each code is polled again only after its interval
    (checked in notes()): the answer is authorization_pending. With a pool of a few
    primed codes polled as fast as possible, it is slow_down."""

    pool: CodePool | None = None
    check_interval: bool = True  # False for the slow_down pool

    def before_run(self, ctx: Context) -> None:
        """The slow_down pool: poll every code once right before the run, so that the
        run's first poll of each comes before its interval has passed, however long ago
        the previous run of this scenario was (other scenarios run in between)."""
        if self.check_interval:
            return
        pool = self.pool
        assert pool is not None
        answers = asyncio.run(
            _poll_all(pool.target.base_url + pool.token_path, pool.codes, pool.client_id)
        )
        unexpected = [a for a in answers if a not in (PENDING, SLOW_DOWN)]
        if unexpected:
            raise BenchError(f"{self.id}: polls of the slow_down pool answered {unexpected[:3]}")

    def prepare(self, ctx: Context) -> None:
        assert self.pool is not None
        self.pool.ensure(ctx)

    def delay_ms(self, ctx: Context) -> int:
        """Smoke mode only: each connection waits between requests so that the whole of
        wrk never polls faster than pool / (1.2 x interval), whatever the duration: no
        code of a tiny pool is polled twice within its interval."""
        assert self.pool is not None
        if not ctx.options.smoke or not self.check_interval:
            return 0
        rate = self.pool.count / (POLL_INTERVAL * 1.2)
        return math.ceil(ctx.options.connections / rate * 1000)

    def wrk_args(self, ctx: Context) -> list[str]:
        pool = self.pool
        assert pool is not None and pool.file is not None
        return [
            str(pool.file),
            str(len(pool.offsets)),
            ",".join(str(o) for o in pool.offsets),
            pool.client_id,
            str(self.delay_ms(ctx)),
        ]

    def after_run(self, result: dict[str, Any]) -> None:
        assert self.pool is not None
        cursors = result.get("cursors", [])
        if len(cursors) == len(self.pool.offsets) and all(c >= 0 for c in cursors):
            self.pool.offsets = list(cursors)

    def notes(self, runs: list[Measurement]) -> list[str]:
        assert self.pool is not None
        notes = []
        if self.pool.sample:
            notes.append(f"the first poll of a fresh code of the pool answered {self.pool.sample}")
        fastest = max((m.rps for m in runs), default=0.0)
        if fastest and self.check_interval:
            revisit = self.pool.count / fastest
            line = (
                f"each code was polled again after about {revisit:.1f} s "
                f"(pool {self.pool.count:,} / {fastest:,.0f} req/s; interval {POLL_INTERVAL} s)"
            )
            if revisit < POLL_INTERVAL * 1.2:
                line += (
                    " -- TOO SHORT: polls come faster than the interval; raise "
                    f"{'--peer-codes' if isinstance(self.target, NodePeerTarget) else '--codes'}"
                    f" to at least {int(fastest * POLL_INTERVAL * 2):,}"
                )
            notes.append(line)
        elif fastest:
            notes.append(
                f"{self.pool.count} codes polled {fastest / self.pool.count:,.0f} times a "
                "second each"
            )
        return notes

    def describe(self) -> dict[str, Any]:
        assert self.pool is not None
        return {
            **super().describe(),
            "codes": self.pool.count,
            "codes_created_per_second": round(self.pool.created_per_second, 1),
        }


@dataclass(eq=False)
class BearerScenario(Scenario):
    """GET with a bearer key of a :class:`KeyPool` (bearer.lua), each request another key."""

    keys: KeyPool | None = None

    def prepare(self, ctx: Context) -> None:
        assert self.keys is not None
        self.keys.ensure(ctx)

    def wrk_args(self, ctx: Context) -> list[str]:
        assert self.keys is not None and self.keys.file is not None
        return [str(self.keys.file), str(ctx.options.threads)]

    def notes(self, runs: list[Measurement]) -> list[str]:
        assert self.keys is not None
        return [
            f"{self.keys.count} distinct keys of {min(self.keys.users, self.keys.count)} users; "
            f"sample answer: {self.keys.sample}"
        ]


@dataclass(eq=False)
class PurgeScenario(PollScenario):
    """``devicelink purge`` run while the token poll of pending codes goes on: wrk polls
    (as pg-poll, same pool), the purge starts one second later, and wrk is stopped one
    second after the purge has exited. The row shows the polls of the whole wrk run; its
    max is the longest any poll waited, the purge's stall."""

    reference: str = ""  # the same poll without a purge, for comparison in the notes
    purge_seconds: float = 0.0
    purge_exit: int | None = None
    purge_output: str = ""
    rows_before: dict[str, int] = field(default_factory=dict)
    rows_after: dict[str, int] = field(default_factory=dict)

    def prepare(self, ctx: Context) -> None:
        assert isinstance(self.target, DevicelinkTarget)
        devicelink = venv_command("devicelink")
        helped = subprocess.run(  # noqa: S603
            [devicelink, "purge", "--help"], capture_output=True, text=True, cwd=ctx.workdir,
            env=devicelink_env(self.target.database_url, public_url="", ctx=ctx),
        )  # fmt: skip
        if helped.returncode != 0:
            self.skipped = "`devicelink purge` is not in the installed package (yet)"
            log(f"{self.id}: skipped: {self.skipped}")
            ctx.notes.append(f"{self.id}: skipped: {self.skipped}")
            return
        super().prepare(ctx)

    def measure(self, ctx: Context) -> Measurement:
        target = self.target
        assert isinstance(target, DevicelinkTarget)
        self.rows_before = _table_counts(target)
        log(f"{self.id}: before the purge: {self.rows_before}")
        options = ctx.options
        purge_command = [venv_command("devicelink"), "purge", *shlex.split(options.purge_args)]
        wrk = subprocess.Popen(  # noqa: S603
            wrk_command(ctx, self, options.purge_timeout + 60),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(ctx.settle / 2)
            log(f"{self.id}: {shlex.join(purge_command[1:])} while polls go on")
            started = time.monotonic()
            purge_log = ctx.workdir / f"{self.id}.log"
            with purge_log.open("wb") as out:
                purge = subprocess.Popen(  # noqa: S603
                    purge_command,
                    env=devicelink_env(target.database_url, public_url=target.base_url, ctx=ctx),
                    cwd=ctx.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            try:
                self.purge_exit = purge.wait(timeout=options.purge_timeout)
            except subprocess.TimeoutExpired:
                purge.kill()
                purge.wait()
                self.purge_exit = None
            self.purge_seconds = time.monotonic() - started
            self.purge_output = purge_log.read_text(errors="replace").strip()
            time.sleep(ctx.settle / 2)
        finally:
            if wrk.poll() is None:
                wrk.send_signal(signal.SIGINT)  # wrk stops and still reports (done())
            stdout, stderr = wrk.communicate(timeout=60)
        result = parse_wrk(stdout, stderr, self.id, wrk.returncode)
        self.after_run(result)
        self.rows_after = _table_counts(target)
        log(
            f"{self.id}: purge exited {self.purge_exit} after {self.purge_seconds:.1f} s; "
            f"after: {self.rows_after}"
        )
        if self.purge_exit != 0:
            raise BenchError(
                "devicelink purge "
                + ("timed out" if self.purge_exit is None else f"exited {self.purge_exit}")
                + f":\n{self.purge_output[-2000:]}"
            )
        return Measurement.from_wrk(self.id, 1, result)

    def notes(self, runs: list[Measurement]) -> list[str]:
        if self.skipped:
            return []
        deleted = {
            k: self.rows_before.get(k, 0) - self.rows_after.get(k, 0) for k in self.rows_before
        }
        output = " | ".join(line.strip() for line in self.purge_output.splitlines() if line.strip())
        return [
            f"purge took {self.purge_seconds:.1f} s (exit {self.purge_exit}); rows before "
            f"{self.rows_before}, after {self.rows_after} (deleted {deleted})",
            f"purge output: {output[:400]}",
        ]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "purge_seconds": self.purge_seconds,
            "purge_exit": self.purge_exit,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
        }


def _table_counts(target: DevicelinkTarget) -> dict[str, int]:
    tables = ("device_authorizations", "api_keys")
    if target.backend == "postgres":
        return {
            t: int(asyncio.run(_pg_fetchval(target.database_url, f"SELECT count(*) FROM {t}")))
            for t in tables
        }
    path = seeding.sqlite_path(target.database_url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}


@dataclass(eq=False)
class MemoryScenario(Scenario):
    """Resident memory of a fresh ``devicelink serve`` before and after ``flows`` whole
    flows (flows.lua: a device authorization, then a poll of its code), driven by wrk as
    fast as the server answers. "Before" is taken after a warm-up of a few thousand flows
    (pools filled, code paths imported and cached), "after" two seconds after the last."""

    flows: int = 100_000
    warm_flows: int = 2_000
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    flows_answered: int = 0

    def prepare(self, ctx: Context) -> None:
        if self.warm_flows:
            log(f"{self.id}: warm-up of {self.warm_flows:,} flows")
            result = run_flows(ctx, self, self.warm_flows)
            if result["answers"].get("200", 0) < self.warm_flows:
                raise BenchError(f"{self.id}: warm-up flows answered {result['answers']}")
        time.sleep(ctx.settle)
        self.rss_before_mb = rss_mb(self.target.pid)
        log(f"{self.id}: RSS {self.rss_before_mb:.1f} MB before")

    def measure(self, ctx: Context) -> Measurement:
        log(f"{self.id}: {self.flows:,} flows")
        result = run_flows(ctx, self, self.flows)
        self.flows_answered = int(result["answers"].get("200", 0))
        time.sleep(ctx.settle)
        self.rss_after_mb = rss_mb(self.target.pid)
        log(
            f"{self.id}: RSS {self.rss_after_mb:.1f} MB after {self.flows_answered:,} flows "
            f"({self.rss_after_mb - self.rss_before_mb:+.1f} MB)"
        )
        return Measurement.from_wrk(self.id, 1, result)

    @property
    def delta_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb

    def notes(self, runs: list[Measurement]) -> list[str]:
        if not runs:
            return []
        m = runs[0]
        return [
            f"RSS {self.rss_before_mb:.1f} MB before, {self.rss_after_mb:.1f} MB after "
            f"{self.flows_answered:,} flows ({self.delta_mb:+.1f} MB); {m.requests:,} requests "
            f"in {m.duration_s:.1f} s ({self.flows_answered / m.duration_s:,.0f} flows/s)"
        ]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "flows": self.flows,
            "flows_answered": self.flows_answered,
            "rss_before_mb": self.rss_before_mb,
            "rss_after_mb": self.rss_after_mb,
        }


# --- running wrk ---------------------------------------------------------------------


@dataclass
class Measurement:
    scenario: str
    run: int  # 0 for the warm-up
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    socket_errors: dict[str, int]
    non_2xx_3xx: int
    answers: dict[str, int]

    @classmethod
    def from_wrk(cls, scenario: str, run: int, result: dict[str, Any]) -> Measurement:
        latency = result["latency_us"]
        errors = dict(result["errors"])
        duration_s = result["duration_us"] / 1e6
        return cls(
            scenario=scenario,
            run=run,
            duration_s=duration_s,
            requests=result["requests"],
            rps=result["requests"] / duration_s if duration_s else 0.0,
            p50_ms=latency["p50"] / 1000,
            p90_ms=latency["p90"] / 1000,
            p99_ms=latency["p99"] / 1000,
            p999_ms=latency["p99.9"] / 1000,
            max_ms=latency["max"] / 1000,
            socket_errors={k: v for k, v in errors.items() if k != "status"},
            non_2xx_3xx=errors["status"],
            answers=dict(result.get("answers", {})),
        )


def wrk_seconds(seconds: float) -> str:
    """wrk takes whole seconds only ("2.5s" is a usage error)."""
    return f"{max(1, math.ceil(seconds))}s"


def wrk_command(
    ctx: Context, scenario: Scenario, seconds: float, url: str | None = None
) -> list[str]:
    options = ctx.options
    return pinned(options.wrk_cpus, [
        "wrk", "-t", str(options.threads), "-c", str(options.connections),
        "-d", wrk_seconds(seconds), "--timeout", wrk_seconds(options.timeout),
        "-s", str(LUA_DIR / scenario.script),
        url or scenario.target.base_url + scenario.path, "--", *scenario.wrk_args(ctx),
    ])  # fmt: skip


def parse_wrk(stdout: str, stderr: str, name: str, returncode: int | None) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return json.loads(line[len("WRK_RESULT ") :])  # type: ignore[no-any-return]
    raise BenchError(f"wrk gave no result for {name} (exit {returncode}):\n{stdout}\n{stderr}")


def run_wrk(ctx: Context, scenario: Scenario, seconds: float) -> dict[str, Any]:
    command = wrk_command(ctx, scenario, seconds)
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=seconds + 120
    )
    return parse_wrk(done.stdout, done.stderr, scenario.id, done.returncode)


def create_codes(
    ctx: Context, name: str, url: str, client_id: str, count: int
) -> list[tuple[str, str]]:
    """``count`` (device_code, user_code) pairs from the device authorization endpoint
    at ``url``, created by wrk with authorize_many.lua (setup, not measured)."""
    out = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.workdir))
    options = ctx.options
    threads = max(1, min(options.threads, count))
    connections = max(threads, min(options.connections, count))
    budget = max(120.0, count / 20)  # at worst 20 a second
    command = pinned(options.wrk_cpus, [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", wrk_seconds(budget + 60),
        "--timeout", "30s", "-s", str(LUA_DIR / "authorize_many.lua"), url, "--",
        client_id, str(count), str(threads), str(out),
    ])  # fmt: skip
    result = _run_until_markers(command, out, "done-*", threads, budget, name)
    pairs: list[tuple[str, str]] = []
    for path in sorted(out.glob("codes-*")):
        for line in path.read_text().splitlines():
            device_code, _, user_code = line.partition(" ")
            if device_code and user_code:
                pairs.append((device_code, user_code))
    if len(pairs) < count:
        raise BenchError(
            f"{name}: POST {url} gave {len(pairs):,} device codes of {count:,}; "
            f"answers: {result.get('answers')}, errors: {result.get('errors')}"
        )
    return pairs[:count]


def _run_until_markers(
    command: list[str], directory: Path, pattern: str, count: int, budget: float, name: str
) -> dict[str, Any]:
    """Run wrk until ``count`` files matching ``pattern`` are in ``directory`` (each
    thread writes one when it has done its share), then stop it with SIGINT, on which
    wrk still runs done(); its result."""
    wrk = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + budget
    try:
        while time.monotonic() < deadline and wrk.poll() is None:
            if len(list(directory.glob(pattern))) >= count:
                break
            time.sleep(0.05)
        else:
            if wrk.poll() is None:
                log(f"{name}: not done within {budget:.0f} s; stopping wrk")
    finally:
        if wrk.poll() is None:
            wrk.send_signal(signal.SIGINT)
        stdout, stderr = wrk.communicate(timeout=60)
    return parse_wrk(stdout, stderr, name, wrk.returncode)


def run_flows(ctx: Context, scenario: MemoryScenario, flows: int) -> dict[str, Any]:
    """flows.lua until every thread has written its marker file, then SIGINT."""
    markers = Path(tempfile.mkdtemp(prefix="flows-", dir=ctx.workdir))
    options = ctx.options
    budget = max(120.0, flows / 50)  # at worst 50 flows a second
    command = pinned(options.wrk_cpus, [
        "wrk", "-t", str(options.threads), "-c", str(options.connections),
        "-d", wrk_seconds(budget + 60), "--timeout", wrk_seconds(options.timeout),
        "-s", str(LUA_DIR / "flows.lua"), scenario.target.base_url + "/", "--",
        "/oauth/device/authorize", "/oauth/device/token", CLIENT_ID, str(flows),
        str(options.threads), str(markers),
    ])  # fmt: skip
    return _run_until_markers(
        command, markers, "flows-done-*", options.threads, budget, scenario.id
    )


# --- the plan ------------------------------------------------------------------------


@dataclass
class Context:
    options: argparse.Namespace
    workdir: Path
    secret_key: str
    cleanups: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seed_reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def settle(self) -> float:
        """Seconds to let a server settle before reading its memory (the purge scenario
        polls half of that before and after the purge)."""
        return 0.6 if self.options.smoke else 2.0


@dataclass
class Phase:
    """Scenarios measured together: warm-ups, then runs in turns ("wrk"), or each
    measured once by its own ``measure()`` ("special": purge, memory). ``before`` runs
    first (seeding old rows); ``stop_after`` are targets stopped when the phase ends."""

    name: str
    scenarios: list[Scenario]
    kind: str = "wrk"
    before: Callable[[Context], None] | None = None
    stop_after: list[Target] = field(default_factory=list)


def devicelink_scenarios(
    target: DevicelinkTarget,
    *,
    prefix: str,
    label: str,
    suffix: str,
    poll_pool: CodePool,
    slow_pool: CodePool,
    keys: KeyPool,
) -> list[Scenario]:
    return [
        FormScenario(f"{prefix}-authorize{suffix}", f"device authorization [{label}]", target,
                     "/oauth/device/authorize", "post_form_classified.lua", expect=("200",),
                     body=f"client_id={CLIENT_ID}"),
        PollScenario(f"{prefix}-poll{suffix}", f"token poll, pending [{label}]", target,
                     "/oauth/device/token", "poll.lua", expect=(PENDING,), pool=poll_pool),
        PollScenario(f"{prefix}-slow-down{suffix}", f"token poll, slow_down [{label}]", target,
                     "/oauth/device/token", "poll.lua", expect=(SLOW_DOWN,), pool=slow_pool,
                     check_interval=False),
        BearerScenario(f"{prefix}-me{suffix}", f"GET /api/me, valid key [{label}]", target,
                       "/api/me", "bearer.lua", expect=("200",), method="GET", keys=keys),
    ]  # fmt: skip


def build_plan(options: argparse.Namespace) -> list[Phase]:
    """Every scenario, in the order of the table. Targets and pools are shared."""
    asgi = UvicornTarget("asgi", "bare ASGI app on uvicorn", app="bare_app:asgi_app")
    fastapi = UvicornTarget("fastapi", "FastAPI app on uvicorn", app="bare_app:fastapi_app")
    peer = NodePeerTarget("node", "node-oidc-provider (in-memory)")
    pg = DevicelinkPostgresTarget(
        "devicelink-pg", "devicelink serve, PostgreSQL", database=options.database
    )
    sqlite = DevicelinkSqliteTarget("devicelink-sqlite", "devicelink serve, SQLite")
    mem = DevicelinkPostgresTarget(
        "devicelink-pg-mem",
        "devicelink serve, PostgreSQL (memory)",
        database=f"{options.database}_mem",
    )
    peer_pool = CodePool(
        "node-codes", peer, options.peer_codes, "/device/auth", PEER_CLIENT_ID, token_path="/token"
    )

    def pools(target: DevicelinkTarget, prefix: str) -> dict[str, Any]:
        authorize = "/oauth/device/authorize"
        return {
            "poll_pool": CodePool(f"{prefix}-codes", target, options.codes, authorize, CLIENT_ID),
            "slow_pool": CodePool(
                f"{prefix}-slow-codes", target, options.slow_codes, authorize, CLIENT_ID
            ),
            "keys": KeyPool(f"{prefix}-keys", target, options.keys),
        }

    pg_pools, sqlite_pools = pools(pg, "pg"), pools(sqlite, "sqlite")
    levels = options.rows_list
    first = levels[0]

    def seed_to(rows: int, *targets: DevicelinkTarget) -> Callable[[Context], None]:
        def step(ctx: Context) -> None:
            for target in targets:
                if target.started:
                    target.seed_to(ctx, rows)

        return step

    base: list[Scenario] = [
        FormScenario("asgi", "bare ASGI, POST (ceiling)", asgi, "/", "post_form.lua",
                     body=SAMPLE_POLL_BODY),
        FormScenario("fastapi-form", "FastAPI Form(), POST (ceiling)", fastapi, "/form",
                     "post_form.lua", body=SAMPLE_POLL_BODY),
        FormScenario("node-authorize", "device authorization [node-oidc-provider]", peer,
                     "/device/auth", "post_form_classified.lua", expect=("200",),
                     body=f"client_id={PEER_CLIENT_ID}"),
        PollScenario("node-poll", "token poll, pending [node-oidc-provider]", peer, "/token",
                     "poll.lua", expect=(PENDING,), pool=peer_pool),
        *devicelink_scenarios(pg, prefix="pg", label=f"postgres, {rows_label(first)} rows",
                              suffix="", **pg_pools),
        *devicelink_scenarios(sqlite, prefix="sqlite", label=f"sqlite, {rows_label(first)} rows",
                              suffix="", **sqlite_pools),
    ]  # fmt: skip
    phases = [Phase("base", base, before=seed_to(first, pg, sqlite))]
    for rows in levels[1:]:
        scenarios = devicelink_scenarios(
            pg,
            prefix="pg",
            label=f"postgres, {rows_label(rows)} rows",
            suffix=f"@{rows}",
            **pg_pools,
        )
        phases.append(Phase(f"{rows_label(rows)} rows", scenarios, before=seed_to(rows, pg)))
    purge = PurgeScenario(
        "pg-purge",
        f"token poll during purge of {rows_label(levels[-1])} rows [postgres]",
        pg, "/oauth/device/token", "poll.lua", expect=(PENDING,), pool=pg_pools["poll_pool"],
        reference="pg-poll" if len(levels) == 1 else f"pg-poll@{levels[-1]}",
    )  # fmt: skip
    # If only the purge runs (--only pg-purge), there is still something to purge.
    phases.append(Phase("purge", [purge], kind="special", before=seed_to(levels[-1], pg)))
    memory = MemoryScenario(
        "pg-memory",
        f"memory: {options.memory_flows:,} flows [postgres]",
        mem, "/oauth/device/authorize", "flows.lua",
        expect=("200", PENDING, SLOW_DOWN), flows=options.memory_flows,
        warm_flows=min(2000, max(100, options.memory_flows // 20)),
    )  # fmt: skip
    if options.memory_flows > 0:
        phases.append(Phase("memory", [memory], kind="special", stop_after=[mem]))
    return phases


# --- report --------------------------------------------------------------------------


@dataclass
class Summary:
    scenario: Scenario
    runs: list[Measurement]

    @property
    def rps(self) -> float:
        return statistics.median(m.rps for m in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(m.p50_ms for m in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(m.p99_ms for m in self.runs)

    @property
    def max(self) -> float:
        return max(m.max_ms for m in self.runs)

    @property
    def requests(self) -> int:
        return sum(m.requests for m in self.runs)

    @property
    def answers(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for m in self.runs:
            for key, count in m.answers.items():
                total[key] = total.get(key, 0) + count
        return total

    @property
    def socket_errors(self) -> int:
        return sum(sum(m.socket_errors.values()) for m in self.runs)

    def expected_fraction(self) -> float:
        """Share of responses that were an expected answer."""
        if not self.requests:
            return 0.0
        if not self.scenario.expect:
            return 1 - sum(m.non_2xx_3xx for m in self.runs) / self.requests
        answers = self.answers
        return sum(answers.get(e, 0) for e in self.scenario.expect) / self.requests

    def ok(self) -> bool:
        return bool(self.runs) and self.expected_fraction() >= 0.999 and not self.socket_errors

    def check(self) -> str:
        if self.scenario.skipped:
            return f"skipped: {self.scenario.skipped}"
        fraction = self.expected_fraction()
        label = (
            "|".join(
                e.replace("400 authorization_pending", "400 pending")
                if len(self.scenario.expect) > 1
                else e
                for e in self.scenario.expect
            )
            or "2xx"
        )
        text = f"{label} {100 * fraction:.2f}%"
        if self.socket_errors:
            text += f", {self.socket_errors} socket errors"
        if not self.ok():
            text = "BAD: " + text
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.describe(),
            "median": (
                {"rps": self.rps, "p50_ms": self.p50, "p99_ms": self.p99, "max_ms": self.max}
                if self.runs
                else None
            ),
            "expected_fraction": self.expected_fraction() if self.runs else None,
            "answers": self.answers,
            "runs": [vars(m) for m in self.runs],
        }


def answer_mix(summary: Summary) -> str:
    answers = summary.answers
    total = sum(answers.values()) or 1
    ranked = sorted(answers.items(), key=lambda kv: -kv[1])
    parts = [f"{k} {100 * v / total:.2f}%" for k, v in ranked]
    return ", ".join(parts) + f" of {total:,} responses"


@dataclass
class Goal:
    """One performance target: the figure it is stated in, and whether it is met."""

    attach: str | None  # id of the scenario whose row shows it
    label: str
    value: float | None = None
    shown: str = "n/a"
    met: bool | None = None  # None: not measured
    why: str = ""

    @property
    def verdict(self) -> str:
        if self.met is None:
            return f"n/a: {self.why}" if self.why else "n/a"
        return "met" if self.met else "MISSED"

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.attach,
            "target": self.label,
            "value": self.value,
            "shown": self.shown,
            "met": self.met,
            "why": self.why,
        }


def evaluate_goals(summaries: list[Summary], options: argparse.Namespace) -> list[Goal]:
    by_id = {s.scenario.id: s for s in summaries}
    goals: list[Goal] = []

    def usable(scenario_id: str) -> tuple[Summary | None, str]:
        s = by_id.get(scenario_id)
        if s is None:
            return None, f"{scenario_id} not run"
        if s.scenario.skipped:
            return None, f"{scenario_id} skipped"
        if not s.ok():
            return None, f"{scenario_id} got unexpected answers"
        return s, ""

    def ratio(attach: str, other: str, label: str, test: Callable[[float], bool]) -> None:
        a, why_a = usable(attach)
        b, why_b = usable(other)
        if by_id.get(attach) is None:
            return
        if a is None or b is None or not b.rps:
            goals.append(Goal(attach, label, why=why_a or why_b))
            return
        value = a.rps / b.rps
        goals.append(Goal(attach, label, value, f"{value:.2f}", test(value)))

    ratio("pg-poll", "node-poll", f"req/s >= {TARGET_POLL_VS_PEER:.2f} x node pending poll",
          lambda v: v >= TARGET_POLL_VS_PEER)  # fmt: skip
    poll, why = usable("pg-poll")
    if "pg-poll" in by_id:
        goals.append(
            Goal("pg-poll", f"p99 < {TARGET_POLL_P99_MS:g} ms", poll.p99, f"{poll.p99:.2f} ms",
                 poll.p99 < TARGET_POLL_P99_MS)
            if poll else Goal("pg-poll", f"p99 < {TARGET_POLL_P99_MS:g} ms", why=why)
        )  # fmt: skip
    ratio("pg-authorize", "node-authorize",
          f"req/s >= {TARGET_AUTHORIZE_VS_PEER:.2f} x node device authorization",
          lambda v: v >= TARGET_AUTHORIZE_VS_PEER)  # fmt: skip
    ratio("pg-me", "asgi", f"req/s >= {TARGET_ME_VS_ASGI:.2f} x bare ASGI",
          lambda v: v >= TARGET_ME_VS_ASGI)  # fmt: skip
    levels = options.rows_list
    if len(levels) > 1:
        for rows in levels[1:]:
            for name in ("poll", "authorize", "me"):
                ratio(
                    f"pg-{name}@{rows}", f"pg-{name}",
                    f"req/s within ±{TARGET_ROWS_TOLERANCE:.0%} of {rows_label(levels[0])} rows",
                    lambda v: abs(v - 1) <= TARGET_ROWS_TOLERANCE,
                )  # fmt: skip
    elif any(s.scenario.id.startswith("pg-") for s in summaries):
        goals.append(
            Goal(None, f"{rows_label(10**6)} rows vs {rows_label(levels[0])}: req/s within "
                 f"±{TARGET_ROWS_TOLERANCE:.0%}", why=f"not run; add --rows {levels[0]},1000000")
        )  # fmt: skip
    if "pg-purge" in by_id:
        purge, why = usable("pg-purge")
        label = f"purge stall: max < {TARGET_PURGE_STALL_MS:g} ms"
        goals.append(
            Goal("pg-purge", label, purge.max, f"{purge.max:.1f} ms",
                 purge.max < TARGET_PURGE_STALL_MS)
            if purge else Goal("pg-purge", label, why=why)
        )  # fmt: skip
    if "pg-memory" in by_id:
        memory, why = usable("pg-memory")
        label = f"RSS delta < {TARGET_MEMORY_DELTA_MB:g} MB"
        scenario = by_id["pg-memory"].scenario
        assert isinstance(scenario, MemoryScenario)
        goals.append(
            Goal("pg-memory", label, scenario.delta_mb, f"{scenario.delta_mb:+.1f} MB",
                 scenario.delta_mb < TARGET_MEMORY_DELTA_MB)
            if memory else Goal("pg-memory", label, why=why)
        )  # fmt: skip
    if options.smoke:
        for goal in goals:
            goal.met, goal.why = None, "smoke run"
    return goals


def print_table(summaries: list[Summary], goals: list[Goal]) -> None:
    base = next((s for s in summaries if s.scenario.id == BASELINE and s.runs), None)
    headers = [
        "scenario", "req/s", "×form", "p50 ms", "p99 ms", "max ms", "answers as expected",
        "target", "value", "verdict",
    ]  # fmt: skip
    numeric = {1, 2, 3, 4, 5, 8}

    def goal_cells(goal: Goal | None) -> list[str]:
        if goal is None:
            return ["", "", ""]
        return [goal.label, goal.shown, goal.verdict]

    rows: list[list[str]] = []
    for s in summaries:
        attached = [g for g in goals if g.attach == s.scenario.id]
        if s.runs:
            cells = [
                s.scenario.title,
                f"{s.rps:,.0f}",
                f"{s.rps / base.rps:.2f}" if base else "-",
                f"{s.p50:.2f}",
                f"{s.p99:.2f}",
                f"{s.max:.1f}",
                s.check(),
            ]
        else:
            cells = [s.scenario.title, "-", "-", "-", "-", "-", s.check()]
        rows.append(cells + goal_cells(attached[0] if attached else None))
        for goal in attached[1:]:
            rows.append([""] * 7 + goal_cells(goal))
    for goal in (g for g in goals if g.attach is None):
        rows.append(
            ["(" + goal.label.split(":")[0] + ")", "", "", "", "", "", "not run"] + goal_cells(goal)
        )
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def environment(options: argparse.Namespace, targets: list[Target]) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args],  # noqa: S603, S607
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    cpu = ""
    with contextlib.suppress(OSError):
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                cpu = text_line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)  # noqa: S603, S607
    postgres = next(
        (
            t.database_version
            for t in targets
            if isinstance(t, DevicelinkPostgresTarget) and t.database_version
        ),
        None,
    )
    peer = next((t for t in targets if isinstance(t, NodePeerTarget)), None)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "sqlite": sqlite3.sqlite_version,
        "node": peer.node_version if peer else None,
        "oidc_provider": peer.provider_version if peer else None,
        "wrk": ((wrk_version.stdout or wrk_version.stderr).splitlines() or [""])[0],
        "packages": {
            name: version(name)
            for name in (
                "devicelink",
                "fastapi",
                "starlette",
                "uvicorn",
                "uvloop",
                "httptools",
                "sqlalchemy",
                "asyncpg",
                "aiosqlite",
                "limits",
            )  # fmt: skip
        },
        "targets": [t.describe() for t in targets],
        "options": {
            k: (_mask_password(v) if k == "postgres" else v)
            for k, v in vars(options).items()
            if k not in ("json", "list")
        },
    }


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# --- main ----------------------------------------------------------------------------


def add_database_and_output_options(
    parser: argparse.ArgumentParser,
    *,
    database: str,
    database_help: str,
    keep_database_help: str,
    results_name: str,
    workdir_help: str,
) -> None:
    """The options this script and soak.py share: PostgreSQL, the server's start limit,
    the JSON results and the work directory."""
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DEVICELINK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL of the PostgreSQL server [env: DEVICELINK_BENCH_POSTGRES]",
    )
    parser.add_argument("--database", default=database, help=database_help)
    parser.add_argument("--keep-database", action="store_true", help=keep_database_help)
    parser.add_argument(
        "--start-rate-limit",
        default="1000000/second",
        help="DEVICELINK_START_RATE_LIMIT for the server (1000000/second)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help=f"also write the results as JSON (default path: bench/results/{results_name})",
    )
    parser.add_argument("--keep-workdir", action="store_true", help=workdir_help)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark devicelink (PostgreSQL and SQLite) beside bare uvicorn/FastAPI "
        "ceilings and node-oidc-provider (run by hand; see bench/README.md).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every scenario for about a second with tiny pools; exit 1 on any "
        "unexpected answer (for CI; the figures mean nothing)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (10)")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per scenario; median shown (3)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of unmeasured load per scenario and phase first (3)",
    )
    parser.add_argument("--connections", type=int, default=None, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=None, help="wrk threads (2)")
    parser.add_argument("--timeout", type=float, default=5, help="wrk socket timeout, s (5)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of servers (0)")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list of wrk (1)")
    parser.add_argument(
        "--codes",
        type=int,
        default=None,
        help="pending device codes each devicelink token poll cycles through (20000)",
    )
    parser.add_argument(
        "--peer-codes",
        type=int,
        default=None,
        help="pending device codes of the node-oidc-provider poll (30000)",
    )
    parser.add_argument(
        "--slow-codes",
        type=int,
        default=None,
        help="codes the slow_down scenario re-polls as fast as possible (16)",
    )
    parser.add_argument(
        "--keys", type=int, default=None, help="API keys /api/me cycles through (200)"
    )
    parser.add_argument(
        "--rows",
        default="1000",
        help="comma-separated numbers of old rows seeded into device_authorizations "
        "and api_keys; the PostgreSQL scenarios run once per number (1000; try "
        "1000,1000000)",
    )
    parser.add_argument(
        "--memory-flows",
        type=int,
        default=None,
        help="flows of the memory scenario, 0 to skip it (100000)",
    )
    parser.add_argument(
        "--purge-args",
        default="",
        help="extra arguments of `devicelink purge` in the purge scenario",
    )
    parser.add_argument(
        "--purge-timeout",
        type=float,
        default=900,
        help="seconds the purge may take before it is killed (900)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip node-oidc-provider")
    parser.add_argument(
        "--only", default="", help="comma-separated scenario ids or globs ('pg-*'); see --list"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    add_database_and_output_options(
        parser,
        database="devicelink_bench",
        database_help="database to (re)create for the run; the memory scenario uses "
        "<database>_mem (devicelink_bench)",
        keep_database_help="do not drop the databases afterwards",
        results_name="<time>.json",
        workdir_help="keep the temporary directory (server logs, codes and keys files, "
        "SQLite file)",
    )
    options = parser.parse_args(argv)
    defaults = {
        "duration": 10.0,
        "runs": 3,
        "warmup": 3.0,
        "connections": 32,
        "threads": 2,
        "codes": 20_000,
        "peer_codes": 30_000,
        "slow_codes": 16,
        "keys": 200,
        "memory_flows": 100_000,
    }
    if options.smoke:
        defaults.update(SMOKE_DEFAULTS)
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    try:
        options.rows_list = sorted(
            {int(x.replace("_", "")) for x in options.rows.split(",") if x.strip()}
        )
    except ValueError:
        parser.error("--rows takes comma-separated integers, e.g. 1000,1000000")
    if not options.rows_list or options.rows_list[0] < 1:
        parser.error("--rows must list positive numbers")
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads")
    if options.runs < 1 or options.duration <= 0:
        parser.error("--runs and --duration must be positive")
    if min(options.codes, options.peer_codes, options.slow_codes, options.keys) < options.threads:
        parser.error("--codes, --peer-codes, --slow-codes and --keys must be at least --threads")
    return options


def select(phases: list[Phase], only: str) -> tuple[list[Phase], set[str]]:
    """The phases with only the scenarios matching ``only`` (ids or globs), and the
    patterns that matched nothing."""
    patterns = [x.strip() for x in only.split(",") if x.strip()]
    if not patterns:
        return phases, set()
    unmatched = {
        p
        for p in patterns
        if not any(fnmatch.fnmatchcase(s.id, p) for ph in phases for s in ph.scenarios)
    }
    kept = []
    for phase in phases:
        scenarios = [
            s for s in phase.scenarios if any(fnmatch.fnmatchcase(s.id, p) for p in patterns)
        ]
        if scenarios:
            kept.append(Phase(phase.name, scenarios, phase.kind, phase.before, phase.stop_after))
    return kept, unmatched


def run_phase(ctx: Context, phase: Phase) -> list[Summary]:
    options = ctx.options
    # Start the servers of the phase side by side (each waits for its own readiness).
    targets: list[Target] = []
    for scenario in phase.scenarios:
        if not any(t is scenario.target for t in targets):
            targets.append(scenario.target)
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for future in [pool.submit(t.ensure_started, ctx) for t in targets]:
            future.result()
    if phase.before is not None:
        phase.before(ctx)
    live: list[Scenario] = []
    for scenario in phase.scenarios:
        if scenario.target.skipped:
            scenario.skipped = scenario.target.skipped
        if not scenario.skipped:
            scenario.prepare(ctx)
        if not scenario.skipped:
            live.append(scenario)
    runs: dict[str, list[Measurement]] = {s.id: [] for s in phase.scenarios}
    if phase.kind == "special":
        for scenario in live:
            measured = scenario.measure(ctx)  # type: ignore[attr-defined]
            runs[scenario.id].append(measured)
            log(
                f"{scenario.id}: {measured.rps:,.0f} req/s, p50 {measured.p50_ms:.2f} ms, "
                f"p99 {measured.p99_ms:.2f} ms, max {measured.max_ms:.1f} ms"
            )
    else:
        if options.warmup > 0:
            for scenario in live:
                log(f"warm-up {scenario.id} ({options.warmup:g} s)")
                scenario.before_run(ctx)
                scenario.after_run(run_wrk(ctx, scenario, options.warmup))
        pids = [t.process.popen.pid for t in targets if t.process is not None]
        for run in range(1, options.runs + 1):
            for scenario in live:
                waited = wait_until_idle(pids)
                if waited > 1:
                    log(f"waited {waited:.1f} s for the servers to finish the last run's queue")
                scenario.before_run(ctx)
                result = run_wrk(ctx, scenario, options.duration)
                scenario.after_run(result)
                measured = Measurement.from_wrk(scenario.id, run, result)
                runs[scenario.id].append(measured)
                log(
                    f"run {run}/{options.runs} {scenario.id}: {measured.rps:,.0f} req/s, "
                    f"p50 {measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms"
                )
    for scenario in live:
        if not scenario.target.alive():
            assert scenario.target.process is not None
            tail = scenario.target.process.log_tail()
            raise BenchError(f"{scenario.target.title} died during the runs:\n{tail}")
    for target in phase.stop_after:
        target.stop(ctx)
    return [Summary(s, runs[s.id]) for s in phase.scenarios]


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    phases = build_plan(options)
    if options.list:
        for phase in phases:
            for s in phase.scenarios:
                print(f"{s.id:<22} {s.title}  ({s.target.title}, {s.method} {s.path})")
        return 0
    phases, unmatched = select(phases, options.only)
    if unmatched:
        print(f"unknown scenario(s): {', '.join(sorted(unmatched))}; see --list", file=sys.stderr)
        return 2
    try:
        check_tools(options)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="devicelink-bench-"))
    ctx = Context(options, workdir, secrets.token_urlsafe(36))
    targets: list[Target] = []
    for phase in phases:
        for scenario in phase.scenarios:
            if not any(t is scenario.target for t in targets):
                targets.append(scenario.target)
    load_before = os.getloadavg()
    if load_before[0] > 0.5 and not options.smoke:
        log(
            f"warning: load average {load_before[0]:.2f}: other work on this machine competes "
            "with the server, wrk and PostgreSQL, and the figures will be low and noisy"
        )
    started = time.monotonic()
    summaries: list[Summary] = []
    try:
        for phase in phases:
            log(f"--- phase: {phase.name}")
            summaries.extend(run_phase(ctx, phase))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for target in targets:
            target.stop(ctx)
        for cleanup in reversed(ctx.cleanups):
            cleanup()
        if options.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    load_after = os.getloadavg()
    env = environment(options, targets)
    goals = evaluate_goals(summaries, options)
    packages = env["packages"]
    dirty = ", dirty tree" if env["git_dirty"] else ""
    print()
    if options.smoke:
        print(
            "SMOKE RUN: every scenario for about a second with tiny pools; "
            "the figures mean nothing."
        )
    print(
        f"devicelink benchmark, {env['when']}, {elapsed / 60:.1f} min: {options.runs} run(s) of "
        f"{options.duration:g} s per scenario after {options.warmup:g} s of warm-up (median "
        f"shown), wrk {options.threads} threads / {options.connections} connections on CPU "
        f"{options.wrk_cpus or 'any'}, one server process on CPU {options.server_cpus or 'any'}"
    )
    print(
        f"machine: {env['cpus']} CPUs (nproc), {env['cpu']}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        f"versions: Python {env['python']}, uvicorn {packages['uvicorn']}, devicelink "
        f"{packages['devicelink']} (git {env['git_commit'][:10]}{dirty}), "
        f"PostgreSQL {env['postgresql'] or '-'}, SQLite {env['sqlite']}, "
        f"Node.js {env['node'] or '-'}, oidc-provider {env['oidc_provider'] or '-'}, {env['wrk']}"
    )
    print()
    print_table(summaries, goals)
    print()
    for s in summaries:
        if s.answers and not s.scenario.skipped:
            print(f"{s.scenario.id}: {answer_mix(s)}")
        for note in s.scenario.notes(s.runs) if s.runs else []:
            print(f"{s.scenario.id}: {note}")
        if len(s.runs) > 1:
            spread = ", ".join(f"{m.rps:,.0f}" for m in s.runs)
            print(f"{s.scenario.id}: req/s of each run: {spread}")
        if isinstance(s.scenario, PurgeScenario) and s.runs:
            ref = next((r for r in summaries if r.scenario.id == s.scenario.reference), None)
            if ref is not None and ref.runs:
                print(
                    f"{s.scenario.id}: for comparison, {ref.scenario.id} (same pool, no purge): "
                    f"{ref.rps:,.0f} req/s, p99 {ref.p99:.2f} ms, max {ref.max:.1f} ms; "
                    f"during the purge: {s.rps:,.0f} req/s, p99 {s.p99:.2f} ms, max {s.max:.1f} ms"
                )
    for note in ctx.notes:
        print(f"note: {note}")

    if options.json is not None:
        path = (
            Path(options.json)
            if options.json
            else (RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "environment": env,
            "load_average": {"before": load_before, "after": load_after},
            "baseline": BASELINE,
            "seeding": ctx.seed_reports,
            "results": [s.to_json() for s in summaries],
            "targets": [g.to_json() for g in goals],
            "notes": ctx.notes,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"\nwrote {path}")
    bad = [s.scenario.id for s in summaries if s.runs and not s.ok()]
    if bad:
        print(
            f"\nwarning: unexpected answers in {', '.join(bad)}: those figures do not measure "
            "what the table says",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
