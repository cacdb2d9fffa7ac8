"""What the benchmark and the soak share: paths, the answers they expect, errors, the
progress log, the run's context and work directory, the options of the command line
and the JSON results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.targets import Target

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
LUA_DIR = BENCH_DIR / "lua"
PEER_DIR = BENCH_DIR / "peer"
RESULTS_DIR = BENCH_DIR / "results"

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_ID = "devicelink-cli"  # the default public client `devicelink serve` creates
PEER_CLIENT_ID = "bench-device"  # the one client of bench/peer/provider.mjs
POLL_INTERVAL = 5  # seconds; devicelink's default DEVICELINK_INTERVAL, RFC 8628's default
# A token-poll body of the same shape and size as the real ones (43-character code),
# for the ceilings, so every endpoint parses the same bytes.
SAMPLE_POLL_BODY = (
    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
    f"&device_code={'A' * 43}&client_id={CLIENT_ID}"
)
PENDING = "400 authorization_pending"
SLOW_DOWN = "400 slow_down"
INVALID_GRANT = "400 invalid_grant"  # a device code never issued (SAMPLE_POLL_BODY's)
EXPIRED_TOKEN = "400 expired_token"
ACCESS_DENIED = "400 access_denied"
# Lifetime of the pre-created codes: the largest devicelink accepts, so that the pools
# outlive any run, seeding 10^6 rows included. It is a timestamp in the row: it changes
# no work the server does per request.
CODE_LIFETIME = 86_400


class BenchError(Exception):
    """Something prevents a meaningful measurement; the message says what."""


class Skip(Exception):
    """A target cannot run on this machine (the peer without npm, say); its scenarios
    are reported as skipped, with the reason."""


_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


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


def rows_label(rows: int) -> str:
    exponent = round(math.log10(rows)) if rows > 0 else 0
    return f"10^{exponent}" if rows > 0 and 10**exponent == rows else f"{rows:,}"


@dataclass
class Context:
    options: argparse.Namespace
    workdir: Path
    secret_key: str
    cleanups: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seed_reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def settle(self) -> float:
        """Seconds to let a server settle before reading its memory (the purge scenario
        polls half of that before and after the purge)."""
        return 0.6 if self.options.smoke else 2.0


def add_database_and_output_options(
    parser: argparse.ArgumentParser,
    *,
    database: str,
    database_help: str,
    keep_database_help: str,
    results_name: str,
    workdir_help: str,
) -> None:
    """The options this script and soak.py share: PostgreSQL, the server's start limit,
    the JSON results and the work directory."""
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DEVICELINK_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin URL of the PostgreSQL server [env: DEVICELINK_BENCH_POSTGRES]",
    )
    parser.add_argument("--database", default=database, help=database_help)
    parser.add_argument("--keep-database", action="store_true", help=keep_database_help)
    parser.add_argument(
        "--start-rate-limit",
        default="1000000/second",
        help="DEVICELINK_START_RATE_LIMIT for the server (1000000/second)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help=f"also write the results as JSON (default path: bench/results/{results_name})",
    )
    parser.add_argument("--keep-workdir", action="store_true", help=workdir_help)


def apply_defaults(
    options: argparse.Namespace, defaults: dict[str, Any], smoke: dict[str, Any]
) -> None:
    """Fill the options left unset: from ``smoke`` in a smoke run, else from ``defaults``."""
    chosen = {**defaults, **smoke} if options.smoke else defaults
    for name, value in chosen.items():
        if getattr(options, name) is None:
            setattr(options, name, value)


def load_before(options: argparse.Namespace) -> tuple[float, float, float]:
    """The load average before the run; a warning when it is high."""
    load = os.getloadavg()
    if load[0] > 0.5 and not options.smoke:
        log(
            f"warning: load average {load[0]:.2f}: other work on this machine competes "
            "with the server, wrk and PostgreSQL, and the figures will be low and noisy"
        )
    return load


@contextmanager
def workspace(
    options: argparse.Namespace, prefix: str, targets: Sequence[Target]
) -> Iterator[Context]:
    """The run's context in a new work directory; afterwards the targets are stopped,
    the cleanups run (databases dropped) and the directory removed (--keep-workdir)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    ctx = Context(options, workdir, secrets.token_urlsafe(36))
    try:
        yield ctx
    finally:
        for target in targets:
            target.stop(ctx)
        for cleanup in reversed(ctx.cleanups):
            cleanup()
        if options.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def guarded(name: str, step: Callable[[], None]) -> int:
    """Run ``step``: 0, or the exit status of a failed step (1) or of Ctrl-C (130)."""
    try:
        step()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 0


def write_json(options: argparse.Namespace, prefix: str, document: dict[str, Any]) -> None:
    """``--json [PATH]``: the document at PATH, or bench/results/<prefix><time>.json."""
    if options.json is None:
        return
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(options.json) if options.json else RESULTS_DIR / f"{prefix}{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
