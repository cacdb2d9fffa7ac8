"""The scenarios: one request shape against one target (its wrk script and arguments,
the answers it expects, its preparation); the purge and the memory scenarios measure
themselves.
"""

from __future__ import annotations

import asyncio
import math
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bench.common import PENDING, POLL_INTERVAL, SLOW_DOWN, BenchError, Context, log, venv_command
from bench.machine import rss_mb
from bench.pools import CodePool, KeyPool, poll_all
from bench.targets import DevicelinkTarget, NodePeerTarget, Target, devicelink_env, table_counts
from bench.wrk import Measurement, in_background, run_flows, wrk_command


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

    described: ClassVar[tuple[str, ...]] = ()
    """Attributes of a subclass recorded with the results too."""

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
            **{name: getattr(self, name) for name in self.described},
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
            poll_all(pool.target.base_url + pool.token_path, pool.codes, pool.client_id)
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
        assert pool is not None
        assert pool.file is not None
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
class SettledPollScenario(PollScenario):
    """The token poll over a :class:`~bench.pools.SettledCodePool` (expired or denied
    codes), walked round-robin as fast as wrk can: every poll gets the same final answer
    and changes nothing, so there is nothing to prime and no interval to keep."""

    check_interval: bool = False

    def before_run(self, ctx: Context) -> None:
        pass


@dataclass(eq=False)
class BearerScenario(Scenario):
    """GET with a bearer key of a :class:`KeyPool` (bearer.lua), each request another key."""

    keys: KeyPool | None = None

    def prepare(self, ctx: Context) -> None:
        assert self.keys is not None
        self.keys.ensure(ctx)

    def wrk_args(self, ctx: Context) -> list[str]:
        assert self.keys is not None
        assert self.keys.file is not None
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

    described = ("purge_seconds", "purge_exit", "rows_before", "rows_after")
    reference: str = ""  # the same poll without a purge, for comparison in the notes
    purge_seconds: float = 0.0
    purge_exit: int | None = None
    purge_output: str = ""
    rows_before: dict[str, int] = field(default_factory=dict)
    rows_after: dict[str, int] = field(default_factory=dict)

    def prepare(self, ctx: Context) -> None:
        assert isinstance(self.target, DevicelinkTarget)
        devicelink = venv_command("devicelink")
        helped = subprocess.run(
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
        self.rows_before = table_counts(target)
        log(f"{self.id}: before the purge: {self.rows_before}")
        options = ctx.options
        purge_command = [venv_command("devicelink"), "purge", *shlex.split(options.purge_args)]
        with in_background(wrk_command(ctx, self, options.purge_timeout + 60), self.id) as wrk:
            time.sleep(ctx.settle / 2)
            log(f"{self.id}: {shlex.join(purge_command[1:])} while polls go on")
            started = time.monotonic()
            purge_log = ctx.workdir / f"{self.id}.log"
            with purge_log.open("wb") as out:
                purge = subprocess.Popen(
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
        result = wrk.result
        self.after_run(result)
        self.rows_after = table_counts(target)
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


@dataclass(eq=False)
class MemoryScenario(Scenario):
    """Resident memory of a fresh ``devicelink serve`` before and after ``flows`` whole
    flows (flows.lua: a device authorization, then a poll of its code), driven by wrk as
    fast as the server answers. "Before" is taken after a warm-up of a few thousand flows
    (pools filled, code paths imported and cached), "after" two seconds after the last."""

    described = ("flows", "flows_answered", "rss_before_mb", "rss_after_mb")
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
