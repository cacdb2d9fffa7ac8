"""Hand-run benchmark of devicelink's hot endpoints, beside bare ceilings.

    .venv/bin/python bench/run.py                       # 10 s x 3 runs, all scenarios
    .venv/bin/python bench/run.py --duration 5 --runs 1 # a quick look
    .venv/bin/python bench/run.py --only pg-poll,fastapi-form --json

Not a test and not for CI: it needs wrk, taskset, two or more CPUs and a PostgreSQL
server, and its figures only mean something on a quiet machine. See bench/README.md.

How it measures: every server under test is ONE process pinned to one CPU
(``taskset -c 0``); wrk runs pinned to another (``taskset -c 1``) with 32 connections and
2 threads; each scenario gets a warm-up, then ``--runs`` runs of ``--duration`` seconds,
taken in turns (run 1 of every scenario, then run 2, ...) so that a noisy moment hits all
of them alike; the table shows the median of the runs. Latency percentiles come from
wrk's own histogram through the Lua ``done()`` hook in bench/lua/common.lua.

Structure, for the scenarios to come (SQLite, /api/me, a node-oidc-provider peer, a
large table): a :class:`Target` is a server process (how to start it, what to prepare
before and clean after); a :class:`Scenario` is one request shape against a target (its
wrk script and arguments, the answer it expects, optional preparation). ``build_plan``
lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
RESULTS_DIR = BENCH_DIR / "results"

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ID = "devicelink-cli"  # the default public client `devicelink serve` creates
POLL_INTERVAL = 5  # seconds; the server's default DEVICELINK_INTERVAL
# A token-poll body of the same shape and size as the real ones (43-character code),
# for the ceilings, so every endpoint parses the same bytes.
SAMPLE_POLL_BODY = (
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
    f"&device_code={'A' * 43}&client_id={CLIENT_ID}"
)
BASELINE = "fastapi-form"  # the ratios column divides by this scenario's figures


class BenchError(Exception):
    """Something prevents a meaningful measurement; the message says what."""


# --- small helpers -------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


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
    return ["taskset", "-c", cpus, *command]


def check_tools(options: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise BenchError(
            "wrk is not installed. Install it (Debian/Ubuntu: `sudo apt-get install wrk`, "
            "macOS: `brew install wrk`) and run again."
        )
    if shutil.which("taskset") is None:
        raise BenchError("taskset is not installed (Debian/Ubuntu: package util-linux).")
    cpus = os.sched_getaffinity(0)
    wanted = {int(c) for part in (options.server_cpus, options.wrk_cpus) for c in _cpu_list(part)}
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
        time.sleep(0.2)
    raise BenchError(
        f"{process.name} did not answer {url} within {timeout:.0f} s:\n{process.log_tail()}"
    )


# --- targets: the servers under test -------------------------------------------------


@dataclass
class Target:
    """A server under test: one process, pinned to the server CPUs."""

    id: str
    title: str

    base_url: str = ""
    process: Process | None = None

    def start(self, ctx: Context) -> None:
        raise NotImplementedError

    def stop(self, ctx: Context) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title}


@dataclass
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


@dataclass
class DevicelinkPostgresTarget(Target):
    """``devicelink serve`` on a fresh PostgreSQL database, migrated by ``devicelink db
    upgrade``; the database is dropped afterwards unless --keep-database."""

    database_url: str = ""
    postgres_version: str = ""

    def start(self, ctx: Context) -> None:
        options = ctx.options
        admin = options.postgres.replace("postgresql+asyncpg://", "postgresql://")
        name = options.database
        self.postgres_version = asyncio.run(_pg_recreate(admin, name))
        self.database_url = f"{admin.rsplit('/', 1)[0]}/{name}"
        ctx.cleanups.append(lambda: self._drop(ctx))
        devicelink = venv_command("devicelink")
        env = devicelink_env(self.database_url, public_url="", ctx=ctx)
        log(f"{self.id}: created database {name}; devicelink db upgrade")
        upgraded = subprocess.run(  # noqa: S603
            [devicelink, "db", "upgrade"], env=env, cwd=ctx.workdir, capture_output=True, text=True
        )
        if upgraded.returncode != 0:
            raise BenchError(f"devicelink db upgrade failed:\n{upgraded.stdout}{upgraded.stderr}")
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = devicelink_env(self.database_url, public_url=self.base_url, ctx=ctx)
        command = [
            devicelink, "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = start_process(
            self.id,
            pinned(options.server_cpus, command),
            env=env,
            cwd=ctx.workdir,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/readyz")

    def _drop(self, ctx: Context) -> None:
        if ctx.options.keep_database:
            log(f"kept database {ctx.options.database} (--keep-database)")
            return
        with contextlib.suppress(Exception):
            asyncio.run(_pg_drop(ctx.options.postgres, ctx.options.database))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "postgres_version": self.postgres_version}


def devicelink_env(database_url: str, *, public_url: str, ctx: Context) -> dict[str, str]:
    # Nothing of the caller's own DEVICELINK_* configuration (a Redis URL, say) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(
        DEVICELINK_DATABASE_URL=database_url,
        DEVICELINK_SECRET_KEY=ctx.secret_key,
        DEVICELINK_DATA_DIR=str(ctx.workdir / "data"),
        # So that the per-IP limit on starting flows never answers 429 to the benchmark.
        DEVICELINK_START_RATE_LIMIT=ctx.options.start_rate_limit,
        # Long enough for the pre-created codes to outlive every run (the lifetime is a
        # timestamp in the row: it changes no work the server does per request).
        DEVICELINK_CODE_LIFETIME=str(ctx.code_lifetime),
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


# --- scenarios: one request shape against one target ----------------------------------


@dataclass
class Scenario:
    """One endpoint under wrk.

    ``expect`` is the answer every response should be, as counted by common.lua's
    response(): "200", or "400 authorization_pending". ``None`` means the script does not
    classify (cheaper for wrk) and wrk's non-2xx/3xx counter is the check.
    """

    id: str
    title: str
    target: Target
    path: str
    script: str
    expect: str | None = None

    def prepare(self, ctx: Context) -> None:
        """Work before the first (warm-up) run; not measured."""

    def wrk_args(self) -> list[str]:
        return []

    def after_run(self, result: dict[str, Any]) -> None:
        """Called with every wrk result, warm-up included."""

    def notes(self, runs: list[Measurement]) -> list[str]:
        return []

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "target": self.target.id,
            "path": self.path,
            "script": self.script,
            "expect": self.expect,
        }


@dataclass
class FormScenario(Scenario):
    """POST one fixed form body (post_form.lua, or post_form_classified.lua with expect)."""

    body: str = ""

    def wrk_args(self) -> list[str]:
        return [self.body]


@dataclass
class PollScenario(Scenario):
    """The token poll of pending codes: ``codes`` distinct device codes, created through
    POST /oauth/device/authorize before the runs, walked round-robin by poll.lua so that
    each is polled again only after all the others (see the check in notes())."""

    codes: int = 20_000
    concurrency: int = 32
    codes_file: Path | None = None
    offsets: list[int] = field(default_factory=list)
    created_per_second: float = 0.0
    sample: str = ""

    def prepare(self, ctx: Context) -> None:
        self.codes_file = ctx.workdir / f"{self.id}-device-codes.txt"
        log(f"{self.id}: creating {self.codes:,} pending device codes (setup, not measured)")
        started = time.monotonic()
        codes = asyncio.run(
            _create_device_codes(self.target.base_url, self.codes + 1, self.concurrency)
        )
        elapsed = time.monotonic() - started
        self.created_per_second = len(codes) / elapsed
        log(
            f"{self.id}: created {len(codes):,} codes in {elapsed:.1f} s "
            f"({self.created_per_second:,.0f}/s with {self.concurrency} concurrent httpx requests)"
        )
        # One code the pool does not use shows a real answer, body and all.
        self.sample = _sample_poll(self.target.base_url + self.path, codes.pop())
        log(f"{self.id}: a poll of a fresh pending code answers {self.sample}")
        self.codes_file.write_text("\n".join(codes) + "\n")
        self.offsets = [0] * ctx.options.threads

    def wrk_args(self) -> list[str]:
        assert self.codes_file is not None
        return [
            str(self.codes_file),
            str(len(self.offsets)),
            ",".join(str(o) for o in self.offsets),
            CLIENT_ID,
        ]

    def after_run(self, result: dict[str, Any]) -> None:
        cursors = result.get("cursors", [])
        if len(cursors) == len(self.offsets) and all(c >= 0 for c in cursors):
            self.offsets = list(cursors)

    def notes(self, runs: list[Measurement]) -> list[str]:
        notes = []
        if self.sample:
            notes.append(f"sample answer to one poll: {self.sample}")
        fastest = max((m.rps for m in runs), default=0.0)
        if fastest:
            revisit = self.codes / fastest
            line = (
                f"each code was polled again after about {revisit:.1f} s "
                f"(pool {self.codes:,} / {fastest:,.0f} req/s; interval {POLL_INTERVAL} s)"
            )
            if revisit < POLL_INTERVAL * 1.2:
                line += (
                    " -- TOO SHORT: the server answers slow_down; raise --codes to at "
                    f"least {int(fastest * POLL_INTERVAL * 2):,}"
                )
            notes.append(line)
        return notes

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "codes": self.codes,
            "codes_created_per_second": round(self.created_per_second, 1),
        }


async def _create_device_codes(base_url: str, count: int, concurrency: int) -> list[str]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    codes: list[str] = []
    next_report = 5000
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

        async def one() -> None:
            nonlocal next_report
            async with semaphore:
                for attempt in range(5):
                    try:
                        response = await http.post(
                            "/oauth/device/authorize", data={"client_id": CLIENT_ID}
                        )
                        break
                    except httpx.TransportError:
                        # A keep-alive connection closed by the server as it was reused;
                        # this is setup, so try again.
                        if attempt == 4:
                            raise
            if response.status_code != 200:
                raise BenchError(
                    f"POST /oauth/device/authorize answered {response.status_code}: "
                    f"{response.text[:300]}"
                )
            codes.append(response.json()["device_code"])
            if len(codes) >= next_report:
                log(f"  {len(codes):,} / {count:,}")
                next_report += 5000

        await asyncio.gather(*(one() for _ in range(count)))
    return codes


def _sample_poll(url: str, device_code: str) -> str:
    import httpx

    response = httpx.post(
        url,
        data={"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": CLIENT_ID},
    )
    return f"{response.status_code} {response.text.strip()}"


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


def run_wrk(ctx: Context, scenario: Scenario, seconds: float) -> dict[str, Any]:
    options = ctx.options
    command = pinned(options.wrk_cpus, [
        "wrk", "-t", str(options.threads), "-c", str(options.connections),
        "-d", f"{seconds:g}s", "--timeout", f"{options.timeout:g}s",
        "-s", str(LUA_DIR / scenario.script),
        scenario.target.base_url + scenario.path, "--", *scenario.wrk_args(),
    ])  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)  # noqa: S603
    for line in done.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return json.loads(line[len("WRK_RESULT ") :])  # type: ignore[no-any-return]
    raise BenchError(
        f"wrk gave no result for {scenario.id} (exit {done.returncode}):\n"
        f"{done.stdout}\n{done.stderr}"
    )


# --- the plan ------------------------------------------------------------------------


@dataclass
class Context:
    options: argparse.Namespace
    workdir: Path
    secret_key: str
    code_lifetime: int
    cleanups: list[Any] = field(default_factory=list)


def build_plan(options: argparse.Namespace) -> list[Scenario]:
    """Every scenario, in the order of the table. Targets are shared between scenarios."""
    asgi = UvicornTarget("asgi", "bare ASGI app on uvicorn", app="bare_app:asgi_app")
    fastapi = UvicornTarget("fastapi", "FastAPI app on uvicorn", app="bare_app:fastapi_app")
    postgres = DevicelinkPostgresTarget("devicelink-pg", "devicelink serve, PostgreSQL")
    return [
        FormScenario("asgi", "bare ASGI, POST (ceiling)", asgi, "/", "post_form.lua",
                     body=SAMPLE_POLL_BODY),
        FormScenario("fastapi-form", "FastAPI Form(), POST (ceiling)", fastapi, "/form",
                     "post_form.lua", body=SAMPLE_POLL_BODY),
        PollScenario("pg-poll", "token poll, pending [postgres]", postgres,
                     "/oauth/device/token", "poll.lua", expect="400 authorization_pending",
                     codes=options.codes),
        FormScenario("pg-authorize", "device authorization [postgres]", postgres,
                     "/oauth/device/authorize", "post_form_classified.lua", expect="200",
                     body=f"client_id={CLIENT_ID}"),
    ]  # fmt: skip


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
        """Share of responses that were the expected answer."""
        if not self.requests:
            return 0.0
        if self.scenario.expect is None:
            return 1 - sum(m.non_2xx_3xx for m in self.runs) / self.requests
        return self.answers.get(self.scenario.expect, 0) / self.requests

    def check(self) -> str:
        fraction = self.expected_fraction()
        label = self.scenario.expect or "2xx"
        text = f"{label} {100 * fraction:.2f}%"
        if self.socket_errors:
            text += f", {self.socket_errors} socket errors"
        if fraction < 0.999 or self.socket_errors:
            text = "BAD: " + text
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.describe(),
            "median": {"rps": self.rps, "p50_ms": self.p50, "p99_ms": self.p99},
            "expected_fraction": self.expected_fraction(),
            "answers": self.answers,
            "runs": [vars(m) for m in self.runs],
        }


def answer_mix(summary: Summary) -> str:
    answers = summary.answers
    total = sum(answers.values()) or 1
    if summary.scenario.expect == "400 authorization_pending":
        pending = answers.get("400 authorization_pending", 0)
        slow = answers.get("400 slow_down", 0)
        other = total - pending - slow
        others = ", ".join(
            f"{k}: {v}"
            for k, v in sorted(answers.items())
            if k not in ("400 authorization_pending", "400 slow_down")
        )
        return (
            f"400 authorization_pending {100 * pending / total:.2f}%, "
            f"400 slow_down {100 * slow / total:.2f}%, other {100 * other / total:.2f}%"
            + (f" ({others})" if others else "")
            + f" of {total:,} responses"
        )
    ranked = sorted(answers.items(), key=lambda kv: -kv[1])
    parts = [f"{k} {100 * v / total:.2f}%" for k, v in ranked]
    return ", ".join(parts) + f" of {total:,} responses"


def print_table(summaries: list[Summary]) -> None:
    base = next((s for s in summaries if s.scenario.id == BASELINE), None)
    headers = [
        "scenario",
        "req/s",
        "p50 ms",
        "p99 ms",
        "answers as expected",
        "req/s ×form",
        "p50 ×form",
        "p99 ×form",
    ]

    def ratio(value: float, reference: float | None) -> str:
        return f"{value / reference:.2f}" if reference else "-"

    rows = [
        [
            s.scenario.title,
            f"{s.rps:,.0f}",
            f"{s.p50:.2f}",
            f"{s.p99:.2f}",
            s.check(),
            ratio(s.rps, base.rps if base else None),
            ratio(s.p50, base.p50 if base else None),
            ratio(s.p99, base.p99 if base else None),
        ]
        for s in summaries
    ]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    numeric = {1, 2, 3, 5, 6, 7}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

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
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
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
                "limits",
            )
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark devicelink's token poll and device authorization on "
        "PostgreSQL beside bare uvicorn/FastAPI ceilings (run by hand; see bench/README.md).",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (10)")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario; median shown (3)")
    parser.add_argument(
        "--warmup", type=float, default=3, help="seconds of unmeasured load per scenario first (3)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--timeout", type=float, default=5, help="wrk socket timeout, s (5)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of servers (0)")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list of wrk (1)")
    parser.add_argument(
        "--codes",
        type=int,
        default=20_000,
        help="pending device codes the token poll cycles through (20000)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated scenario ids to run (default: all; see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DEVICELINK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL of the PostgreSQL server [env: DEVICELINK_BENCH_POSTGRES]",
    )
    parser.add_argument(
        "--database",
        default="devicelink_bench",
        help="database to (re)create for the run (devicelink_bench)",
    )
    parser.add_argument(
        "--keep-database", action="store_true", help="do not drop the database afterwards"
    )
    parser.add_argument(
        "--start-rate-limit",
        default="1000000/minute",
        help="DEVICELINK_START_RATE_LIMIT for the server (1000000/minute)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="also write the results as JSON (default path: bench/results/<time>.json)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary directory (server logs, codes file)",
    )
    options = parser.parse_args(argv)
    if options.connections < options.threads:
        parser.error("--connections must be at least --threads")
    if options.runs < 1 or options.duration <= 0:
        parser.error("--runs and --duration must be positive")
    if options.codes < options.threads:
        parser.error("--codes must be at least --threads")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    plan = build_plan(options)
    if options.list:
        for s in plan:
            print(f"{s.id:<14} {s.title}  ({s.target.title}, POST {s.path})")
        return 0
    if options.only:
        wanted = [x.strip() for x in options.only.split(",") if x.strip()]
        unknown = set(wanted) - {s.id for s in plan}
        if unknown:
            print(f"unknown scenario(s): {', '.join(sorted(unknown))}; see --list", file=sys.stderr)
            return 2
        plan = [s for s in plan if s.id in wanted]
    try:
        check_tools(options)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2

    targets = _unique_targets(plan)
    # Warm-up plus runs of every scenario, with generous slack: the pre-created codes must
    # not expire before the last poll run.
    expected = len(plan) * (options.warmup + options.runs * (options.duration + 2))
    code_lifetime = int(min(86_400, max(600, 3 * expected + 600)))
    workdir = Path(tempfile.mkdtemp(prefix="devicelink-bench-"))
    ctx = Context(options, workdir, secrets.token_urlsafe(36), code_lifetime)
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        log(
            f"warning: load average {load_before[0]:.2f}: other work on this machine competes "
            "with the server, wrk and PostgreSQL, and the figures will be low and noisy"
        )
    summaries: list[Summary] = []
    try:
        for target in targets:
            log(f"starting {target.title}")
            target.start(ctx)
        for scenario in plan:
            scenario.prepare(ctx)
        for scenario in plan:
            log(f"warm-up {scenario.id} ({options.warmup:g} s)")
            if options.warmup > 0:
                scenario.after_run(run_wrk(ctx, scenario, options.warmup))
        runs: dict[str, list[Measurement]] = {s.id: [] for s in plan}
        for run in range(1, options.runs + 1):
            for scenario in plan:
                result = run_wrk(ctx, scenario, options.duration)
                scenario.after_run(result)
                measured = Measurement.from_wrk(scenario.id, run, result)
                runs[scenario.id].append(measured)
                log(
                    f"run {run}/{options.runs} {scenario.id}: {measured.rps:,.0f} req/s, "
                    f"p50 {measured.p50_ms:.2f} ms, p99 {measured.p99_ms:.2f} ms"
                )
        summaries = [Summary(s, runs[s.id]) for s in plan]
        for target in targets:
            if target.process is not None and target.process.popen.poll() is not None:
                raise BenchError(
                    f"{target.title} died during the runs:\n{target.process.log_tail()}"
                )
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

    load_after = os.getloadavg()
    print()
    print(
        f"devicelink benchmark: {options.runs} run(s) of {options.duration:g} s per scenario "
        f"(median shown), wrk {options.threads} threads / {options.connections} connections "
        f"on CPU {options.wrk_cpus}, one server process on CPU {options.server_cpus}; "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print()
    print_table(summaries)
    print()
    for s in summaries:
        if s.answers:
            print(f"{s.scenario.id}: {answer_mix(s)}")
        for note in s.scenario.notes(s.runs):
            print(f"{s.scenario.id}: {note}")
        if options.runs > 1:
            spread = ", ".join(f"{m.rps:,.0f}" for m in s.runs)
            print(f"{s.scenario.id}: req/s of each run: {spread}")

    if options.json is not None:
        path = (
            Path(options.json)
            if options.json
            else (RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json")
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "environment": environment(options, targets),
            "load_average": {"before": load_before, "after": load_after},
            "baseline": BASELINE,
            "results": [s.to_json() for s in summaries],
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {path}")
    bad = [s.scenario.id for s in summaries if s.check().startswith("BAD")]
    if bad:
        print(
            f"\nwarning: unexpected answers in {', '.join(bad)}: those figures do not measure "
            "what the table says",
            file=sys.stderr,
        )
        return 1
    return 0


def _unique_targets(plan: list[Scenario]) -> list[Target]:
    seen: list[Target] = []
    for scenario in plan:
        if not any(t is scenario.target for t in seen):
            seen.append(scenario.target)
    return seen


if __name__ == "__main__":
    sys.exit(main())
