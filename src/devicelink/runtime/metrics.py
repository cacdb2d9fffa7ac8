"""Prometheus metrics at ``/metrics`` (names start with ``devicelink_``).

With several worker processes (``devicelink serve --workers N``) prometheus-client's
multiprocess mode is used: ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start, every worker writes its samples there, and whichever
worker answers ``/metrics`` adds them all up.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

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

        self._latency_children: dict[str, Any] = {}
        # The children counted on every hot request, looked up once.
        self.flows_started = self.flows.labels("started")
        self._poll_answers = {
            answer: self.polls.labels(answer)
            for answer in ("authorization_pending", "slow_down", "issued")
        }

    def observe_latency(self, route: str, seconds: float) -> None:
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self.latency.labels(route)
        child.observe(seconds)

    def poll_answered(self, answer: str) -> None:
        child = self._poll_answers.get(answer)
        (child if child is not None else self.polls.labels(answer)).inc()
        if answer == "expired_token":
            self.flows.labels("expired").inc()
        elif answer == "issued":
            self.keys.labels("issued").inc()

    def render(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            # prometheus_client leaves this constructor unannotated.
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
