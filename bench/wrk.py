"""Load generation with wrk: its command line, its ``WRK_RESULT`` report (printed by
bench/lua/common.lua's ``done()``), and runs that end when every thread has done its
share (creating codes, whole flows).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import CLIENT_ID, LUA_DIR, BenchError, Context, log
from bench.machine import pinned

if TYPE_CHECKING:
    from bench.scenarios import MemoryScenario, Scenario


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
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
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


@dataclass
class Background:
    """wrk running beside something else (see :func:`in_background`)."""

    popen: subprocess.Popen[str]
    result: dict[str, Any] = field(default_factory=dict)

    def running(self) -> bool:
        return self.popen.poll() is None


@contextmanager
def in_background(command: list[str], name: str) -> Iterator[Background]:
    """wrk runs while the block does something else; then it is stopped with SIGINT, on
    which it still reports (done()), and its result is in ``.result``."""
    wrk = Background(
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    )
    try:
        yield wrk
    finally:
        if wrk.running():
            wrk.popen.send_signal(signal.SIGINT)
        stdout, stderr = wrk.popen.communicate(timeout=60)
    wrk.result = parse_wrk(stdout, stderr, name, wrk.popen.returncode)


def _run_until_markers(
    command: list[str], directory: Path, pattern: str, count: int, budget: float, name: str
) -> dict[str, Any]:
    """Run wrk until ``count`` files matching ``pattern`` are in ``directory`` (each
    thread writes one when it has done its share); its result."""
    deadline = time.monotonic() + budget
    with in_background(command, name) as wrk:
        while time.monotonic() < deadline and wrk.running():
            if len(list(directory.glob(pattern))) >= count:
                break
            time.sleep(0.05)
        else:
            if wrk.running():
                log(f"{name}: not done within {budget:.0f} s; stopping wrk")
    return wrk.result


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
