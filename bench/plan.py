"""The plan of a benchmark run: phases of scenarios measured in turns, in the order of
the table, and how a phase is run.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    ACCESS_DENIED,
    CLIENT_ID,
    EXPIRED_TOKEN,
    INVALID_GRANT,
    PEER_CLIENT_ID,
    PENDING,
    SAMPLE_POLL_BODY,
    SLOW_DOWN,
    BenchError,
    Context,
    log,
    rows_label,
)
from bench.machine import wait_until_idle
from bench.pools import CodePool, KeyPool, SettledCodePool
from bench.results import Summary
from bench.scenarios import (
    BearerScenario,
    FormScenario,
    MemoryScenario,
    PollScenario,
    PurgeScenario,
    Scenario,
    SettledPollScenario,
)
from bench.targets import (
    DevicelinkPostgresTarget,
    DevicelinkSqliteTarget,
    DevicelinkTarget,
    NodePeerTarget,
    Target,
    UvicornTarget,
)
from bench.wrk import Measurement, run_wrk


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
        FormScenario(f"{prefix}-unknown{suffix}", f"token poll, unknown code [{label}]", target,
                     "/oauth/device/token", "post_form_classified.lua", expect=(INVALID_GRANT,),
                     body=SAMPLE_POLL_BODY),
        PollScenario(f"{prefix}-slow-down{suffix}", f"token poll, slow_down [{label}]", target,
                     "/oauth/device/token", "poll.lua", expect=(SLOW_DOWN,), pool=slow_pool,
                     check_interval=False),
        BearerScenario(f"{prefix}-me{suffix}", f"GET /api/me, valid key [{label}]", target,
                       "/api/me", "bearer.lua", expect=("200",), method="GET", keys=keys),
    ]  # fmt: skip


def settled_poll_scenarios(target: DevicelinkTarget, *, label: str, count: int) -> list[Scenario]:
    """Polls of codes that no longer wait, on PostgreSQL: expired, and denied by the key
    issuer (with its reason); ``count`` codes each (8 x --slow-codes), polled flat out."""
    authorize = "/oauth/device/authorize"
    return [
        SettledPollScenario(
            f"pg-{state}", f"token poll, {state} code [{label}]", target, "/oauth/device/token",
            "poll.lua", expect=(answer,),
            pool=SettledCodePool(f"pg-{state}-codes", target, count, authorize, CLIENT_ID,
                                 state=state),
        )
        for state, answer in (("expired", EXPIRED_TOKEN), ("denied", ACCESS_DENIED))
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
        *settled_poll_scenarios(pg, label=f"postgres, {rows_label(first)} rows",
                                count=8 * options.slow_codes),
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
    targets = list({id(s.target): s.target for s in phase.scenarios}.values())
    # Start the servers of the phase side by side (each waits for its own readiness).
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        for future in [pool.submit(t.ensure_started, ctx) for t in targets]:
            future.result()
    if phase.before is not None:
        phase.before(ctx)
    live = _prepared(ctx, phase.scenarios)
    runs: dict[str, list[Measurement]] = {s.id: [] for s in phase.scenarios}
    if phase.kind == "special":
        _measure_each(ctx, live, runs)
    else:
        _measure_in_turns(ctx, live, targets, runs)
    for scenario in live:
        if not scenario.target.alive():
            assert scenario.target.process is not None
            tail = scenario.target.process.log_tail()
            raise BenchError(f"{scenario.target.title} died during the runs:\n{tail}")
    for target in phase.stop_after:
        target.stop(ctx)
    return [Summary(s, runs[s.id]) for s in phase.scenarios]


def _prepared(ctx: Context, scenarios: list[Scenario]) -> list[Scenario]:
    """The scenarios that can run, prepared (a target or a preparation may skip one)."""
    live = []
    for scenario in scenarios:
        scenario.skipped = scenario.skipped or scenario.target.skipped
        if not scenario.skipped:
            scenario.prepare(ctx)
        if not scenario.skipped:
            live.append(scenario)
    return live


def _measure_each(
    ctx: Context, scenarios: list[Scenario], runs: dict[str, list[Measurement]]
) -> None:
    """Scenarios that measure themselves (purge, memory), once each."""
    for scenario in scenarios:
        measured = scenario.measure(ctx)  # type: ignore[attr-defined]
        runs[scenario.id].append(measured)
        log(
            f"{scenario.id}: {measured.rps:,.0f} req/s, p50 {measured.p50_ms:.2f} ms, "
            f"p99 {measured.p99_ms:.2f} ms, max {measured.max_ms:.1f} ms"
        )


def _measure_in_turns(
    ctx: Context,
    scenarios: list[Scenario],
    targets: list[Target],
    runs: dict[str, list[Measurement]],
) -> None:
    """A warm-up of each, then run 1 of every scenario, run 2 of every scenario, ..."""
    options = ctx.options
    if options.warmup > 0:
        for scenario in scenarios:
            log(f"warm-up {scenario.id} ({options.warmup:g} s)")
            scenario.before_run(ctx)
            scenario.after_run(run_wrk(ctx, scenario, options.warmup))
    pids = [t.process.popen.pid for t in targets if t.process is not None]
    for run in range(1, options.runs + 1):
        for scenario in scenarios:
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
