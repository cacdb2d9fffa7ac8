"""The results: the median of each scenario's runs, the performance targets they are
checked against, and the table printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import sqlite3
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import REPO_DIR, rows_label
from bench.scenarios import MemoryScenario, Scenario
from bench.targets import DevicelinkPostgresTarget, NodePeerTarget, Target
from bench.wrk import Measurement

BASELINE = "fastapi-form"  # the third column divides by this scenario's req/s

PACKAGES = (
    "devicelink", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy",
    "asyncpg", "aiosqlite", "limits",
)  # fmt: skip
"""The versions recorded with the results."""

# The targets (see the README): (scenario the figure belongs to, label, threshold).
TARGET_POLL_VS_PEER = 1.2
TARGET_POLL_P99_MS = 20.0
TARGET_AUTHORIZE_VS_PEER = 1.0
TARGET_ME_VS_ASGI = 0.30
TARGET_ROWS_TOLERANCE = 0.10
TARGET_PURGE_STALL_MS = 100.0
TARGET_MEMORY_DELTA_MB = 50.0
TARGET_SQLITE_VS_PG = 0.5  # the embedded default against PostgreSQL, same request, same run
TARGET_SQLITE_P99_MS = 100.0


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


class Goals:
    """The goals of one run, in the order of the table, judged on its summaries."""

    def __init__(self, summaries: list[Summary]) -> None:
        self.by_id = {s.scenario.id: s for s in summaries}
        self.goals: list[Goal] = []

    def usable(self, scenario_id: str) -> tuple[Summary | None, str]:
        """The scenario's summary if its figures mean something, else why not."""
        s = self.by_id.get(scenario_id)
        if s is None:
            return None, f"{scenario_id} not run"
        if s.scenario.skipped:
            return None, f"{scenario_id} skipped"
        if not s.ok():
            return None, f"{scenario_id} got unexpected answers"
        return s, ""

    def ratio(
        self, attach: str, other: str, label: str, test: Callable[[float], bool | None]
    ) -> None:
        """A goal on the req/s of ``attach`` divided by that of ``other`` (a test that
        answers None: a figure reported, with no target)."""
        if attach not in self.by_id:
            return
        a, why_a = self.usable(attach)
        b, why_b = self.usable(other)
        if a is None or b is None or not b.rps:
            self.goals.append(Goal(attach, label, why=why_a or why_b))
            return
        value = a.rps / b.rps
        met = test(value)
        why = "" if met is not None else "reported, no target"
        self.goals.append(Goal(attach, label, value, f"{value:.2f}", met, why))

    def limit(
        self, attach: str, label: str, figure: Callable[[Summary], float], shown: str, most: float
    ) -> None:
        """A goal on one figure of ``attach``: below ``most`` (``shown`` formats it)."""
        if attach not in self.by_id:
            return
        summary, why = self.usable(attach)
        if summary is None:
            self.goals.append(Goal(attach, label, why=why))
            return
        value = figure(summary)
        self.goals.append(Goal(attach, label, value, shown.format(value), value < most))


def evaluate_goals(summaries: list[Summary], options: argparse.Namespace) -> list[Goal]:
    judged = Goals(summaries)
    judged.ratio("pg-poll", "node-poll", f"req/s >= {TARGET_POLL_VS_PEER:.2f} x node pending poll",
                 lambda v: v >= TARGET_POLL_VS_PEER)  # fmt: skip
    judged.limit("pg-poll", f"p99 < {TARGET_POLL_P99_MS:g} ms", lambda s: s.p99, "{:.2f} ms",
                 TARGET_POLL_P99_MS)  # fmt: skip
    judged.ratio("pg-authorize", "node-authorize",
                 f"req/s >= {TARGET_AUTHORIZE_VS_PEER:.2f} x node device authorization",
                 lambda v: v >= TARGET_AUTHORIZE_VS_PEER)  # fmt: skip
    judged.ratio("pg-me", "asgi", f"req/s >= {TARGET_ME_VS_ASGI:.2f} x bare ASGI",
                 lambda v: v >= TARGET_ME_VS_ASGI)  # fmt: skip
    for name in ("unknown", "expired", "denied"):
        judged.ratio(f"pg-{name}", "node-poll",
                     f"req/s >= {TARGET_POLL_VS_PEER:.2f} x node pending poll",
                     lambda v: v >= TARGET_POLL_VS_PEER)  # fmt: skip
    judged.ratio("pg-slow-down", "node-poll", "req/s / node pending poll (reported, no target)",
                 lambda v: None)  # fmt: skip
    for name in ("authorize", "unknown"):
        judged.ratio(f"sqlite-{name}", f"pg-{name}",
                     f"req/s >= {TARGET_SQLITE_VS_PG:.2f} x pg-{name}",
                     lambda v: v >= TARGET_SQLITE_VS_PG)  # fmt: skip
        judged.limit(f"sqlite-{name}", f"p99 < {TARGET_SQLITE_P99_MS:g} ms", lambda s: s.p99,
                     "{:.2f} ms", TARGET_SQLITE_P99_MS)  # fmt: skip
    levels = options.rows_list
    for rows in levels[1:]:
        for name in ("poll", "authorize", "me"):
            judged.ratio(
                f"pg-{name}@{rows}", f"pg-{name}",
                f"req/s within ±{TARGET_ROWS_TOLERANCE:.0%} of {rows_label(levels[0])} rows",
                lambda v: abs(v - 1) <= TARGET_ROWS_TOLERANCE,
            )  # fmt: skip
    if len(levels) == 1 and any(s.scenario.id.startswith("pg-") for s in summaries):
        judged.goals.append(
            Goal(None, f"{rows_label(10**6)} rows vs {rows_label(levels[0])}: req/s within "
                 f"±{TARGET_ROWS_TOLERANCE:.0%}", why=f"not run; add --rows {levels[0]},1000000")
        )  # fmt: skip
    judged.limit("pg-purge", f"purge stall: max < {TARGET_PURGE_STALL_MS:g} ms",
                 lambda s: s.max, "{:.1f} ms", TARGET_PURGE_STALL_MS)  # fmt: skip
    judged.limit("pg-memory", f"RSS delta < {TARGET_MEMORY_DELTA_MB:g} MB", _rss_delta,
                 "{:+.1f} MB", TARGET_MEMORY_DELTA_MB)  # fmt: skip
    if options.smoke:
        for goal in judged.goals:
            goal.met, goal.why = None, "smoke run"
    return judged.goals


def _rss_delta(summary: Summary) -> float:
    assert isinstance(summary.scenario, MemoryScenario)
    return summary.scenario.delta_mb


def print_table(summaries: list[Summary], goals: list[Goal]) -> None:
    base = next((s for s in summaries if s.scenario.id == BASELINE and s.runs), None)
    headers = [
        "scenario", "req/s", "\N{MULTIPLICATION SIGN}form", "p50 ms", "p99 ms", "max ms",
        "answers as expected", "target", "value", "verdict",
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
            ["(" + goal.label.split(":")[0] + ")", "", "", "", "", "", "not run", *goal_cells(goal)]
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
            ["git", "-C", str(REPO_DIR), *args],
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
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
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
        "packages": {name: version(name) for name in PACKAGES},
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
