"""The machine under the benchmark: CPUs to pin to, the tools it needs, the memory and CPU
time of a process (from /proc), and the environment recorded with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import time
from pathlib import Path

from bench.common import BenchError, log


def pinned(cpus: str, command: list[str]) -> list[str]:
    """``taskset -c CPUS command``; the command alone when pinning is off (smoke mode on
    a machine without taskset or without the CPUs). taskset execs the command, so the
    process id is the command's own."""
    return ["taskset", "-c", cpus, *command] if cpus else command


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


def open_fds(pid: int) -> int:
    """File descriptors a process holds (-1 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


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
