"""Prometheus metrics at ``/metrics`` (names start with ``devicelink_``).

With several worker processes (``devicelink serve --workers N``) prometheus-client's
multiprocess mode is used: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start, every worker writes its samples there, and whichever
worker answers ``/metrics`` adds them all up. The process metrics (``process_...``,
memory, CPU, open files) are then those of every live worker, labelled with its ``pid``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The counters of one application (its own registry: nothing global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.flows = Counter(
            "devicelink_flows_total",
            "Device flows by outcome: started, approved, denied, expired (a poll answered "
            "expired_token)",
            ["outcome"],
            registry=r,
        )
        self.polls = Counter(
            "devicelink_polls_total", "Token endpoint answers by answer", ["answer"], registry=r
        )
        self.keys = Counter(
            "devicelink_keys_total", "API keys issued and revoked", ["event"], registry=r
        )
        self.codes = Counter(
            "devicelink_authorization_codes_total",
            "Authorization codes of same-device sign-in: issued, redeemed, replayed (a used "
            "code presented again: refused, its key revoked), refused (another invalid_grant)",
            ["event"],
            registry=r,
        )
        self.refusals = Counter(
            "devicelink_rate_limited_total",
            "Requests refused by a rate or brute-force limit, by limit",
            ["limit"],
            registry=r,
        )
        self.limiter_fallbacks = Counter(
            "devicelink_rate_limit_fallbacks_total",
            "Times Redis could not be reached and limits were counted in this process",
            registry=r,
        )
        self.latency = Histogram(
            "devicelink_request_duration_seconds",
            "Time to answer a request, by route",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "devicelink_requests_total",
            'HTTP requests answered, by route template ("other" for no route) and status code',
            ["route", "status"],
            registry=r,
        )
        Gauge(
            "devicelink_build_info",
            "The devicelink version running (always 1)",
            ["version"],
            multiprocess_mode="max",
            registry=r,
        ).labels(_version()).set(1)
        # Outside multiprocess mode (where render() collects them per worker).
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

        self._latency_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, int], Any] = {}
        # The children counted on every hot request, looked up once.
        self.flows_started = self.flows.labels("started")
        self._poll_answers = {
            answer: self.polls.labels(answer)
            for answer in ("authorization_pending", "slow_down", "issued")
        }
        self._children: dict[tuple[Counter, str], Any] = {}

    def observe_latency(self, route: str, seconds: float) -> None:
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self.latency.labels(route)
        child.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """One answered request: its duration by route, and its count by route and
        status. ``route`` is a route's template (or "other"), never a raw path."""
        self.observe_latency(route, seconds)
        child = self._request_children.get((route, status))
        if child is None:
            child = self._request_children[route, status] = self.requests.labels(route, str(status))
        child.inc()

    def poll_answered(self, answer: str) -> None:
        child = self._poll_answers.get(answer)
        if child is None:
            # An error code (a class constant of core.errors): a small, fixed set.
            child = self._poll_answers[answer] = self.polls.labels(answer)
        child.inc()
        if answer == "expired_token":
            self._counted(self.flows, "expired").inc()
        elif answer == "issued":
            self._counted(self.keys, "issued").inc()

    def _counted(self, counter: Counter, label: str) -> Any:
        """``counter.labels(label)``, looked up once (created on first use, as before)."""
        child = self._children.get((counter, label))
        if child is None:
            child = self._children[counter, label] = counter.labels(label)
        return child

    def render(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            # prometheus_client leaves this constructor unannotated.
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            WorkerProcesses(os.environ[MULTIPROCESS_ENV], registry=registry)
            PlatformCollector(registry=registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _version() -> str:
    try:
        return version("devicelink")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


_SAMPLES_FILE = re.compile(r"_(\d+)\.db$")


class WorkerProcesses(Collector):
    """The process metrics of every live worker, each labelled with its ``pid``: the
    workers are those that wrote samples to the multiprocess directory and are still
    running as children of this worker's parent (a pid the system gave to another
    program since is left out)."""

    def __init__(self, directory: str, *, registry: CollectorRegistry) -> None:
        self._directory = directory
        self._pid = "self"
        self._process = ProcessCollector(pid=lambda: self._pid, registry=None)
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for pid in sorted(self._workers()):
            self._pid = str(pid)
            for family in self._process.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                merged.samples.extend(
                    sample._replace(labels={**sample.labels, "pid": str(pid)})
                    for sample in family.samples
                )
        return list(families.values())

    def _workers(self) -> set[int]:
        try:
            names = os.listdir(self._directory)
        except OSError:
            return set()
        parent = os.getppid()
        pids = {int(m.group(1)) for m in map(_SAMPLES_FILE.search, names) if m is not None}
        return {pid for pid in pids if _parent_of(pid) == parent}


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
