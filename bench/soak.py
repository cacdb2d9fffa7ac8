"""Hand-run soak of devicelink: many pending flows, each polled at its interval, for minutes.

    .venv/bin/python -m bench.soak                               # 10,000 flows, 120 s
    .venv/bin/python -m bench.soak --flows 2000 --duration 30    # a shorter look
    .venv/bin/python -m bench.soak --smoke                       # 300 flows, 10 s
    .venv/bin/python -m bench.soak --json        # also bench/results/soak-<time>.json

The hardening issue's soak: "10,000 pending flows, each polled at its interval for two
minutes, against one process on PostgreSQL: zero errors, p99 reported, memory flat".
Not a test: it needs wrk, taskset, two CPUs and a PostgreSQL server. See the "Soak"
section of bench/README.md.

It reuses the benchmark's pieces (imported, not copied): the PostgreSQL target (a fresh
database, migrated, ``devicelink serve`` pinned to CPU 0 with the benchmark's
environment), the pool of pending codes (created with wrk and authorize_many.lua), the
token-poll scenario (poll.lua, answers classified by common.lua), wrk's command line and
its ``WRK_RESULT`` report, and the RSS reader. What is its own: the pace (poll.lua's RATE
argument: the pool is cycled no faster than every interval x 1.1), one long wrk run with
the server's RSS sampled beside it, the checks of the database and of the server's log
afterwards, and the report.

Exit status: 0 when every answer was ``400 authorization_pending`` and every check
passed, 1 on any error (another answer, a socket error or timeout, a flow not pending
any more, a log line at level error, the server gone) or a failed step, 2 when a tool is
missing or an option is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    CLIENT_ID,
    CODE_LIFETIME,
    PENDING,
    POLL_INTERVAL,
    BenchError,
    Context,
    add_database_and_output_options,
    apply_defaults,
    guarded,
    load_before,
    log,
    workspace,
    write_json,
)
from bench.machine import check_tools, open_fds, rss_mb
from bench.pools import CodePool
from bench.results import environment
from bench.scenarios import PollScenario
from bench.targets import DevicelinkPostgresTarget
from bench.wrk import Measurement, in_background, wrk_command

# Each code is polled again no sooner than interval x PACE: the margin absorbs the
# jitter between wrk sending a poll and the server stamping it (queueing, timers).
PACE = 1.1
# The RSS slope leaves out the first seconds of the run (the poll path's first use:
# the connection pool fills, caches warm up).
SLOPE_SKIP_S = 15.0
ERROR_LEVELS = {"error", "critical", "fatal", "exception"}

DEFAULTS = {"flows": 10_000, "duration": 120.0, "sample_every": 2.0}
SMOKE_DEFAULTS = {"flows": 300, "duration": 10.0, "sample_every": 1.0}


@dataclass(eq=False)
class SoakPollScenario(PollScenario):
    """The token poll of the pending pool, paced by poll.lua's RATE argument so that
    the whole pool is cycled no faster than every ``interval`` x PACE seconds."""

    interval: int = POLL_INTERVAL

    @property
    def rate(self) -> float:
        assert self.pool is not None
        return len(self.pool.codes) / (self.interval * PACE)

    def wrk_args(self, ctx: Context) -> list[str]:
        return [*super().wrk_args(ctx)[:4], "0", f"{self.rate:.3f}"]

    def delay_ms(self, ctx: Context) -> int:
        return 0  # paced by RATE instead


@dataclass
class Sample:
    t: float  # seconds since wrk started
    rss_mb: float
    fds: int


@dataclass
class Soak:
    """What one soak measured and checked."""

    flows: int
    interval: int
    target_rate: float
    samples: list[Sample] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    measurement: Measurement | None = None
    database: dict[str, Any] = field(default_factory=dict)
    log_lines: dict[str, int] = field(default_factory=dict)
    log_excerpt: list[str] = field(default_factory=list)
    server_alive: bool = True
    errors: list[str] = field(default_factory=list)

    def slope_mb_per_min(self, skip: float) -> tuple[float | None, int]:
        """Least-squares slope of RSS over the samples after ``skip`` seconds, in MB a
        minute, and the number of samples it used."""
        points = [(s.t, s.rss_mb) for s in self.samples if s.t >= skip]
        if len(points) < 2:
            return None, len(points)
        mean_t = sum(t for t, _ in points) / len(points)
        mean_r = sum(r for _, r in points) / len(points)
        var = sum((t - mean_t) ** 2 for t, _ in points)
        if var == 0:
            return None, len(points)
        cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
        return cov / var * 60, len(points)


def measure(
    ctx: Context, scenario: SoakPollScenario, soak: Soak, duration: float, every: float
) -> None:
    """One wrk run of ``duration`` seconds, the server's RSS sampled every ``every``."""
    target = scenario.target
    command = wrk_command(ctx, scenario, duration)
    log(
        f"polling {soak.flows:,} codes for {duration:g} s at most {soak.target_rate:,.1f} "
        f"req/s (each code every {soak.interval * PACE:g} s or later), "
        f"{ctx.options.connections} connections"
    )
    started = time.monotonic()
    progress_every = max(every, 10.0)
    next_progress = progress_every
    with in_background(command, scenario.id) as wrk:
        deadline = started + duration + 120
        next_sample = started
        while wrk.running() and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_sample:
                t = now - started
                sample = Sample(t, rss_mb(target.pid), open_fds(target.pid))
                soak.samples.append(sample)
                next_sample += every
                if t >= next_progress:
                    log(f"t={t:5.0f} s: RSS {sample.rss_mb:.1f} MB, {sample.fds} open fds")
                    next_progress += progress_every
                if not target.alive():
                    break
            time.sleep(max(0.0, min(0.2, next_sample - time.monotonic())))
    result = wrk.result
    scenario.after_run(result)
    soak.measurement = Measurement.from_wrk(scenario.id, 1, result)


async def _check_database(database_url: str, secret: str, codes: list[str]) -> dict[str, Any]:
    """The pool's flows as the database has them after the soak: every one pending, its
    interval untouched (a slow_down would have raised it), never consumed, polled."""
    import asyncpg

    from devicelink.core.codes import CodeHasher

    hasher = CodeHasher(secret.encode("utf-8"))
    hashes = [hasher.device_code(code) for code in codes]
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await conn.fetch(
            """
            SELECT status, interval, consumed_at IS NOT NULL AS consumed,
                   last_polled_at IS NOT NULL AS polled, count(*) AS n
            FROM device_authorizations WHERE device_code_hash = ANY($1::bytea[])
            GROUP BY 1, 2, 3, 4
            """,
            hashes,
        )
        by_status = await conn.fetch(
            "SELECT status, count(*) AS n FROM device_authorizations GROUP BY status"
        )
        keys = await conn.fetchval("SELECT count(*) FROM api_keys")
    finally:
        await conn.close()
    pool = {
        "flows": len(codes),
        "found": sum(r["n"] for r in rows),
        "pending": sum(r["n"] for r in rows if r["status"] == "pending"),
        "consumed": sum(r["n"] for r in rows if r["consumed"] or r["status"] == "consumed"),
        "polled": sum(r["n"] for r in rows if r["polled"]),
        "intervals": sorted({int(r["interval"]) for r in rows}),
    }
    return {
        "pool": pool,
        "table_by_status": {r["status"]: int(r["n"]) for r in by_status},
        "api_keys": int(keys),
    }


def count_log_lines(path: Path) -> tuple[dict[str, int], list[str]]:
    """Lines of the server's log (its stderr and stdout: JSON, one object a line) by
    level; lines that are not JSON (a raw traceback, say) are counted as "unparsed".
    Returns the counts and the first few lines at warning level or above."""
    counts: dict[str, int] = {}
    excerpt: list[str] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {"unreadable": 1}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            level = str(record.get("level", "unknown")).lower()
        except (ValueError, AttributeError):
            level = "unparsed"
        counts[level] = counts.get(level, 0) + 1
        if level not in ("info", "debug") and len(excerpt) < 5:
            excerpt.append(line[:300])
    return counts, excerpt


def error_log_lines(counts: dict[str, int]) -> int:
    return sum(n for level, n in counts.items() if level in ERROR_LEVELS)


def judge(soak: Soak) -> None:
    """Fill ``soak.errors``: every reason the soak failed."""
    if soak.measurement is None:
        soak.errors.append("no wrk result")
        return
    m = soak.measurement
    checks = [*_answer_checks(soak, m), *_database_checks(soak, m), *_log_checks(soak)]
    soak.errors.extend(message for failed, message in checks if failed)


def _answer_checks(soak: Soak, m: Measurement) -> list[tuple[bool, str]]:
    """What the polls got: (failed, why) pairs."""
    others = {k: v for k, v in m.answers.items() if k != PENDING}
    answered = sum(m.answers.values())
    socket_errors = {k: v for k, v in m.socket_errors.items() if v}
    return [
        (bool(others), f"answers other than {PENDING}: {others}"),
        (answered != m.requests, f"{m.requests:,} requests but {answered:,} answers classified"),
        (bool(socket_errors), f"socket errors: {socket_errors}"),
        (not m.requests, "no requests answered"),
        (not soak.server_alive, "the server exited during the soak"),
    ]


def _database_checks(soak: Soak, m: Measurement) -> list[tuple[bool, str]]:
    """The pool's flows as the database has them afterwards (if it was read)."""
    pool = soak.database.get("pool")
    keys = soak.database.get("api_keys")
    if not pool:
        return [(bool(keys), f"{keys} API keys issued")]
    flows = pool["flows"]
    return [
        (pool["found"] != flows, f"{flows - pool['found']} flows missing from the database"),
        (pool["pending"] != flows, f"{flows - pool['pending']} flows no longer pending"),
        (bool(pool["consumed"]), f"{pool['consumed']} flows consumed"),
        (
            pool["intervals"] != [soak.interval],
            f"intervals in the database {pool['intervals']} (slow_down?)",
        ),
        # After one and a half cycles every code must have been polled at least once.
        (
            m.requests >= 1.5 * flows and pool["polled"] != flows,
            f"{flows - pool['polled']} flows never polled",
        ),
        (bool(keys), f"{keys} API keys issued"),
    ]


def _log_checks(soak: Soak) -> list[tuple[bool, str]]:
    errors_logged = error_log_lines(soak.log_lines)
    unparsed = soak.log_lines.get("unparsed")
    return [
        (bool(errors_logged), f"{errors_logged} server log lines at level error"),
        (bool(unparsed), f"{unparsed} server log lines that are not JSON"),
    ]


def report(soak: Soak, options: argparse.Namespace, env: dict[str, Any], load: dict) -> None:
    m = soak.measurement
    assert m is not None
    skip = slope_skip(options)
    slope, used = soak.slope_mb_per_min(skip)
    rss = [s.rss_mb for s in soak.samples] or [0.0]
    fds = [s.fds for s in soak.samples] or [0]
    fds_after_skip = next((s.fds for s in soak.samples if s.t >= skip), fds[-1])
    period = soak.flows / m.rps if m.rps else float("inf")
    goal_period = soak.interval * PACE
    behind = period > goal_period * 1.1
    answered = sum(m.answers.values()) or 1
    mix = ", ".join(
        f"{k} {v:,} ({100 * v / answered:.2f}%)"
        for k, v in sorted(m.answers.items(), key=lambda kv: -kv[1])
    )
    socket = ", ".join(f"{k} {v}" for k, v in sorted(m.socket_errors.items()))
    pool = soak.database.get("pool", {})
    packages = env["packages"]
    dirty = ", dirty tree" if env["git_dirty"] else ""
    rows = [
        ("requests", f"{m.requests:,} in {m.duration_s:.1f} s"),
        (
            "rate",
            f"{m.rps:,.1f} req/s (paced to at most {soak.target_rate:,.1f} = pool / "
            f"{goal_period:g} s)",
        ),
        (
            "per-code polling period",
            f"{period:.2f} s (pool {soak.flows:,} / rate; goal {goal_period:g} s, interval "
            f"{soak.interval} s)" + (" -- BEHIND: the server answered slower" if behind else ""),
        ),
        ("answers", mix or "-"),
        ("socket errors", socket),
        (
            "latency ms",
            f"p50 {m.p50_ms:.2f}, p90 {m.p90_ms:.2f}, p99 {m.p99_ms:.2f}, "
            f"p99.9 {m.p999_ms:.2f}, max {m.max_ms:.1f}",
        ),
        (
            "RSS MB",
            f"before {soak.rss_before_mb:.1f}, start {rss[0]:.1f}, end {rss[-1]:.1f}, "
            f"max {max(rss):.1f}, after {soak.rss_after_mb:.1f}",
        ),
        (
            "RSS slope",
            (f"{slope:+.3f} MB/min" if slope is not None else "n/a")
            + f" (least squares over {used} samples after {skip:g} s, every "
            f"{options.sample_every:g} s)",
        ),
        (
            "open fds",
            f"{fds[0]} at 0 s (before wrk connected), {fds_after_skip} at {skip:g} s, "
            f"{fds[-1]} at the end, max {max(fds)}",
        ),
        (
            "database after",
            (
                f"pool: {pool.get('pending', 0):,} of {pool.get('flows', 0):,} pending, "
                f"{pool.get('consumed', 0)} consumed, {pool.get('polled', 0):,} polled, "
                f"intervals {pool.get('intervals')}; all rows by status "
                f"{soak.database.get('table_by_status')}; {soak.database.get('api_keys')} "
                "API keys"
            )
            if pool
            else "not checked",
        ),
        (
            "server log",
            f"{error_log_lines(soak.log_lines)} lines at level error; all lines by level "
            f"{soak.log_lines or '{}'}",
        ),
        ("verdict", "PASS" if not soak.errors else "FAIL: " + "; ".join(soak.errors)),
    ]
    print()
    if options.smoke:
        print(f"SMOKE RUN: {soak.flows} flows for {options.duration:g} s; the figures mean little.")
    print(
        f"devicelink soak, {env['when']}: {soak.flows:,} pending flows polled for "
        f"{options.duration:g} s, each every {goal_period:g} s or later (interval "
        f"{soak.interval} s), wrk {options.threads} threads / {options.connections} "
        f"connections on CPU {options.wrk_cpus or 'any'}, one server process on CPU "
        f"{options.server_cpus or 'any'}, PostgreSQL"
    )
    print(
        f"machine: {env['cpus']} CPUs (nproc), {env['cpu']}; load average "
        f"{load['before'][0]:.2f} before, {load['during'][0]:.2f} at the end of the polls, "
        f"{load['after'][0]:.2f} after"
    )
    print(
        f"versions: Python {env['python']}, uvicorn {packages['uvicorn']}, devicelink "
        f"{packages['devicelink']} (git {env['git_commit'][:10]}{dirty}), "
        f"PostgreSQL {env['postgresql'] or '-'}, {env['wrk']}"
    )
    print()
    width = max(len(label) for label, _ in rows)
    print(f"{'figure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 5}")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    for line in soak.log_excerpt:
        print(f"server log: {line}")


def slope_skip(options: argparse.Namespace) -> float:
    """Seconds left out of the RSS slope: 15, or a quarter of a shorter run."""
    return min(SLOPE_SKIP_S, options.duration / 4)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Soak devicelink serve on PostgreSQL: many pending flows, each polled at "
        "its interval, for minutes (run by hand; see the Soak section of bench/README.md).",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="300 flows for 10 s, to check the soak itself works (the figures mean little)",
    )
    parser.add_argument("--flows", type=int, default=None, help="pending flows polled (10000)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of polls (120)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--sample-every",
        type=float,
        default=None,
        help="seconds between RSS samples of the server (2)",
    )
    parser.add_argument("--timeout", type=float, default=5, help="wrk socket timeout, s (5)")
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list of the server (0)")
    parser.add_argument("--wrk-cpus", default="1", help="taskset CPU list of wrk (1)")
    add_database_and_output_options(
        parser,
        database="devicelink_soak",
        database_help="database to (re)create (devicelink_soak)",
        keep_database_help="do not drop the database afterwards",
        results_name="soak-<time>.json",
        workdir_help="keep the temporary directory (server log, codes file)",
    )
    options = parser.parse_args(argv)
    apply_defaults(
        options, {"flows": 10_000, "duration": 120.0, "sample_every": 2.0}, SMOKE_DEFAULTS
    )
    if options.connections < options.threads or options.threads < 1:
        parser.error("--connections must be at least --threads, --threads at least 1")
    if options.flows < options.threads:
        parser.error("--flows must be at least --threads")
    if options.duration <= 0 or options.sample_every <= 0:
        parser.error("--duration and --sample-every must be positive")
    if options.duration + 3600 > CODE_LIFETIME:
        parser.error(f"--duration must leave the codes ({CODE_LIFETIME} s) an hour of margin")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    if guarded("soak", lambda: check_tools(options)):
        return 2
    target = DevicelinkPostgresTarget(
        "devicelink-soak", "devicelink serve, PostgreSQL (soak)", database=options.database
    )
    loads = {"before": load_before(options)}
    soaks: list[Soak] = []
    with workspace(options, "devicelink-soak-", [target]) as ctx:
        status = guarded("soak", lambda: soaks.append(run_soak(ctx, target, loads)))
    if status:
        return status
    (soak,) = soaks
    loads["after"] = os.getloadavg()
    env = environment(options, [target])
    judge(soak)
    report(soak, options, env, loads)
    write_json(options, "soak-", document(soak, options, env, loads))
    if soak.errors:
        print(f"\nsoak: FAILED: {'; '.join(soak.errors)}", file=sys.stderr)
        return 1
    return 0


def run_soak(
    ctx: Context, target: DevicelinkPostgresTarget, loads: dict[str, tuple[float, float, float]]
) -> Soak:
    """Start the server, create the pool, poll it for ``--duration`` seconds, check the
    database and the server's log afterwards."""
    options = ctx.options
    pool = CodePool("soak-codes", target, options.flows, "/oauth/device/authorize", CLIENT_ID)
    scenario = SoakPollScenario(
        "soak-poll", "token poll, pending [soak]", target, "/oauth/device/token", "poll.lua",
        expect=(PENDING,), pool=pool,
    )  # fmt: skip
    target.ensure_started(ctx)
    pool.ensure(ctx)
    if not pool.sample.startswith("400 ") or "authorization_pending" not in pool.sample:
        raise BenchError(f"a poll of a fresh code answered {pool.sample}, not {PENDING}")
    # The interval the server gave the codes, as stored with them.
    before = asyncio.run(_check_database(target.database_url, ctx.secret_key, pool.codes))
    intervals = before["pool"]["intervals"]
    if before["pool"]["pending"] != options.flows or len(intervals) != 1:
        raise BenchError(f"the pool's flows before the polls: {before['pool']}")
    interval = scenario.interval = intervals[0]
    log(f"{options.flows:,} flows pending in the database, interval {interval} s")
    soak = Soak(options.flows, interval, scenario.rate)
    time.sleep(ctx.settle)
    soak.rss_before_mb = rss_mb(target.pid)
    log(f"RSS {soak.rss_before_mb:.1f} MB before the polls")
    measure(ctx, scenario, soak, options.duration, options.sample_every)
    loads["during"] = os.getloadavg()
    soak.server_alive = target.alive()
    time.sleep(ctx.settle)
    if soak.server_alive:
        soak.rss_after_mb = rss_mb(target.pid)
        log(f"RSS {soak.rss_after_mb:.1f} MB after the polls")
    target.stop(ctx)  # so that its shutdown is in the log too
    soak.database = asyncio.run(_check_database(target.database_url, ctx.secret_key, pool.codes))
    soak.log_lines, soak.log_excerpt = count_log_lines(ctx.workdir / f"{target.id}.log")
    return soak


def document(
    soak: Soak, options: argparse.Namespace, env: dict[str, Any], loads: dict[str, Any]
) -> dict[str, Any]:
    """The soak as JSON (``--json``)."""
    slope, used = soak.slope_mb_per_min(slope_skip(options))
    assert soak.measurement is not None
    return {
        "environment": env,
        "load_average": loads,
        "flows": soak.flows,
        "interval_s": soak.interval,
        "paced_rate": soak.target_rate,
        "period_s": soak.flows / soak.measurement.rps if soak.measurement.rps else None,
        "wrk": vars(soak.measurement),
        "rss_mb": {
            "before": soak.rss_before_mb,
            "after": soak.rss_after_mb,
            "slope_mb_per_min": slope,
            "slope_samples": used,
            "slope_skip_s": slope_skip(options),
        },
        "samples": [vars(s) for s in soak.samples],
        "database": soak.database,
        "server_log_lines": soak.log_lines,
        "server_log_excerpt": soak.log_excerpt,
        "errors": soak.errors,
        "passed": not soak.errors,
    }


if __name__ == "__main__":
    sys.exit(main())
