"""The fast path on SQLite: new flows and polls through the one writer, reads beside it.

On PostgreSQL the fast path is one statement a request on asyncpg's pool
(:mod:`devicelink.storage.fast_path`). On SQLite the cost is elsewhere: one connection
writes at a time, and each transaction through SQLAlchemy's async adapter is a
handful of trips to aiosqlite's thread. Here the device authorizations that arrive
together are written by the writer's thread in one transaction
(:class:`~devicelink.storage.sqlite_writer.SqliteWriter`), one trip for all of them, and
a poll reads on the reader's connection and writes (a pending code's bookkeeping
only) through the writer.

The decisions stay in :mod:`devicelink.core.lifecycle`: the writer reads the clients
and calls :func:`~devicelink.core.lifecycle.granted_scope`, a poll calls
:func:`~devicelink.core.lifecycle.decide_poll`, in Python, so nothing is restated in
SQL. What a new flow's write does not serve (an unknown or confidential client, a scope
the client may not have, a code collision) it leaves unwritten and returns None: the
general path then decides and answers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import ClauseElement, Connection, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.compiler import SQLCompiler

from devicelink.core import lifecycle
from devicelink.core.lifecycle import FlowPolicy, PollDecision
from devicelink.core.models import (
    DEVICE_CODE_GRANT,
    ApiKey,
    AuditEvent,
    AuditKind,
    Client,
    DeviceAuthorization,
    NewDeviceAuthorization,
    Status,
    User,
)
from devicelink.storage.database import SqlStore
from devicelink.storage.repositories.api_keys import WITH_OWNER
from devicelink.storage.repositories.audit import event_columns
from devicelink.storage.repositories.device_authorizations import generic_poll
from devicelink.storage.rows import (
    Columns,
    client_from_row,
    columns_of,
    key_and_owner_from_row,
    scope_text,
)
from devicelink.storage.sqlite_writer import SqliteWriter
from devicelink.storage.tables import api_keys, audit_events, clients, device_authorizations


class SqliteFastPath:
    """The :class:`devicelink.core.ports.FastPathStore` of the embedded default.

    New flows, polls' bookkeeping and keys' last uses are batched through the writer;
    polls and key lookups read on the reader, beside it.
    """

    def __init__(self, store: SqlStore, writer: SqliteWriter) -> None:
        self.store = store
        self.writer = writer
        self._starts = writer.operation(_start_flows)
        self._poll_writes = writer.operation(_record_polls)
        self._uses = writer.operation(_record_uses)

    async def start_flow(
        self,
        new: NewDeviceAuthorization,
        *,
        requested_scope: tuple[str, ...] | None,
    ) -> tuple[str, ...] | None:
        return await self._starts.submit(new.device_code_hash, new, requested_scope)

    async def poll(
        self, device_code_hash: bytes, *, client_id: str, now: datetime, policy: FlowPolicy
    ) -> PollDecision | None:
        """The repositories' generic poll (``SqlDeviceAuthorizationRepository.poll``, see
        :data:`devicelink.core.ports.POLL_CONTRACT`) with its read beside the writer: the
        client and the code's row read on the reader (:meth:`SqliteWriter.read`),
        :func:`~devicelink.core.lifecycle.decide_poll` decides, and only a
        pending code's poll is written, by the writer, with the repositories'
        compare-and-set on the last poll read (a poll that lost it reads again). An
        unknown, consumed, expired or denied code writes nothing and never waits for
        the write turn."""

        async def read() -> Columns | None:
            return self.writer.read(partial(_read_poll, device_code_hash, client_id))

        async def record(found: DeviceAuthorization, interval: int) -> bool:
            written: bool = await self._poll_writes.submit(
                found.id, found.id, found.last_polled_at, now, interval
            )
            return written

        return await generic_poll(read, record, client_id=client_id, now=now, policy=policy)

    async def key_with_owner(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        """The key and its owner, read on the reader (nothing remembered: SQLite has no
        way to tell this process of another's revocation)."""
        row = self.writer.read(partial(_KEY_BY_HASH.first, values={"key_hash": key_hash}))
        return None if row is None else key_and_owner_from_row(row)

    async def rehash_key(
        self,
        key_id: int,
        *,
        old_hash: bytes,
        new_hash: bytes,
        fingerprint: str,
        now: datetime,
        ip: str | None,
    ) -> bool:
        """The repositories' ``rehash``, in a transaction of its own (a rotation's
        first use of each key: rare)."""
        async with self.store.transaction() as tx:
            return await tx.api_keys.rehash(
                key_id,
                old_hash=old_hash,
                new_hash=new_hash,
                fingerprint=fingerprint,
                used_at=now,
                ip=ip,
            )

    async def record_use(
        self, key_id: int, *, now: datetime, ip: str | None, not_since: datetime
    ) -> bool:
        return await self._uses.submit(key_id, key_id, now, ip, not_since)

    async def close(self) -> None:
        await self.writer.close()


"""As the repositories' poll: reads of a code whose compare-and-set another poll won."""


_DIALECT = sqlite.dialect()


class _Prepared:
    """A statement compiled once, run on the driver's connection with SQLAlchemy's own
    conversion of each parameter and result column (timestamps to and from aware UTC,
    see :class:`~devicelink.storage.tables.UTCDateTime`). Building and running a
    SQLAlchemy statement for each request cost most of a flow's or a poll's time on the
    writer and the reader (measured); SQLite's own work is a small part."""

    def __init__(self, statement: ClauseElement, *, columns: Sequence[str] | None = None) -> None:
        compiled = statement.compile(dialect=_DIALECT, column_keys=columns)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        # Each parameter: its name, its conversion, its value when the statement holds
        # it (a literal such as the 'pending' status).
        self._order = [
            (name, bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT), bind.value)
            for name in compiled.positiontup or ()
            for bind in (compiled.binds[name],)
        ]
        self._results = {
            column.name: convert
            for column in getattr(statement, "selected_columns", ())
            if (convert := column.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None))
        }

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(
            value if convert is None or value is None else convert(value)
            for name, convert, held in self._order
            for value in (values.get(name, held),)
        )

    def run(self, connection: Connection, values: Mapping[str, Any]) -> sqlite3.Cursor:
        raw = connection.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        return raw.execute(self.sql, self.parameters(values))

    def first(self, connection: Connection, values: Mapping[str, Any]) -> Columns | None:
        """The first row, by column name, each column converted."""
        cursor = self.run(connection, values)
        row = cursor.fetchone()
        if row is None:
            return None
        return {
            name: value
            if value is None or name not in self._results
            else self._results[name](value)
            for (name, *_), value in zip(cursor.description, row, strict=True)
        }


# The repositories' poll's read and compare-and-set, and their add and audit record.
_POLL_READ = _Prepared(
    select(clients.c.confidential, device_authorizations)
    .select_from(clients)
    .outerjoin(
        device_authorizations,
        device_authorizations.c.device_code_hash == bindparam("device_code_hash"),
    )
    .where(clients.c.client_id == bindparam("client_id"))
)
_POLL_WRITE = {
    never_polled: _Prepared(
        update(device_authorizations)
        .where(device_authorizations.c.id == bindparam("authorization_id"))
        .where(device_authorizations.c.status == Status.PENDING.value)
        .where(
            device_authorizations.c.last_polled_at.is_(None)
            if never_polled
            else device_authorizations.c.last_polled_at == bindparam("previous_poll")
        )
        .values(last_polled_at=bindparam("now"), interval=bindparam("new_interval"))
    )
    for never_polled in (True, False)
}
_ADD_FLOW = _Prepared(
    sqlite_insert(device_authorizations)
    .on_conflict_do_nothing()
    .returning(device_authorizations.c.id),
    columns=[field.name for field in fields(NewDeviceAuthorization)] + ["status"],
)
_RECORD_EVENT = _Prepared(
    insert(audit_events),
    columns=list(
        event_columns(AuditEvent(kind=AuditKind.FLOW_STARTED, occurred_at=datetime.now(UTC)))
    ),
)


# The repositories' key lookup (a key with its owner), by hash and by id, and their
# ``record_use`` compare-and-set.
_KEY_BY_HASH = _Prepared(WITH_OWNER.where(api_keys.c.key_hash == bindparam("key_hash")))
_KEY_BY_ID = _Prepared(WITH_OWNER.where(api_keys.c.id == bindparam("key_id")))
_RECORD_USE = _Prepared(
    update(api_keys)
    .where(
        api_keys.c.id == bindparam("key_id"),
        api_keys.c.last_used_at.is_(None) | (api_keys.c.last_used_at < bindparam("not_since")),
    )
    .values(last_used_at=bindparam("now"), last_used_ip=bindparam("ip"))
)


def _record_uses(connection: Connection, uses: Sequence[tuple[Any, ...]]) -> list[bool]:
    """Keys' last uses, each as the general path writes it: the compare-and-set, and the
    ``key_first_used`` event when the key had none. False when it was written already."""
    written: list[bool] = []
    events: list[dict[str, object]] = []
    for key_id, now, ip, not_since in uses:
        row = _KEY_BY_ID.first(connection, {"key_id": key_id})
        values = {"key_id": key_id, "now": now, "ip": ip, "not_since": not_since}
        if row is None or _RECORD_USE.run(connection, values).rowcount != 1:
            written.append(False)
            continue
        key, owner = key_and_owner_from_row(row)
        if key.last_used_at is None:
            first = AuditEvent.about_key(
                AuditKind.KEY_FIRST_USED, key, now=now, username=owner.username, ip=ip
            )
            events.append(event_columns(first))
        written.append(True)
    _record_events(connection, events)
    return written


def _record_events(connection: Connection, events: list[dict[str, object]]) -> None:
    """Audit events, as the repositories' ``record`` stores them, in one statement."""
    if events:
        raw = connection.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.executemany(_RECORD_EVENT.sql, [_RECORD_EVENT.parameters(e) for e in events])


def _read_poll(device_code_hash: bytes, client_id: str, connection: Connection) -> Columns | None:
    """The asking client's confidentiality with the code's row beside it (its columns
    None for an unknown code); None for an unknown client."""
    return _POLL_READ.first(
        connection, {"device_code_hash": device_code_hash, "client_id": client_id}
    )


def _record_polls(connection: Connection, polls: Sequence[tuple[Any, ...]]) -> list[bool]:
    """The repositories' ``record_poll`` compare-and-set, for each poll: True when the
    code was still pending with the last poll that was read."""
    written: list[bool] = []
    for authorization_id, previous_poll, now, interval in polls:
        values = {
            "authorization_id": authorization_id,
            "previous_poll": previous_poll,
            "now": now,
            "new_interval": interval,
        }
        cursor = _POLL_WRITE[previous_poll is None].run(connection, values)
        written.append(cursor.rowcount == 1)
    return written


def grantable(client: Client | None, requested: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The scope a flow of ``client`` gets when nothing but storing it remains to decide:
    a known public client with the device grant, asking for a scope that
    :func:`~devicelink.core.lifecycle.granted_scope` grants. None leaves the request to
    the general path, which authenticates the client and explains any refusal."""
    if client is None or client.confidential or DEVICE_CODE_GRANT not in client.grant_types:
        return None
    try:
        return lifecycle.granted_scope(requested, client.scopes)
    except ValueError:
        return None


def _start_flows(
    connection: Connection, flows: Sequence[tuple[Any, ...]]
) -> list[tuple[str, ...] | None]:
    """New flows and their ``flow_started`` events, in the writer's transaction; each
    flow the scope granted, or None when it was not stored."""
    wanted = {new.client_id for new, _ in flows}
    found = {
        client.client_id: client
        for client in (
            client_from_row(row._mapping)
            for row in connection.execute(select(clients).where(clients.c.client_id.in_(wanted)))
        )
    }
    granted: list[tuple[str, ...] | None] = []
    events: list[dict[str, object]] = []
    for new, requested in flows:
        scope = grantable(found.get(new.client_id), requested)
        if scope is not None:
            # As the repository's add: a collision of either code stores nothing.
            values = columns_of(new, scope=scope_text(scope), status=Status.PENDING.value)
            inserted = _ADD_FLOW.run(connection, values).fetchone()
            added = None if inserted is None else inserted[0]
            if added is None:
                scope = None
            else:
                event = AuditEvent(
                    kind=AuditKind.FLOW_STARTED,
                    occurred_at=new.created_at,
                    client_id=new.client_id,
                    device_authorization_id=added,
                    ip=new.request_ip,
                    user_agent=new.user_agent,
                )
                events.append(event_columns(event))
        granted.append(scope)
    _record_events(connection, events)
    return granted
