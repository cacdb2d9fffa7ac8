"""The servers under test (:class:`Target`): bare ASGI ceilings on uvicorn, ``devicelink
serve`` on PostgreSQL or SQLite, and node-oidc-provider; each one process, pinned to
the server CPUs, started and stopped by this package.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import seed as seeding
from bench.common import (
    BENCH_DIR,
    CLIENT_ID,
    CODE_LIFETIME,
    PEER_CLIENT_ID,
    PEER_DIR,
    BenchError,
    Context,
    Skip,
    free_port,
    log,
    venv_command,
)
from bench.machine import pinned


@dataclass
class Process:
    """A server started by this script, in its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


def start_process(
    name: str, command: list[str], *, env: dict[str, str], cwd: Path, log_path: Path
) -> Process:
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log_path)


def wait_until_ready(process: Process, url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise BenchError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise BenchError(
        f"{process.name} did not answer {url} within {timeout:.0f} s:\n{process.log_tail()}"
    )


@dataclass(eq=False)
class Target:
    """A server under test: one process, pinned to the server CPUs."""

    id: str
    title: str

    base_url: str = ""
    process: Process | None = None
    started: bool = False
    skipped: str | None = None  # why it cannot run here (its scenarios are skipped)

    def start(self, ctx: Context) -> None:
        raise NotImplementedError

    def ensure_started(self, ctx: Context) -> None:
        if self.started or self.skipped:
            return
        log(f"starting {self.title}")
        try:
            self.start(ctx)
        except Skip as exc:
            self.skipped = str(exc)
            log(f"{self.id}: skipped: {exc}")
            ctx.notes.append(f"{self.title}: skipped: {exc}")
            return
        self.started = True

    def stop(self, ctx: Context) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def alive(self) -> bool:
        return self.process is None or self.process.popen.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.popen.pid

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "skipped": self.skipped}


@dataclass(eq=False)
class UvicornTarget(Target):
    """An ASGI app of bench/bare_app.py under uvicorn with devicelink's settings:
    one process, uvloop, httptools, no access log, no Server header."""

    app: str = ""

    def start(self, ctx: Context) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), self.app,
            "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--no-server-header", "--log-level", "warning",
        ]  # fmt: skip
        self.process = start_process(
            self.id,
            pinned(ctx.options.server_cpus, command),
            env=os.environ.copy(),
            cwd=ctx.workdir,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "app": self.app}


@dataclass(eq=False)
class DevicelinkTarget(Target):
    """``devicelink serve`` (one process) on a database this script creates."""

    backend: str = ""  # "postgres" or "sqlite"
    database_url: str = ""
    database_version: str = ""
    seeded: int = 0  # old rows added by seed.py so far (to each of the two tables)

    def create_database(self, ctx: Context) -> None:
        raise NotImplementedError

    def start(self, ctx: Context) -> None:
        self.create_database(ctx)
        devicelink = venv_command("devicelink")
        if self.backend != "sqlite":  # `devicelink serve` migrates SQLite itself
            env = devicelink_env(self.database_url, public_url="", ctx=ctx)
            log(f"{self.id}: devicelink db upgrade")
            upgraded = subprocess.run(
                [devicelink, "db", "upgrade"],
                env=env,
                cwd=ctx.workdir,
                capture_output=True,
                text=True,
            )
            if upgraded.returncode != 0:
                raise BenchError(
                    f"devicelink db upgrade failed:\n{upgraded.stdout}{upgraded.stderr}"
                )
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = devicelink_env(self.database_url, public_url=self.base_url, ctx=ctx)
        command = [
            devicelink, "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning",
        ]  # fmt: skip
        self.process = start_process(
            self.id,
            pinned(ctx.options.server_cpus, command),
            env=env,
            cwd=ctx.workdir,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/readyz")

    def seed_to(self, ctx: Context, rows: int) -> None:
        """Add old rows (bench/seed.py) until ``rows`` of them are in each table."""
        if rows <= self.seeded:
            return
        log(f"{self.id}: seeding {rows - self.seeded:,} old rows into each table (setup)")
        report = seeding.seed(
            self.database_url, rows - self.seeded, client_id=CLIENT_ID,
            log=lambda m: log(f"{self.id}: {m.strip()}"),
        )  # fmt: skip
        self.seeded = rows
        log(f"{self.id}: {report.describe()}")
        ctx.notes.append(f"{self.title}: {report.describe()}")
        ctx.seed_reports.append({"target": self.id, "to_rows": rows, **vars(report)})

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "backend": self.backend,
            "database_version": self.database_version,
        }


@dataclass(eq=False)
class DevicelinkPostgresTarget(DevicelinkTarget):
    """On a fresh PostgreSQL database, migrated by ``devicelink db upgrade``; the database
    is dropped afterwards unless --keep-database."""

    database: str = ""
    backend: str = "postgres"

    def create_database(self, ctx: Context) -> None:
        admin = ctx.options.postgres.replace("postgresql+asyncpg://", "postgresql://")
        self.database_version = asyncio.run(_pg_recreate(admin, self.database))
        self.database_url = f"{admin.rsplit('/', 1)[0]}/{self.database}"
        ctx.cleanups.append(self._drop_later(ctx))
        log(f"{self.id}: created database {self.database} (PostgreSQL {self.database_version})")

    def _drop_later(self, ctx: Context) -> Callable[[], None]:
        def drop() -> None:
            if ctx.options.keep_database:
                log(f"kept database {self.database} (--keep-database)")
                return
            with contextlib.suppress(Exception):
                asyncio.run(_pg_drop(ctx.options.postgres, self.database))

        return drop


@dataclass(eq=False)
class DevicelinkSqliteTarget(DevicelinkTarget):
    """On a SQLite file in the work directory (on disk: /tmp here is not a tmpfs, check
    yours), in WAL mode as devicelink configures it."""

    backend: str = "sqlite"

    def create_database(self, ctx: Context) -> None:
        path = ctx.workdir / f"{self.id}.db"
        self.database_url = f"sqlite:///{path}"
        self.database_version = sqlite3.sqlite_version
        log(f"{self.id}: SQLite {self.database_version} at {path}")


def devicelink_env(database_url: str, *, public_url: str, ctx: Context) -> dict[str, str]:
    # Nothing of the caller's own DEVICELINK_* configuration (a Redis URL, say) leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVICELINK_")}
    env.update(
        DEVICELINK_DATABASE_URL=database_url,
        DEVICELINK_SECRET_KEY=ctx.secret_key,
        DEVICELINK_DATA_DIR=str(ctx.workdir / "data"),
        # So that the per-IP limit on starting flows never answers 429 to the benchmark;
        # a one-second window keeps the limiter's per-IP list short (see the README).
        DEVICELINK_START_RATE_LIMIT=ctx.options.start_rate_limit,
        DEVICELINK_CODE_LIFETIME=str(CODE_LIFETIME),
        # No periodic purge in the servers under test: it would delete the seeded rows
        # and compete with the measured requests at a moment nobody chose. The purge is
        # measured on its own (scenario pg-purge). Ignored by versions without it.
        DEVICELINK_PURGE_INTERVAL="0",
    )
    if public_url:
        env["DEVICELINK_PUBLIC_URL"] = public_url
    return env


async def _pg_recreate(admin_url: str, name: str) -> str:
    import asyncpg

    try:
        conn = await asyncpg.connect(admin_url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(
            f"PostgreSQL at {admin_url} is unreachable: {exc} (see --postgres)"
        ) from None
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _pg_drop(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _pg_fetchval(url: str, query: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


@dataclass(eq=False)
class NodePeerTarget(Target):
    """node-oidc-provider (bench/peer/provider.mjs) on Node.js, pinned like the others.
    Its node_modules are installed with ``npm ci`` from bench/peer/package-lock.json on
    first use; without node or npm, or when ``npm ci`` fails, the peer is skipped."""

    node_version: str = ""
    provider_version: str = ""

    def start(self, ctx: Context) -> None:
        if ctx.options.no_peer:
            raise Skip("--no-peer")
        node = shutil.which("node")
        if node is None:
            raise Skip("node is not installed (Node.js 20.19 or later runs the peer)")
        self.node_version = subprocess.run(
            [node, "--version"], capture_output=True, text=True
        ).stdout.strip()
        self.provider_version = ensure_peer_modules()
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "NODE_ENV": "production",
            "BENCH_CLIENT_ID": PEER_CLIENT_ID,
            "BENCH_DEVICE_CODE_TTL": str(CODE_LIFETIME),
        }
        self.process = start_process(
            self.id,
            pinned(ctx.options.server_cpus, [node, str(PEER_DIR / "provider.mjs"), str(port)]),
            env=env,
            cwd=PEER_DIR,
            log_path=ctx.workdir / f"{self.id}.log",
        )
        wait_until_ready(self.process, self.base_url + "/.well-known/openid-configuration")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "node": self.node_version,
            "oidc_provider": self.provider_version,
        }


def ensure_peer_modules() -> str:
    """The installed oidc-provider version, after ``npm ci`` if node_modules do not match
    package-lock.json. Raises :class:`Skip` when that cannot be done here."""
    lock = json.loads((PEER_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/oidc-provider"]["version"]

    def installed() -> str | None:
        manifest = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            return str(json.loads(manifest.read_text())["version"])
        return None

    if installed() == wanted:
        return wanted
    npm = shutil.which("npm")
    if npm is None:
        raise Skip("npm is not installed, and bench/peer/node_modules is missing")
    log(f"peer: npm ci in {PEER_DIR} (oidc-provider {wanted}; first use)")
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEER_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        raise Skip("npm ci did not finish within 300 s") from None
    if done.returncode != 0 or installed() != wanted:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise Skip(f"npm ci failed (exit {done.returncode}): {tail}")
    return wanted


def table_counts(target: DevicelinkTarget) -> dict[str, int]:
    tables = ("device_authorizations", "api_keys")
    if target.backend == "postgres":
        return {
            t: int(asyncio.run(_pg_fetchval(target.database_url, f"SELECT count(*) FROM {t}")))
            for t in tables
        }
    path = seeding.sqlite_path(target.database_url)
    assert path is not None
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}
