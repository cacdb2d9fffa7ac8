"""SQLite's one writer: group commit, reads beside it, and a failure that stays its own.

The embedded default writes through one writer (``SqliteWriter``): the requests that
arrive together are committed in one transaction, and each is answered only once that
transaction has committed. What a client would notice: a flow it was told about is
stored (and stays stored when the server goes away), many at once all succeed without
"database is locked", a read is never held up by a write, and a request whose write the
database refuses fails alone, with a protocol error, leaving nothing half-written.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, insert, select

from devicelink.core import lifecycle
from devicelink.core.errors import ServerError
from devicelink.core.models import AuditKind, Client, NewDeviceAuthorization, Status
from devicelink.storage import SqlStore, create_engine_for_url
from devicelink.storage.sqlite_fast_path import SqliteFastPath
from devicelink.storage.sqlite_writer import SqliteWriter, WriteRefused
from devicelink.storage.tables import audit_events, device_authorizations

from .conftest import as_answered, digest, new_key

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 4, 12, 0, 0, 125000, tzinfo=UTC)


@dataclass
class Embedded:
    path: Path
    store: SqlStore
    hot: SqliteFastPath

    def count(self, query: str) -> int:
        """A count read by a connection of its own, as another process would."""
        with closing(sqlite3.connect(self.path)) as conn:
            value: int = conn.execute(query).fetchone()[0]
        return value


@pytest.fixture
async def embedded(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Embedded]:
    path = tmp_path / "devicelink.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    store = SqlStore(create_engine_for_url(url))
    async with store.transaction() as tx:
        for client_id, confidential in (("public", False), ("secret", True)):
            await tx.clients.add(
                Client(
                    client_id=client_id,
                    name=client_id,
                    scopes=("api", "read"),
                    key_lifetime=None,
                    confidential=confidential,
                    created_at=T0,
                )
            )
    hot = SqliteFastPath(store, SqliteWriter(url, lock=store.write_lock))
    try:
        yield Embedded(path, store, hot)
    finally:
        await hot.close()
        await store.dispose()


def new_flow(label: str, client_id: str = "public") -> NewDeviceAuthorization:
    return NewDeviceAuthorization(
        device_code_hash=digest(f"device {label}"),
        user_code_hash=digest(f"user {label}"),
        client_id=client_id,
        scope=(),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=600),
        interval=5,
        request_ip="198.51.100.7",
        user_agent="cli/1.0",
    )


@pytest.mark.rfc("8628", "3.2")
async def test_flows_arriving_together_are_committed_together_and_stay(
    embedded: Embedded, sqlite_template: Path
) -> None:
    """Each start is answered only once its flow is committed: a connection of another
    process sees it at that moment, and after the writer has gone."""
    seen: list[int] = []

    async def start(n: int) -> tuple[str, ...] | None:
        granted = await embedded.hot.start_flow(new_flow(str(n)), requested_scope=None)
        seen.append(embedded.count("SELECT count(*) FROM device_authorizations"))
        return granted

    granted = await asyncio.gather(*(start(n) for n in range(64)))

    assert granted == [("api", "read")] * 64
    assert min(seen) >= 1
    assert all(count >= index + 1 for index, count in enumerate(sorted(seen)))
    operation = embedded.hot._starts.batcher  # how many transactions the 64 took
    assert operation.requests == 64
    assert operation.batches < 64
    await embedded.hot.close()
    assert embedded.count("SELECT count(*) FROM device_authorizations") == 64
    started = f"SELECT count(*) FROM audit_events WHERE event = '{AuditKind.FLOW_STARTED.value}'"
    assert embedded.count(started) == 64


@pytest.mark.rfc("8628", "3.2")
async def test_a_flow_is_stored_as_the_repositories_store_it(embedded: Embedded) -> None:
    granted = await embedded.hot.start_flow(new_flow("a"), requested_scope=("read",))
    async with embedded.store.transaction() as tx:
        stored = await tx.device_authorizations.get_by_device_code(digest("device a"))
        events = await tx.audit.recent()
    assert granted == ("read",)
    assert stored is not None
    assert (stored.status, stored.scope, stored.client_id) == (Status.PENDING, ("read",), "public")
    assert (stored.created_at, stored.expires_at, stored.interval) == (
        T0,
        T0 + timedelta(seconds=600),
        5,
    )
    assert (stored.request_ip, stored.user_agent, stored.last_polled_at) == (
        "198.51.100.7",
        "cli/1.0",
        None,
    )
    assert [(e.kind, e.device_authorization_id, e.client_id, e.ip) for e in events] == [
        (AuditKind.FLOW_STARTED, stored.id, "public", "198.51.100.7")
    ]


async def test_what_the_writer_does_not_serve_is_left_unwritten(embedded: Embedded) -> None:
    """A confidential or unknown client, a scope the client may not have, a code that
    collides: None, nothing stored, and the flows beside it in the batch are stored."""
    await embedded.hot.start_flow(new_flow("taken"), requested_scope=None)
    before = embedded.count("SELECT count(*) FROM audit_events")
    collision = replace(new_flow("again"), user_code_hash=digest("user taken"))
    answers = await asyncio.gather(
        embedded.hot.start_flow(new_flow("s", "secret"), requested_scope=None),
        embedded.hot.start_flow(new_flow("u", "nobody"), requested_scope=None),
        embedded.hot.start_flow(new_flow("x"), requested_scope=("admin",)),
        embedded.hot.start_flow(collision, requested_scope=None),
        embedded.hot.start_flow(new_flow("ok"), requested_scope=None),
    )
    assert list(answers) == [None, None, None, None, ("api", "read")]
    assert embedded.count("SELECT count(*) FROM device_authorizations") == 2
    assert embedded.count("SELECT count(*) FROM audit_events") == before + 1


async def test_many_writers_at_once_all_succeed(embedded: Embedded) -> None:
    """Flows through the writer and general-path transactions at the same moment share
    one write turn: none waits in SQLite's busy handler, none fails."""

    async def general(n: int) -> None:
        async with embedded.store.transaction() as tx:
            await tx.users.add(f"user{n}", None, T0)

    results = await asyncio.gather(
        *(embedded.hot.start_flow(new_flow(str(n)), requested_scope=None) for n in range(150)),
        *(general(n) for n in range(50)),
    )
    assert results[:150] == [("api", "read")] * 150
    assert embedded.count("SELECT count(*) FROM device_authorizations") == 150
    assert embedded.count("SELECT count(*) FROM users") == 50


async def test_reads_go_on_beside_the_writer_and_see_what_is_committed(
    embedded: Embedded,
) -> None:
    await embedded.hot.start_flow(new_flow("one"), requested_scope=None)

    def flows(connection: Connection) -> int:
        return int(
            connection.execute(select(func.count()).select_from(device_authorizations)).scalar_one()
        )

    writing = asyncio.Event()
    release = asyncio.Event()

    async def long_transaction() -> None:
        async with embedded.store.transaction() as tx:
            await tx.device_authorizations.add(new_flow("two"))
            writing.set()
            await release.wait()

    holder = asyncio.create_task(long_transaction())
    await writing.wait()
    # The write turn is taken and a write is open: the read neither waits nor sees it.
    assert embedded.hot.writer.read(flows) == 1
    release.set()
    await holder
    assert embedded.hot.writer.read(flows) == 2


def _audited_flows(connection: Connection, requests: Sequence[tuple[Any, ...]]) -> list[str]:
    """A write of two rows a request: an audit line, then a flow (plain INSERT, so that
    a code that collides breaks the unique constraint)."""
    for (new,) in requests:
        connection.execute(
            insert(audit_events).values(
                occurred_at=T0, event=AuditKind.FLOW_STARTED.value, client_id=new.client_id
            )
        )
        values = {**asdict(new), "scope": "api", "status": Status.PENDING.value}
        connection.execute(insert(device_authorizations).values(values))
    return ["stored"] * len(requests)


async def test_a_failed_write_in_a_batch_refuses_only_its_own_request(
    embedded: Embedded,
) -> None:
    operation = embedded.hot.writer.operation(_audited_flows)
    await operation.submit("first", new_flow("first"))
    clash = replace(new_flow("clash"), user_code_hash=digest("user first"))
    flows = [new_flow("a"), new_flow("b"), clash, new_flow("c")]
    results = await asyncio.gather(
        *(operation.submit(flow.device_code_hash, flow) for flow in flows),
        return_exceptions=True,
    )
    assert results[:2] == ["stored", "stored"]
    assert results[3] == "stored"
    refused = results[2]
    assert isinstance(refused, WriteRefused)
    assert isinstance(refused, ServerError)
    assert refused.body() == {
        "error": "server_error",
        "error_description": "the database refused to store this request",
    }
    assert operation.batcher.batches == 2  # the four arrived together
    # Nothing of the refused request: its audit line went with its flow.
    assert embedded.count("SELECT count(*) FROM device_authorizations") == 4
    assert embedded.count("SELECT count(*) FROM audit_events") == 4


POLICY = lifecycle.FlowPolicy()
STATES = {
    "pending, never polled": (Status.PENDING, None, 0),
    "pending, polled long ago": (Status.PENDING, T0 - timedelta(seconds=30), 0),
    "pending, polled too soon": (Status.PENDING, T0 - timedelta(seconds=1), 0),
    "pending, expired": (Status.PENDING, None, 700),
    "approved": (Status.APPROVED, None, 0),
    "denied": (Status.DENIED, None, 0),
    "consumed": (Status.CONSUMED, None, 0),
}


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("asking", ["public", "secret", "nobody", "other"])
@pytest.mark.parametrize("state", [*STATES, "unknown"])
async def test_a_poll_answers_and_stores_as_the_repositories_poll(
    embedded: Embedded, state: str, asking: str
) -> None:
    """The poll with its read beside the writer against the repositories' generic poll,
    on twin rows: the same decision, the same row afterwards."""
    async with embedded.store.transaction() as tx:
        await tx.clients.add(
            Client(
                client_id="other",
                name="other",
                scopes=("api",),
                key_lifetime=None,
                confidential=False,
                created_at=T0,
            )
        )
        if state != "unknown":
            status, last_poll, age = STATES[state]
            for twin in ("repositories", "writer"):
                new = replace(
                    new_flow(twin),
                    created_at=T0 - timedelta(seconds=age),
                    expires_at=T0 - timedelta(seconds=age) + timedelta(seconds=600),
                )
                added = await tx.device_authorizations.add(new)
                if status is not Status.PENDING:
                    await tx.device_authorizations.transition(
                        added.id, from_status=Status.PENDING, to_status=status, now=T0
                    )
                if last_poll is not None:
                    assert await tx.device_authorizations.record_poll(
                        added.id, previous_poll=None, now=last_poll, interval=5
                    )
    now = T0 + timedelta(milliseconds=1)
    async with embedded.store.transaction() as tx:
        expected = await tx.device_authorizations.poll(
            digest("device repositories"), client_id=asking, now=now, policy=POLICY
        )
    answered = await embedded.hot.poll(
        digest("device writer"), client_id=asking, now=now, policy=POLICY
    )
    assert as_answered(answered) == as_answered(expected)
    async with embedded.store.transaction() as tx:
        rows = [
            await tx.device_authorizations.get_by_device_code(digest(f"device {twin}"))
            for twin in ("repositories", "writer")
        ]
    stored = [
        None if row is None else (row.status, row.last_polled_at, row.interval) for row in rows
    ]
    assert stored[0] == stored[1]


@pytest.mark.rfc("6750", "2.1")
async def test_a_key_check_reads_and_records_its_use_as_the_general_path(
    embedded: Embedded,
) -> None:
    """A key looked up beside the writer is the key the repositories read; its first use
    is written with its ``key_first_used`` line, once, however many checks race."""
    async with embedded.store.transaction() as tx:
        alice = await tx.users.add("alice", None, T0)
        await tx.api_keys.add(
            new_key(digest("key"), user_id=alice.id, client_id="public", created_at=T0)
        )
        expected = await tx.api_keys.get_with_owner(digest("key"))
    assert await embedded.hot.key_with_owner(digest("key")) == expected
    assert await embedded.hot.key_with_owner(digest("unknown")) is None
    assert expected is not None
    key_id = expected[0].id
    now = T0 + timedelta(minutes=5)
    written = await asyncio.gather(
        *(
            embedded.hot.record_use(
                key_id, now=now, ip="198.51.100.9", not_since=now - timedelta(minutes=1)
            )
            for _ in range(5)
        )
    )
    assert sorted(written) == [False, False, False, False, True]
    found = await embedded.hot.key_with_owner(digest("key"))
    assert found is not None
    assert (found[0].last_used_at, found[0].last_used_ip) == (now, "198.51.100.9")
    async with embedded.store.transaction() as tx:
        events = await tx.audit.recent()
    assert [(e.kind, e.api_key_id, e.user_id, e.username, e.ip) for e in events] == [
        (AuditKind.KEY_FIRST_USED, key_id, alice.id, "alice", "198.51.100.9")
    ]
