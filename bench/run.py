"""Hand-run benchmark of devicelink's hot endpoints, beside bare ceilings and a peer.

    .venv/bin/python -m bench.run                                # 10 s x 3 runs, all scenarios
    .venv/bin/python -m bench.run --duration 5 --runs 1          # a quick look
    .venv/bin/python -m bench.run --rows 1000,1000000            # and again on 10^6 old rows
    .venv/bin/python -m bench.run --only 'pg-*,asgi' --json
    .venv/bin/python -m bench.run --smoke                        # every scenario ~1 s, for CI

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

The modules, by role: common (paths, errors, the work directory, shared options),
machine (CPUs, tools, /proc), targets, pools, wrk, scenarios, plan, results; this one is
the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from bench.common import (
    Context,
    add_database_and_output_options,
    apply_defaults,
    guarded,
    load_before,
    log,
    workspace,
    write_json,
)
from bench.machine import check_tools
from bench.plan import build_plan, run_phase, select
from bench.results import BASELINE, Summary, answer_mix, environment, evaluate_goals, print_table
from bench.scenarios import PurgeScenario

DEFAULTS = {
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
    apply_defaults(options, DEFAULTS, SMOKE_DEFAULTS)
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
    if guarded("bench", lambda: check_tools(options)):
        return 2
    targets = list({id(s.target): s.target for ph in phases for s in ph.scenarios}.values())
    loads = [load_before(options)]
    started = time.monotonic()
    summaries: list[Summary] = []

    def run_phases(ctx: Context) -> None:
        for phase in phases:
            log(f"--- phase: {phase.name}")
            summaries.extend(run_phase(ctx, phase))

    with workspace(options, "devicelink-bench-", targets) as ctx:
        status = guarded("bench", lambda: run_phases(ctx))
    if status:
        return status
    elapsed = time.monotonic() - started
    loads.append(os.getloadavg())
    env = environment(options, targets)
    goals = evaluate_goals(summaries, options)
    print_header(options, env, elapsed, loads)
    print_table(summaries, goals)
    print()
    print_notes(summaries, ctx.notes)
    document = {
        "environment": env,
        "load_average": {"before": loads[0], "after": loads[1]},
        "baseline": BASELINE,
        "seeding": ctx.seed_reports,
        "results": [s.to_json() for s in summaries],
        "targets": [g.to_json() for g in goals],
        "notes": ctx.notes,
    }
    write_json(options, "", document)
    bad = [s.scenario.id for s in summaries if s.runs and not s.ok()]
    if bad:
        print(
            f"\nwarning: unexpected answers in {', '.join(bad)}: those figures do not measure "
            "what the table says",
            file=sys.stderr,
        )
        return 1
    return 0


def print_header(
    options: argparse.Namespace,
    env: dict[str, Any],
    elapsed: float,
    loads: list[tuple[float, float, float]],
) -> None:
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
        f"{loads[0][0]:.2f} before, {loads[1][0]:.2f} after"
    )
    print(
        f"versions: Python {env['python']}, uvicorn {packages['uvicorn']}, devicelink "
        f"{packages['devicelink']} (git {env['git_commit'][:10]}{dirty}), "
        f"PostgreSQL {env['postgresql'] or '-'}, SQLite {env['sqlite']}, "
        f"Node.js {env['node'] or '-'}, oidc-provider {env['oidc_provider'] or '-'}, {env['wrk']}"
    )
    print()


def print_notes(summaries: list[Summary], notes: list[str]) -> None:
    """Below the table: each scenario's answers, notes and runs; then the run's notes."""
    for s in summaries:
        if s.answers and not s.scenario.skipped:
            print(f"{s.scenario.id}: {answer_mix(s)}")
        for note in s.scenario.notes(s.runs) if s.runs else []:
            print(f"{s.scenario.id}: {note}")
        if len(s.runs) > 1:
            spread = ", ".join(f"{m.rps:,.0f}" for m in s.runs)
            print(f"{s.scenario.id}: req/s of each run: {spread}")
        if isinstance(s.scenario, PurgeScenario) and s.runs:
            print_purge_comparison(s, summaries)
    for note in notes:
        print(f"note: {note}")


def print_purge_comparison(purge: Summary, summaries: list[Summary]) -> None:
    assert isinstance(purge.scenario, PurgeScenario)
    ref = next((r for r in summaries if r.scenario.id == purge.scenario.reference), None)
    if ref is not None and ref.runs:
        print(
            f"{purge.scenario.id}: for comparison, {ref.scenario.id} (same pool, no purge): "
            f"{ref.rps:,.0f} req/s, p99 {ref.p99:.2f} ms, max {ref.max:.1f} ms; "
            f"during the purge: {purge.rps:,.0f} req/s, p99 {purge.p99:.2f} ms, "
            f"max {purge.max:.1f} ms"
        )


if __name__ == "__main__":
    sys.exit(main())
