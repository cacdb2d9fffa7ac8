"""The fault tests' own PostgreSQL server, which they may stop and start, and the
``devicelink serve`` deployments on it.

The machine's shared PostgreSQL (``DEVICELINK_TEST_POSTGRES``) is never stopped: every
outage here happens to a server of our own, made with ``initdb`` in a fresh directory,
listening on a free loopback port and on a Unix socket in that directory, and removed
when the test session ends. PostgreSQL refuses to run as root, so when the tests run as
root the binaries run as the ``postgres`` account (``runuser -u postgres``) in a
directory it owns.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devicelink.core.codes import CodeHasher
from tests.support.accounts import add_user
from tests.support.processes import clean_env, free_port, run_devicelink
from tests.support.servers import ServerProcess, start_server, wait_until_answering

PG_BIN = Path(os.environ.get("DEVICELINK_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
PG_TIMEOUT = 60.0


def _as_pg_user(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run ``command`` as the postgres account."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root and runuser is missing: cannot start PostgreSQL")
    return [runuser, "-u", PG_OS_USER, "--", *command]


class PrivatePostgres:
    """A PostgreSQL server of the fault tests alone, which they may stop and start.

    ``initdb`` (trust authentication, superuser ``postgres``, no fsync) into a fresh
    directory under the system's temporary directory (pytest's ``tmp_path`` is private to
    root, which the postgres account cannot enter), then ``pg_ctl start`` on a free
    loopback port. The output of every ``pg_ctl`` call and the server's log go to files
    in that directory.
    """

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL binaries in {PG_BIN} (set DEVICELINK_TEST_PG_BIN)")
        self.root = Path(tempfile.mkdtemp(prefix="dl-faults-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.commands_log = self.root / "pg_ctl.out"
        self.port = free_port()
        self.running = False
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_OS_USER)
            for path in (self.root, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._pg(
            "initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8"
        )

    def _pg(self, program: str, *args: str) -> None:
        with open(self.commands_log, "ab") as out:
            out.write(f"$ {program} {' '.join(args)}\n".encode())
            out.flush()
            result = subprocess.run(
                _as_pg_user([str(PG_BIN / program), *args]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.root,
                timeout=PG_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{self.logs()}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=16MB -c fsync=off"
        )
        self._pg(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "start"
        )
        self.running = True

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """``pg_ctl stop -m MODE``; without ``wait``, return while it shuts down (a smart
        shutdown waits for every session to end, refusing new ones meanwhile)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop")
        if wait:
            self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """``createdb NAME``: the new database's URL."""
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        if template is not None:
            args += ["-T", template]
        self._pg("createdb", *args, name)
        return self.url(name)

    def logs(self) -> str:
        parts = []
        for path in (self.commands_log, self.log_path):
            if path.exists():
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def destroy(self) -> None:
        """Stop the server at once (whatever state it is in) and remove its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            self.running = False
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


TEMPLATE_DATABASE = "devicelink_template"


class Cluster:
    """A :class:`PrivatePostgres` with a template database migrated by ``devicelink db
    upgrade``: each test or deployment gets a copy (``createdb -T``), which costs a
    fraction of a second where running the command again costs seconds."""

    def __init__(self, postgres: PrivatePostgres, workdir: Path) -> None:
        self.postgres = postgres
        self.workdir = workdir
        self._count = 0
        env = clean_env(DEVICELINK_DATABASE_URL=postgres.url(TEMPLATE_DATABASE))
        postgres.create_database(TEMPLATE_DATABASE)
        upgrade = run_devicelink("db", "upgrade", env=env, cwd=workdir)
        assert upgrade.returncode == 0, f"db upgrade failed:\n{upgrade.stderr}"
        assert "up to date" in upgrade.stdout, upgrade.stdout

    def ensure_running(self) -> None:
        """Start PostgreSQL again if a test left it stopped."""
        if not self.postgres.running:
            self.postgres.start()

    def new_database(self) -> str:
        """A fresh copy of the template."""
        self.ensure_running()
        self._count += 1
        name = f"devicelink_{self._count}"
        self.postgres.create_database(name, template=TEMPLATE_DATABASE)
        return self.postgres.url(name)


@dataclass
class Deployment:
    """One ``devicelink serve`` on a database of the private PostgreSQL."""

    postgres: PrivatePostgres
    database_url: str
    secret: str
    server: ServerProcess

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def hasher(self) -> CodeHasher:
        return CodeHasher(self.secret.encode("utf-8"))

    def logs(self) -> str:
        return f"{self.server.logs()}\n{self.postgres.logs()}"


@contextmanager
def deployments(
    cluster: Cluster, workdir: Path, variants: Mapping[str, Mapping[str, str]]
) -> Iterator[dict[str, Deployment]]:
    """One ``devicelink serve`` per variant, all on one new database (and one secret),
    started side by side, and the local account ``alice`` made by ``devicelink users
    add``; every server stopped when the block ends.

    Polling is fast (interval 1 s, slow_down adds 1 s up to 2 s) so a test need not wait
    the default 5 s between polls; a variant's settings add or override ``DEVICELINK_*``
    ones (``{"fast_path": "false"}``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    url = cluster.new_database()
    secret = secrets.token_urlsafe(48)
    started: dict[str, Deployment] = {}
    try:
        for variant, settings in variants.items():
            env = clean_env(
                DEVICELINK_DATABASE_URL=url,
                DEVICELINK_SECRET_KEY=secret,
                DEVICELINK_INTERVAL="1",
                DEVICELINK_SLOW_DOWN_STEP="1",
                DEVICELINK_MAX_INTERVAL="2",
                DEVICELINK_START_RATE_LIMIT="1000/minute",
                DEVICELINK_LOG_FORMAT="json",
                **{f"DEVICELINK_{name.upper()}": value for name, value in settings.items()},
            )
            server = start_server(
                env=env, cwd=workdir, log_dir=workdir / "logs", name=variant, wait_for=None
            )
            started[variant] = Deployment(cluster.postgres, url, secret, server)
        # While the servers start: the local account, with the operator's command.
        add_user(clean_env(DEVICELINK_DATABASE_URL=url), workdir, "alice")
        for dep in started.values():
            wait_until_answering(dep.server)
        yield started
    finally:
        for dep in started.values():
            dep.server.stop()
