"""Fill a devicelink database with old rows, fast, for the benchmark's "large table" runs.

    .venv/bin/python -m bench.seed postgresql://postgres@127.0.0.1/devicelink_bench --rows 1000000
    .venv/bin/python -m bench.seed sqlite:////tmp/devicelink.db --rows 1000

Adds ROWS rows to ``device_authorizations`` and ROWS rows to ``api_keys`` (plus the users
they belong to, about one for every ten rows, at most 100,000), straight into the
database: PostgreSQL through ``COPY`` (asyncpg ``copy_records_to_table``), SQLite through
``executemany`` in one transaction. Then ``VACUUM (ANALYZE)`` on PostgreSQL, ``ANALYZE``
on SQLite: the tables look like those of a server that has been running for months, and
autovacuum has no reason to wake up in the middle of a measurement (PostgreSQL 13 and
later vacuum a table after enough inserts).

The database must be migrated and hold the client (``--client-id``, default
``devicelink-cli``, which ``devicelink serve`` creates when it starts). Seeding runs may
repeat: every run adds rows and users of its own.

What the rows look like:

- every device authorization is EXPIRED: created between 120 and 31 days ago, with the
  server's default ten-minute lifetime, so any purge that keeps up to 30 days of expired
  rows may delete all of them. 70 % were approved and consumed (they have a user, an
  approval and a consumption time, and a key), 10 % denied, 20 % never approved;
- ``api_keys``: one row for each consumed authorization (linked to it, created when it
  was consumed, as the server does) and the rest unlinked (keys not born of a device
  flow). 60 % expired 30 days after creation, 10 % revoked, 30 % never expire and were
  used recently;
- codes and keys are stored as HMAC-SHA256 values by the server: here they are 32 random
  bytes each, which is what such values look like, so every B-tree index gets the same
  random insertion order and the same page layout as in production. Nobody knows the
  codes or keys behind these rows: no request of the benchmark can ever match one.

Columns the schema has and this script does not know are left to their defaults (it
reads the columns from the database); a new NOT NULL column without a default stops it
with a message.

Importable: ``seed(url, rows)`` returns a :class:`SeedReport` (bench/targets.py uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from devicelink.core.names import name_key

CODE_LIFETIME = timedelta(minutes=10)  # the server's default DEVICELINK_CODE_LIFETIME
KEY_LIFETIME = timedelta(days=30)  # the server's default DEVICELINK_KEY_LIFETIME
OLDEST = timedelta(days=120)
NEWEST = timedelta(days=31)
BATCH = 100_000  # rows generated and sent at a time (bounds the memory of this script)
MAX_USERS = 100_000

USER_AGENTS = (
    "devicelink/0.1.0 python-httpx/0.28.1 (Linux x86_64)",
    "devicelink/0.1.0 python-httpx/0.28.1 (Darwin arm64)",
    "devicelink/0.1.0 python-httpx/0.28.1 (Windows AMD64)",
    "mytool/2.4.1 (linux; amd64) devicelink-client/0.1",
    "mytool/2.3.0 (darwin; arm64) devicelink-client/0.1",
    "curl/8.5.0",
)
CLIENT_NAME = "devicelink CLI"


@dataclass
class SeedReport:
    backend: str
    rows: int
    users: int
    seconds: float
    device_authorizations_total: int
    api_keys_total: int

    def describe(self) -> str:
        return (
            f"seeded {self.rows:,} device_authorizations + {self.rows:,} api_keys "
            f"({self.users:,} users) into {self.backend} in {self.seconds:.1f} s; the tables "
            f"now hold {self.device_authorizations_total:,} and {self.api_keys_total:,} rows"
        )


class SeedError(Exception):
    pass


def _same(value: Any) -> Any:
    return value


# --- the rows ------------------------------------------------------------------------


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.15:
        a, b, c = (rng.getrandbits(16) for _ in range(3))
        return f"2001:db8:{a:x}:{b:x}::{c:x}"
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _device_rows(
    rng: random.Random, ids: list[int], user_ids: list[int], client_id: str, now: datetime
) -> Iterator[dict[str, Any]]:
    """One dict per device authorization, every one expired."""
    span = (OLDEST - NEWEST).total_seconds()
    oldest = now - OLDEST
    randoms = os.urandom(64 * len(ids))
    for n, row_id in enumerate(ids):
        created = oldest + timedelta(seconds=rng.random() * span)
        roll = rng.random()
        row: dict[str, Any] = {
            "id": row_id,
            "device_code_hash": randoms[64 * n : 64 * n + 32],
            "user_code_hash": randoms[64 * n + 32 : 64 * n + 64],
            "client_id": client_id,
            "scope": "api",
            "created_at": created,
            "expires_at": created + CODE_LIFETIME,
            "interval": 5,
            "request_ip": _ip(rng),
            "user_agent": rng.choice(USER_AGENTS),
            "user_id": None,
            "approved_at": None,
            "denied_at": None,
            "consumed_at": None,
            "last_polled_at": None,
        }
        if roll < 0.7:
            approved = created + timedelta(seconds=rng.uniform(10, 300))
            consumed = approved + timedelta(seconds=rng.uniform(0.1, 5))
            row.update(
                status="consumed",
                user_id=rng.choice(user_ids),
                approved_at=approved,
                consumed_at=consumed,
                last_polled_at=consumed,
            )
        elif roll < 0.8:
            denied = created + timedelta(seconds=rng.uniform(10, 300))
            row.update(
                status="denied",
                user_id=rng.choice(user_ids),
                denied_at=denied,
                last_polled_at=denied - timedelta(seconds=rng.uniform(0, 5)),
            )
        else:
            row["status"] = "pending"
            if rng.random() < 0.8:  # most abandoned flows were polled until they expired
                row["last_polled_at"] = (
                    created + CODE_LIFETIME - timedelta(seconds=rng.uniform(0, 5))
                )
        yield row


def _flow(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a key needs of its consumed device authorization (a tuple: there may be
    700,000 of them in memory)."""
    return (row["id"], row["consumed_at"], row["user_id"], row["user_agent"], row["request_ip"])


def _key_rows(
    rng: random.Random,
    ids: list[int],
    consumed: list[tuple[Any, ...]],
    user_ids: list[int],
    client_id: str,
    now: datetime,
) -> Iterator[dict[str, Any]]:
    """One dict per key: the first ``len(consumed)`` keys belong to those flows."""
    span = (OLDEST - NEWEST).total_seconds()
    oldest = now - OLDEST
    randoms = os.urandom(32 * len(ids))
    for n, row_id in enumerate(ids):
        if n < len(consumed):
            flow_id, created, user_id, device, ip = consumed[n]
        else:
            created = oldest + timedelta(seconds=rng.random() * span)
            user_id = rng.choice(user_ids)
            flow_id = None
            device = rng.choice(USER_AGENTS)
            ip = _ip(rng)
        roll = rng.random()
        expires: datetime | None
        revoked: datetime | None = None
        last_used: datetime | None
        if roll < 0.6:
            expires = created + KEY_LIFETIME
            last_used = created + timedelta(seconds=rng.uniform(0, KEY_LIFETIME.total_seconds()))
        elif roll < 0.7:
            expires = created + KEY_LIFETIME
            revoked = created + timedelta(seconds=rng.uniform(60, 20 * 86_400))
            last_used = revoked - timedelta(seconds=rng.uniform(0, 60))
        else:
            expires = None
            last_used = now - timedelta(seconds=rng.uniform(0, 7 * 86_400))
        yield {
            "id": row_id,
            "key_hash": randoms[32 * n : 32 * n + 32],
            "name": f"{CLIENT_NAME} on {device} from {ip}"[:300],
            "user_id": user_id,
            "client_id": client_id,
            "device_authorization_id": flow_id,
            "scope": "api",
            "created_at": created,
            "expires_at": expires,
            "last_used_at": last_used,
            "last_used_ip": _ip(rng),
            "revoked_at": revoked,
            "external_id": None,
        }


def _user_rows(ids: list[int], tag: str, now: datetime) -> Iterator[dict[str, Any]]:
    for n, row_id in enumerate(ids):
        username = f"seed-{tag}-{n}"
        yield {
            "id": row_id,
            "username": username,
            "username_key": name_key(username),
            "password_hash": None,
            "disabled_at": None,
            "created_at": now - OLDEST - timedelta(days=1),
            "provider": "local",
            "subject": None,
        }


@dataclass
class Column:
    name: str
    required: bool  # NOT NULL without a default


def _columns_to_fill(table: str, columns: list[Column], known: set[str]) -> list[str]:
    missing = [c.name for c in columns if c.required and c.name not in known]
    if missing:
        raise SeedError(
            f"{table} has NOT NULL column(s) without a default that seed.py does not know: "
            f"{', '.join(missing)}; teach bench/seed.py about them"
        )
    return [c.name for c in columns if c.name in known]


TABLES = ("users", "device_authorizations", "api_keys")


@dataclass
class Job:
    """One seeding run: how many rows, for which client, with which random numbers."""

    rows: int
    client_id: str
    rng: random.Random
    log: Callable[[str], None]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)

    @property
    def users(self) -> int:
        return max(1, min(MAX_USERS, self.rows // 10))

    def count(self, table: str) -> int:
        return self.users if table == "users" else self.rows

    def wrote(self, table: str) -> None:
        self.log(f"  {self.count(table):,} {table} ({time.monotonic() - self.started:.1f} s)")

    def report(self, backend: str, devices: int, keys: int) -> SeedReport:
        seconds = time.monotonic() - self.started
        return SeedReport(backend, self.rows, self.users, seconds, devices, keys)


def _plan(
    job: Job, columns: dict[str, list[Column]], ids: dict[str, list[int]]
) -> list[tuple[str, list[str], Iterator[dict[str, Any]]]]:
    """The three tables in the order they are written: (table, columns to fill, rows).
    The keys of the consumed flows are made from those flows as they are written."""
    tag = secrets.token_hex(4)
    users, client_id, now = ids["users"], job.client_id, job.now
    consumed: list[tuple[Any, ...]] = []

    def devices() -> Iterator[dict[str, Any]]:
        for row in _device_rows(job.rng, ids["device_authorizations"], users, client_id, now):
            if row["status"] == "consumed":
                consumed.append(_flow(row))
            yield row

    sample = random.Random(0)  # rows for their column names only: job.rng is left alone
    known = {
        "users": next(_user_rows([0], tag, now)),
        "device_authorizations": next(_device_rows(sample, [0], [0], client_id, now)),
        "api_keys": next(_key_rows(sample, [0], [], [0], client_id, now)),
    }
    fill = {table: _columns_to_fill(table, columns[table], set(known[table])) for table in TABLES}
    return [
        ("users", fill["users"], _user_rows(users, tag, now)),
        ("device_authorizations", fill["device_authorizations"], devices()),
        (
            "api_keys",
            fill["api_keys"],
            _key_rows(job.rng, ids["api_keys"], consumed, users, client_id, now),
        ),
    ]


def _batches(
    columns: list[str], rows: Iterator[dict[str, Any]], convert: Callable[[Any], Any] = _same
) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(tuple(convert(row[c]) for c in columns))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# --- PostgreSQL ----------------------------------------------------------------------


async def _pg_columns(conn: Any, table: str) -> list[Column]:
    found = await conn.fetch(
        "SELECT column_name, is_nullable, column_default, is_identity FROM "
        "information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 "
        "ORDER BY ordinal_position",
        table,
    )
    if not found:
        raise SeedError(f"table {table} does not exist: migrate the database first")
    return [
        Column(
            r["column_name"],
            r["is_nullable"] == "NO" and r["column_default"] is None and r["is_identity"] != "YES",
        )
        for r in found
    ]


async def _pg_reserve_ids(conn: Any, table: str, count: int) -> list[int]:
    """Take ``count`` values of the table's id sequence, as INSERTs without an id would:
    safe beside a running server, and the sequence stays ahead of every id."""
    sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
    if sequence is None:
        raise SeedError(f"{table}.id has no sequence")
    records = await conn.fetch(
        "SELECT nextval($1::regclass) FROM generate_series(1, $2)", sequence, count
    )
    return [r[0] for r in records]


async def seed_postgres(url: str, job: Job, *, vacuum: bool = True) -> SeedReport:
    import asyncpg

    conn = await asyncpg.connect(
        url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10
    )
    try:
        if await conn.fetchval("SELECT 1 FROM clients WHERE client_id = $1", job.client_id) is None:
            raise SeedError(
                f"no client {job.client_id!r} in the database (start `devicelink serve` once, "
                "or pass --client-id)"
            )
        columns = {t: await _pg_columns(conn, t) for t in TABLES}
        ids = {t: await _pg_reserve_ids(conn, t, job.count(t)) for t in TABLES}
        async with conn.transaction():
            # The rows satisfy every foreign key by construction: when the role may (a
            # superuser), skip the per-row foreign-key triggers, which take most of the
            # time of a COPY into these tables. Indexes and CHECK constraints still apply.
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL session_replication_role = replica")
                fast = True
            except asyncpg.PostgresError:
                fast = False
            job.log(f"  foreign-key triggers {'skipped' if fast else 'checked (not a superuser)'}")
            for table, fill, rows in _plan(job, columns, ids):
                for batch in _batches(fill, rows):
                    await conn.copy_records_to_table(table, records=batch, columns=fill)
                job.wrote(table)
        if vacuum:
            await conn.execute("VACUUM (ANALYZE) users, device_authorizations, api_keys")
            job.log(f"  VACUUM (ANALYZE) done ({time.monotonic() - job.started:.1f} s)")
        devices = await conn.fetchval("SELECT count(*) FROM device_authorizations")
        keys = await conn.fetchval("SELECT count(*) FROM api_keys")
    finally:
        await conn.close()
    return job.report("PostgreSQL", devices, keys)


# --- SQLite --------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    # SQLAlchemy stores DateTime on SQLite as naive UTC text in this exact format (and
    # devicelink's UTCDateTime makes every value naive UTC first).
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _sqlite_columns(conn: sqlite3.Connection, table: str) -> list[Column]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    if not info:
        raise SeedError(f"table {table} does not exist: migrate the database first")
    # (cid, name, type, notnull, dflt_value, pk); an INTEGER PRIMARY KEY is the rowid
    return [Column(r[1], bool(r[3]) and r[4] is None and not r[5]) for r in info]


def _sqlite_next_ids(conn: sqlite3.Connection, table: str, count: int) -> list[int]:
    top = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
    return list(range(top + 1, top + 1 + count))


def seed_sqlite(path: str, job: Job, *, vacuum: bool = True) -> SeedReport:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        query = "SELECT 1 FROM clients WHERE client_id = ?"
        if conn.execute(query, (job.client_id,)).fetchone() is None:
            raise SeedError(f"no client {job.client_id!r} in {path}")
        columns = {t: _sqlite_columns(conn, t) for t in TABLES}
        conn.execute("BEGIN IMMEDIATE")  # ids from max(id) are safe under the write lock
        try:
            ids = {t: _sqlite_next_ids(conn, t, job.count(t)) for t in TABLES}
            for table, fill, rows in _plan(job, columns, ids):
                insert = (
                    f"INSERT INTO {table} ({', '.join(fill)}) VALUES ({', '.join('?' * len(fill))})"
                )
                for batch in _batches(fill, rows, _sqlite_value):
                    conn.executemany(insert, batch)
                job.wrote(table)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if vacuum:
            conn.execute("ANALYZE")
        devices = conn.execute("SELECT count(*) FROM device_authorizations").fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    finally:
        conn.close()
    return job.report("SQLite", devices, keys)


# --- entry points --------------------------------------------------------------------


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL (any driver suffix), or None for other URLs."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("sqlite"):
        return None
    return unquote(parts.path[1:])  # sqlite:///relative.db, sqlite:////absolute.db


def seed(
    url: str,
    rows: int,
    *,
    client_id: str = "devicelink-cli",
    seed: int | None = None,
    vacuum: bool = True,
    log: Callable[[str], None] | None = None,
) -> SeedReport:
    if rows < 1:
        raise SeedError("--rows must be positive")
    job = Job(rows, client_id, random.Random(seed), log or (lambda message: None))
    path = sqlite_path(url)
    if path is not None:
        return seed_sqlite(path, job, vacuum=vacuum)
    if urlsplit(url).scheme.split("+")[0] in ("postgresql", "postgres"):
        postgres_url = url.replace("postgres://", "postgresql://", 1)
        return asyncio.run(seed_postgres(postgres_url, job, vacuum=vacuum))
    raise SeedError(f"unsupported database URL {url!r}: postgresql://... or sqlite:///...")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url", help="postgresql://user@host/db or sqlite:///path")
    parser.add_argument("--rows", type=int, required=True, help="rows added to each table")
    parser.add_argument("--client-id", default="devicelink-cli", help="client of the rows")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM (ANALYZE)/ANALYZE")
    options = parser.parse_args(argv)
    try:
        report = seed(
            options.database_url, options.rows, client_id=options.client_id, seed=options.seed,
            vacuum=not options.no_vacuum, log=lambda m: print(m, file=sys.stderr, flush=True),
        )  # fmt: skip
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    print(report.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
