"""Hand-run check of a rolling restart under load, through nginx, as docs/deploy.md prints it.

    .venv/bin/python -m bench.rolling_restart                              # 40 s, 20 CLIs
    .venv/bin/python -m bench.rolling_restart --duration 60 --concurrency 100

Not a test and not a throughput figure: it counts the errors a rolling restart causes.
It needs nginx (``--nginx``, default /usr/sbin/nginx), PostgreSQL (``--postgres``, as
the benchmark) and Redis (``--redis``).

1. A fresh PostgreSQL database (``--database``), ``devicelink db upgrade``, the
   environment of the guide's env file (section 4): an ``https://`` public URL
   (``https://login.example.test``), a new 64-character secret, the pool sizes, Redis with
   a key prefix of its own, ``DEVICELINK_TRUSTED_PROXIES=127.0.0.1``,
   ``DEVICELINK_SHUTDOWN_DELAY`` and ``DEVICELINK_GRACEFUL_TIMEOUT`` from
   deploy/devicelink.env; local accounts
   instead of the guide's Keycloak (no upstream provider here), and the benchmark's
   ``--start-rate-limit`` (all CLIs share one address: the guide's default 30/minute
   would answer 429 to most flows). ``devicelink config check --workers N`` first, as the
   systemd unit's ExecStartPre.
2. Two ``devicelink serve --workers 2`` on two loopback ports, and nginx in front of them
   (a temporary prefix, as the current user): the ``upstream`` block and the
   ``location /`` block are taken from the nginx block of docs/deploy.md section 5 as
   printed, with the two ports in place of its two addresses; plain HTTP on a loopback
   port instead of its TLS server (so ``X-Forwarded-Proto`` is ``http``).
3. Load: ``--concurrency`` simulated CLIs, each with its own keep-alive
   ``httpx.AsyncClient``: a device flow started, its code polled at the interval (plus
   the CLI's margin) until it expires or the run ends, and ``GET /api/me`` with a key
   issued up front every ``--me-every`` seconds.
4. The guide's rolling restart, one process after the other: SIGTERM to the main process
   only (the unit's ``KillMode=mixed``; SIGKILL to the group after ``TimeoutStopSec=60``),
   start it again, wait until ``/readyz`` answers 2xx (``curl -fsS``) and then
   ``fail_timeout`` (read from the guide's upstream block) more, before the next one.
   The load goes on ``--tail`` seconds after the last step, and at least ``--duration``.
5. Every answer counted by status (and OAuth error), every transport error by kind; the
   timeline; the verdict: the number of 502/503/504, other 5xx and transport errors.

Exit status 0 when there were none, 1 otherwise or when a step failed, 130 on Ctrl-C.
Everything started is stopped and the database dropped (``--keep-database``,
``--keep-workdir`` keep them), on failure and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    CLIENT_ID,
    DEVICE_CODE_GRANT,
    REPO_DIR,
    BenchError,
    Context,
    add_database_and_output_options,
    free_port,
    guarded,
    log,
    venv_command,
    workspace,
    write_json,
)
from bench.pools import _approve_through_service, _redeem_all
from bench.targets import (
    Process,
    _pg_drop,
    _pg_recreate,
    devicelink_env,
    start_process,
    wait_until_ready,
)
from devicelink.client.pacing import POLL_MARGIN

GUIDE = REPO_DIR / "docs" / "deploy.md"
PUBLIC_URL = "https://login.example.test"
STOP_TIMEOUT = 60.0  # the unit's TimeoutStopSec
ERROR_LEVELS = {"error", "critical", "fatal", "exception"}


# --- the guide's nginx configuration ------------------------------------------------------


@dataclass
class GuideNginx:
    """The pieces of the guide's nginx block this run uses, as printed."""

    upstream: str
    log_format: str
    location: str
    fail_timeout: float

    @classmethod
    def read(cls, path: Path = GUIDE) -> GuideNginx:
        text = path.read_text()
        found = re.search(r"## 5\. .*?```nginx\n(.*?)```", text, re.S)
        if found is None:
            raise BenchError(f"no nginx block in section 5 of {path}")
        block = found.group(1)
        upstream = re.search(r"^upstream devicelink \{\n.*?^\}\n", block, re.S | re.M)
        log_format = re.search(r"^log_format devicelink .*?;\n", block, re.S | re.M)
        location = re.search(r"^    location / \{\n.*?^    \}\n", block, re.S | re.M)
        if upstream is None or log_format is None or location is None:
            raise BenchError(f"the nginx block of {path} has changed shape: update this script")
        timeouts = set(re.findall(r"fail_timeout=(\d+)s", upstream.group(0)))
        if len(timeouts) != 1:
            raise BenchError(f"expected one fail_timeout in the guide's upstream, got {timeouts}")
        return cls(upstream.group(0), log_format.group(0), location.group(0), float(*timeouts))

    def upstream_for(self, ports: list[int]) -> str:
        """The upstream block with the guide's ``server`` addresses replaced by ours."""
        servers = re.findall(r"^    server (\S+)(.*)$", self.upstream, re.M)
        if len(servers) != len(ports):
            raise BenchError(f"the guide's upstream has {len(servers)} servers, not {len(ports)}")
        text = self.upstream
        for (address, _rest), port in zip(servers, ports, strict=True):
            text = text.replace(f"server {address} ", f"server 127.0.0.1:{port} ", 1)
        return text


def nginx_conf(prefix: Path, guide: GuideNginx, ports: list[int], listen: int) -> str:
    temp = "\n".join(
        f"    {name}_temp_path {prefix / 'tmp' / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    location = guide.location.replace("\n", "\n    ").rstrip() + "\n"
    return f"""# Generated by bench/rolling_restart.py from docs/deploy.md, section 5.
worker_processes auto;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} notice;
events {{
    worker_connections 1024;
}}
http {{
{temp}

    # --- the guide's upstream, its two addresses replaced by the two local ports
{guide.upstream_for(ports)}
    # --- the guide's log format
{guide.log_format}
    # Not in the guide: which upstream answered each request, for this script's diagnosis.
    log_format rolling '[$time_iso8601] $msec "$request_method $uri" $status '
                       'upstream=$upstream_addr upstream_status=$upstream_status '
                       'upstream_time=$upstream_response_time req=$request_id';

    # The guide's TLS server on 443, as plain HTTP on a loopback port for this measurement.
    server {{
        listen 127.0.0.1:{listen};
        server_name login.example.test;

        access_log {prefix / "devicelink.log"} devicelink;
        access_log {prefix / "upstreams.log"} rolling;
        client_max_body_size 64k;

        location = /metrics {{
            deny all;
        }}

    {location}    }}
}}
"""


# --- the processes ----------------------------------------------------------------------


@dataclass
class Server:
    """One ``devicelink serve --workers N`` (a machine of the guide), restartable."""

    name: str
    port: int
    command: list[str]
    env: dict[str, str]
    workdir: Path
    generation: int = 0
    process: Process | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.generation += 1
        path = self.workdir / f"{self.name}-{self.generation}.log"
        self.logs.append(path)
        self.process = start_process(
            f"{self.name} ({self.generation})",
            self.command,
            env=self.env,
            cwd=self.workdir,
            log_path=path,
        )

    def kill(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class Timeline:
    origin: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.origin

    def mark(self, what: str) -> None:
        self.events.append((self.now(), what))
        log(what)


async def sigterm_and_wait(server: Server, timeline: Timeline) -> None:
    """systemd's stop with KillMode=mixed: SIGTERM to the main process only, SIGKILL to
    the whole group if it has not exited after TimeoutStopSec."""
    assert server.process is not None
    popen = server.process.popen
    timeline.mark(f"{server.name}: SIGTERM to the main process (pid {popen.pid})")
    os.kill(popen.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(popen.wait, STOP_TIMEOUT)
    if popen.poll() is None:
        timeline.mark(f"{server.name}: still running after {STOP_TIMEOUT:.0f} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        await asyncio.to_thread(popen.wait)
    timeline.mark(f"{server.name}: exited with status {popen.returncode}")
    # What the main process left behind (KillMode=mixed kills it at the timeout only).
    left = group_members(popen.pid)
    if left:
        timeline.mark(f"{server.name}: still alive in its group after exit: pids {left}")
        left = await asyncio.to_thread(wait_group, popen.pid, STOP_TIMEOUT)
        if left:
            timeline.mark(f"{server.name}: SIGKILL to pids {left} left after {STOP_TIMEOUT:.0f} s")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        else:
            timeline.mark(f"{server.name}: the rest of its group has exited")


def wait_group(pgid: int, limit: float) -> list[int]:
    """Wait up to ``limit`` seconds for a process group to empty: who is left."""
    deadline = time.monotonic() + limit
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return sorted(members)


async def wait_ready(server: Server, timeline: Timeline, limit: float = 60.0) -> None:
    """Until ``curl -fsS URL/readyz`` succeeds: a new connection each time, 2xx."""
    import httpx

    assert server.process is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.process.popen.poll() is not None:
            raise BenchError(f"{server.name} exited at start:\n{server.process.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=2.0) as probe:
                answer = await probe.get(server.url + "/readyz")
            if answer.is_success:
                timeline.mark(f"{server.name}: /readyz answers {answer.status_code}")
                return
        await asyncio.sleep(0.1)
    raise BenchError(f"{server.name}: /readyz did not answer 2xx within {limit:.0f} s")


DRAIN_SECONDS = 2.0
"""After ``nginx -s reload`` with a server marked down: the old nginx workers finish the
requests they hold and close their connections to it."""


async def rolling_restart(
    servers: list[Server],
    guide: GuideNginx,
    timeline: Timeline,
    warmup: float,
    proxy: NginxControl | None,
) -> None:
    """The guide's procedure, one process after the other. With ``proxy`` (the guide's
    procedure since the measurement showed a POST lost otherwise): mark the process
    ``down`` in the upstream and reload nginx first, and bring it back after."""
    await asyncio.sleep(warmup)
    for server in servers:
        if proxy is not None:
            proxy.mark_down(server.port)
            timeline.mark(f"{server.name}: marked down in nginx, reloaded")
            await asyncio.sleep(DRAIN_SECONDS)
        await sigterm_and_wait(server, timeline)
        server.start()
        assert server.process is not None
        timeline.mark(f"{server.name}: started again (pid {server.process.popen.pid})")
        await wait_ready(server, timeline)
        if proxy is not None:
            proxy.mark_down(None)
            timeline.mark(f"{server.name}: back in nginx, reloaded")
        else:
            await asyncio.sleep(guide.fail_timeout)
            timeline.mark(f"{server.name}: fail_timeout ({guide.fail_timeout:.0f} s) waited")


@dataclass
class NginxControl:
    """Rewrites nginx's configuration with one upstream server marked ``down``, and
    reloads it (``nginx -s reload``: new workers take it, old ones finish their requests)."""

    command: list[str]
    conf_path: Path
    conf: str

    def mark_down(self, port: int | None) -> None:
        text = self.conf
        if port is not None:
            text = re.sub(
                rf"^(\s*server 127\.0\.0\.1:{port}\b[^;]*);",
                r"\1 down;",
                text,
                count=1,
                flags=re.M,
            )
            if text == self.conf:
                raise BenchError(f"no upstream server on port {port} in nginx.conf")
        self.conf_path.write_text(text)
        done = subprocess.run([*self.command, "-s", "reload"], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"nginx -s reload failed:\n{done.stderr}")


# --- the load ---------------------------------------------------------------------------


@dataclass
class Tally:
    answers: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    transport: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[float, str, str]] = field(default_factory=list)  # (t, request, what)
    retry_after_503: int = 0

    @property
    def total(self) -> int:
        return sum(self.answers.values()) + sum(self.transport.values())


def classify(response: Any) -> str:
    if response.is_success:
        return str(response.status_code)
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return f"{response.status_code} {error}" if error else str(response.status_code)


@dataclass
class Load:
    base: str
    key: str
    stop_at: float  # monotonic; moved later by the orchestrator
    timeline: Timeline
    me_every: float
    tally: Tally = field(default_factory=Tally)

    def running(self) -> bool:
        return time.monotonic() < self.stop_at

    async def nap(self, seconds: float) -> None:
        """Sleep, but no later than the end of the load."""
        await asyncio.sleep(max(0.0, min(seconds, self.stop_at - time.monotonic())))

    async def send(self, http: Any, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        label = f"{method} {path}"
        try:
            response = await http.request(method, self.base + path, **kwargs)
        except httpx.HTTPError as exc:
            what = f"{type(exc).__name__}: {exc}"
            self.tally.transport[type(exc).__name__] += 1
            self.tally.errors.append((self.timeline.now(), label, what))
            return None
        answer = classify(response)
        self.tally.answers[answer] += 1
        self.tally.by_endpoint[f"{label} -> {answer}"] += 1
        if response.status_code >= 500:
            if response.status_code == 503 and "retry-after" in response.headers:
                self.tally.retry_after_503 += 1
            body = response.text.strip().replace("\n", " ")[:120]
            self.tally.errors.append((self.timeline.now(), label, f"{answer} {body}"))
        return response

    async def cli(self, index: int) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=30.0) as http:  # one pool, keep-alive
            tasks = [asyncio.create_task(self.device_flows(http, index))]
            if self.me_every > 0:
                tasks.append(asyncio.create_task(self.me_checks(http)))
            await asyncio.gather(*tasks)

    async def device_flows(self, http: Any, index: int) -> None:
        await self.nap(random.uniform(0, 5))  # the CLIs do not all start at once
        while self.running():
            started = await self.send(
                http, "POST", "/oauth/device/authorize", data={"client_id": CLIENT_ID}
            )
            if started is None or started.status_code != 200:
                await self.nap(5)
                continue
            flow = started.json()
            interval = float(flow.get("interval", 5))
            form = {
                "grant_type": DEVICE_CODE_GRANT,
                "device_code": flow["device_code"],
                "client_id": CLIENT_ID,
            }
            while self.running():
                await self.nap(interval + POLL_MARGIN)
                if not self.running():
                    return
                polled = await self.send(http, "POST", "/oauth/device/token", data=form)
                if polled is None:
                    continue
                answer = classify(polled)
                if answer == "400 slow_down":
                    interval += 5
                elif answer != "400 authorization_pending" and polled.status_code < 500:
                    break  # expired, denied, anything final: a new flow

    async def me_checks(self, http: Any) -> None:
        await self.nap(random.uniform(0, self.me_every))
        headers = {"Authorization": f"Bearer {self.key}"}
        while self.running():
            await self.send(http, "GET", "/api/me", headers=headers)
            await self.nap(self.me_every)


async def run_load(
    options: argparse.Namespace,
    base: str,
    key: str,
    servers: list[Server],
    guide: GuideNginx,
    timeline: Timeline,
    proxy: NginxControl | None,
) -> Load:
    # No end until the restart is over: then the later of --duration and --tail.
    load = Load(base, key, float("inf"), timeline, options.me_every)
    timeline.origin = time.monotonic()
    end_at_least = timeline.origin + options.duration
    timeline.mark(f"load: {options.concurrency} CLIs through nginx at {base}")
    clis = [asyncio.create_task(load.cli(i)) for i in range(options.concurrency)]
    try:
        await rolling_restart(servers, guide, timeline, options.warmup, proxy)
        load.stop_at = max(end_at_least, time.monotonic() + options.tail)
        until = timeline.now() + load.stop_at - time.monotonic()
        timeline.mark(f"rolling restart done; load until t={until:.1f} s")
        await asyncio.gather(*clis)
        timeline.mark("load stopped")
    finally:
        for task in clis:
            task.cancel()
        await asyncio.gather(*clis, return_exceptions=True)
    return load


# --- setup ------------------------------------------------------------------------------


def server_env(options: argparse.Namespace, ctx: Context, database_url: str) -> dict[str, str]:
    env = devicelink_env(database_url, public_url=PUBLIC_URL, ctx=ctx)
    # The benchmark's long code lifetime and disabled purge are not the guide's.
    env.pop("DEVICELINK_CODE_LIFETIME", None)
    env.pop("DEVICELINK_PURGE_INTERVAL", None)
    env.update(
        DEVICELINK_DATABASE_POOL_SIZE="4",
        DEVICELINK_DATABASE_MAX_OVERFLOW="1",
        DEVICELINK_FAST_PATH_POOL_SIZE="4",
        DEVICELINK_REDIS_URL=options.redis,
        DEVICELINK_REDIS_KEY_PREFIX=f"devicelink-rolling-{secrets.token_hex(4)}",
        DEVICELINK_TRUSTED_PROXIES="127.0.0.1",
        DEVICELINK_METRICS_TOKEN=secrets.token_urlsafe(32),
    )
    # How a process stops: as the guide's environment file says (or as asked).
    guide = guide_env_file()
    env["DEVICELINK_SHUTDOWN_DELAY"] = (
        str(options.shutdown_delay)
        if options.shutdown_delay is not None
        else guide["DEVICELINK_SHUTDOWN_DELAY"]
    )
    env["DEVICELINK_GRACEFUL_TIMEOUT"] = guide["DEVICELINK_GRACEFUL_TIMEOUT"]
    return env


def guide_env_file() -> dict[str, str]:
    """deploy/devicelink.env, as systemd reads it (NAME=VALUE lines, comments skipped)."""
    path = Path(__file__).resolve().parents[1] / "deploy" / "devicelink.env"
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def create_database(options: argparse.Namespace, ctx: Context) -> str:
    admin = options.postgres.replace("postgresql+asyncpg://", "postgresql://")
    version = asyncio.run(_pg_recreate(admin, options.database))

    def drop() -> None:
        if options.keep_database:
            log(f"kept database {options.database} (--keep-database)")
            return
        try:
            asyncio.run(_pg_drop(admin, options.database))
            log(f"dropped database {options.database}")
        except Exception as exc:
            log(f"could not drop database {options.database}: {exc}")

    ctx.cleanups.append(drop)
    log(f"created database {options.database} (PostgreSQL {version})")
    return f"{admin.rsplit('/', 1)[0]}/{options.database}"


def run_devicelink(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [venv_command("devicelink"), *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"devicelink {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return (done.stdout + done.stderr).strip()


def issue_key(server: Server, database_url: str, secret: str) -> str:
    """One API key: a flow started on a server directly, approved through the service
    layer (bench/pools.py's helper), redeemed by one poll."""
    import httpx

    started = httpx.post(server.url + "/oauth/device/authorize", data={"client_id": CLIENT_ID})
    if started.status_code != 200:
        raise BenchError(f"starting the key's flow answered {started.status_code} {started.text}")
    flow = started.json()
    asyncio.run(
        _approve_through_service(
            database_url, secret.encode(), [flow["user_code"]], ["rolling-bench"]
        )
    )
    (key,) = asyncio.run(_redeem_all(server.url + "/oauth/device/token", [flow["device_code"]]))
    return key


def nginx_binary(options: argparse.Namespace) -> str:
    return shutil.which(options.nginx) or str(options.nginx)


def start_nginx(options: argparse.Namespace, ctx: Context, conf: str) -> tuple[Process, Path]:
    nginx = nginx_binary(options)
    if not Path(nginx).exists():
        raise BenchError(f"nginx not found at {options.nginx} (see --nginx)")
    prefix = ctx.workdir / "nginx"
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / "tmp" / name).mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(conf)
    base = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log")]
    base += ["-c", str(prefix / "nginx.conf")]
    tested = subprocess.run([*base, "-t"], capture_output=True, text=True)
    if tested.returncode != 0:
        raise BenchError(f"nginx -t refused the configuration:\n{tested.stderr}")
    process = start_process(
        "nginx",
        [*base, "-g", "daemon off;"],
        env=dict(os.environ),
        cwd=prefix,
        log_path=prefix / "stdout.log",
    )
    return process, prefix


# --- the report -------------------------------------------------------------------------


def log_levels(paths: list[Path]) -> tuple[Counter[str], list[str]]:
    levels: Counter[str] = Counter()
    excerpt: list[str] = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            try:
                level = str(json.loads(line).get("level", "?")).lower()
            except (ValueError, AttributeError):
                level = "not json"
            levels[level] += 1
            if (level in ERROR_LEVELS or level in {"warning", "not json"}) and len(excerpt) < 12:
                excerpt.append(f"{path.name}: {line[:300]}")
    return levels, excerpt


def nginx_findings(prefix: Path) -> tuple[list[str], Counter[str]]:
    errors = [
        line
        for line in (prefix / "error.log").read_text(errors="replace").splitlines()
        if "[error]" in line or "[warn]" in line or "[crit]" in line or "[alert]" in line
    ]
    retried: Counter[str] = Counter()
    for line in (prefix / "upstreams.log").read_text(errors="replace").splitlines():
        status = re.search(r"upstream_status=(\S+)", line)
        if status and ("," in status.group(1) or ":" in status.group(1)):
            retried[status.group(1)] += 1
    return errors, retried


def report(
    options: argparse.Namespace,
    load: Load,
    timeline: Timeline,
    servers: list[Server],
    prefix: Path,
    started: float,
) -> dict[str, Any]:
    tally = load.tally
    elapsed = time.monotonic() - started
    gateway = {s: tally.answers[s] for s in ("502", "503", "504") if tally.answers[s]}
    other_5xx = sum(
        n for a, n in tally.answers.items() if a.startswith("5") and a not in {"502", "503", "504"}
    )
    transport = sum(tally.transport.values())
    errors = sum(gateway.values()) + other_5xx + transport
    levels, excerpt = log_levels([p for s in servers for p in s.logs])
    nginx_errors, retried = nginx_findings(prefix)

    print(
        f"\ndevicelink rolling restart through nginx: {options.concurrency} CLIs "
        f"(poll at the interval, GET /api/me every {options.me_every:g} s each), "
        f"2 x `devicelink serve --workers {options.workers}`, nginx over plain HTTP on loopback"
    )
    print(f"requests total        {tally.total:,} in {elapsed:.1f} s of load")
    print("answers by status")
    for answer, count in sorted(tally.answers.items()):
        print(f"  {answer:<32} {count:,}")
    print("answers by request")
    for answer, count in sorted(tally.by_endpoint.items()):
        print(f"  {answer:<60} {count:,}")
    print(
        f"502/503/504           {gateway or 0}"
        + (f" (503 with Retry-After: {tally.retry_after_503})" if tally.answers["503"] else "")
    )
    print(f"other 5xx             {other_5xx}")
    print(f"transport errors      {dict(tally.transport) or 0}")
    if tally.errors:
        print("errors (t = seconds since the load started)")
        for t, request, what in tally.errors[:20]:
            print(f"  t={t:6.2f}  {request:<28} {what[:160]}")
        if len(tally.errors) > 20:
            print(f"  ... and {len(tally.errors) - 20} more")
    print("timeline (t = seconds since the load started)")
    for t, what in timeline.events:
        print(f"  t={t:6.2f}  {what}")
    print(f"nginx: error.log lines at warn or above: {len(nginx_errors)}")
    for line in nginx_errors[:10]:
        print(f"  {line[:240]}")
    print(f"nginx: requests passed to a second upstream: {sum(retried.values())} {dict(retried)}")
    print(f"devicelink logs: lines by level {dict(levels)}")
    for line in excerpt:
        print(f"  {line}")
    verdict = "PASS: 0 errors" if errors == 0 else f"FAIL: {errors} errors"
    print(f"verdict               {verdict}")
    return {
        "options": {k: v for k, v in vars(options).items() if k != "postgres"},
        "requests": tally.total,
        "answers": dict(tally.answers),
        "by_request": dict(tally.by_endpoint),
        "transport_errors": dict(tally.transport),
        "errors": [list(e) for e in tally.errors],
        "timeline": timeline.events,
        "nginx_errors": nginx_errors,
        "devicelink_log_levels": dict(levels),
        "error_count": errors,
    }


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rolling_restart",
        description="A rolling restart of two devicelink processes behind nginx, under load.",
    )
    parser.add_argument("--duration", type=float, default=40.0, help="least seconds of load")
    parser.add_argument("--concurrency", type=int, default=20, help="simulated CLIs (20)")
    parser.add_argument(
        "--me-every", type=float, default=1.0, help="seconds between GET /api/me of a CLI (1)"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="load before the restart (5)")
    parser.add_argument("--tail", type=float, default=5.0, help="load after the restart (5)")
    parser.add_argument("--workers", type=int, default=2, help="workers of each process (2)")
    parser.add_argument(
        "--no-drain-at-proxy",
        dest="drain_at_proxy",
        action="store_false",
        help="restart without marking the process down in nginx first (the old procedure)",
    )
    parser.add_argument(
        "--shutdown-delay",
        type=float,
        default=None,
        help="DEVICELINK_SHUTDOWN_DELAY (default: deploy/devicelink.env's)",
    )
    parser.add_argument("--nginx", default="/usr/sbin/nginx", help="nginx binary")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    add_database_and_output_options(
        parser,
        database="devicelink_rolling_bench",
        database_help="database created and dropped (devicelink_rolling_bench)",
        keep_database_help="keep the database afterwards",
        results_name="rolling-<time>.json",
        workdir_help="keep the work directory (server and nginx logs)",
    )
    options = parser.parse_args(argv)
    if options.concurrency < 1 or options.duration <= 0:
        parser.error("--concurrency and --duration must be positive")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    outcome: dict[str, int] = {"errors": 0}

    def run() -> None:
        with workspace(options, "devicelink-rolling-", []) as ctx:
            ctx.secret_key = secrets.token_urlsafe(48)  # as the guide's env file says
            servers: list[Server] = []

            def stop_servers() -> None:
                for server in servers:
                    server.kill()

            ctx.cleanups.append(stop_servers)
            database_url = create_database(options, ctx)
            env = server_env(options, ctx, database_url)
            log(run_devicelink(["db", "upgrade"], env, ctx.workdir).splitlines()[-1])
            check = run_devicelink(
                ["config", "check", "--workers", str(options.workers)], env, ctx.workdir
            )
            log(f"devicelink config check: {check.splitlines()[-1] if check else 'ok'}")
            devicelink = venv_command("devicelink")
            for n in (1, 2):
                port = free_port()
                command = [
                    devicelink, "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(options.workers),
                ]  # fmt: skip
                servers.append(Server(f"process {n}", port, command, env, ctx.workdir))
            for server in servers:
                server.start()
            for server in servers:
                assert server.process is not None
                wait_until_ready(server.process, server.url + "/readyz", timeout=60)
                log(f"{server.name} ready on {server.url} (pid {server.process.popen.pid})")
            guide = GuideNginx.read()
            listen = free_port()
            conf = nginx_conf(ctx.workdir / "nginx", guide, [s.port for s in servers], listen)
            nginx, prefix = start_nginx(options, ctx, conf)
            ctx.cleanups.append(nginx.stop)
            base = f"http://127.0.0.1:{listen}"
            wait_until_ready(nginx, base + "/readyz")
            log(f"nginx on {base}, prefix {prefix}")
            key = issue_key(servers[0], database_url, ctx.secret_key)
            log("issued one API key for GET /api/me")
            timeline = Timeline()
            started = time.monotonic()
            proxy = None
            if options.drain_at_proxy:
                command = [
                    nginx_binary(options),
                    "-p",
                    str(prefix),
                    "-e",
                    str(prefix / "error.log"),
                ]
                command += ["-c", str(prefix / "nginx.conf")]
                proxy = NginxControl(command, prefix / "nginx.conf", conf)
            load = asyncio.run(run_load(options, base, key, servers, guide, timeline, proxy))
            document = report(options, load, timeline, servers, prefix, started)
            outcome["errors"] = int(document["error_count"])
            write_json(options, "rolling-", document)

    status = guarded("rolling_restart", run)
    if status == 0 and outcome["errors"]:
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
