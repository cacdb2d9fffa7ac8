"""Runs of the device flow: :class:`devicelink.core.ports.DeviceAuthorizationRepository`.

Every state change is one ``UPDATE ... WHERE <expected state>`` whose row count says
whether it happened; nothing reads a row, decides, and writes it back unguarded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from devicelink.core import lifecycle
from devicelink.core.lifecycle import FlowPolicy, PollDecision
from devicelink.core.models import Client, DeviceAuthorization, NewDeviceAuthorization, Status
from devicelink.core.ports import DuplicateCode
from devicelink.storage.repositories.base import Repository
from devicelink.storage.rows import (
    Columns,
    authorization_and_client_from_row,
    authorization_from_row,
    columns_of,
    scope_text,
)
from devicelink.storage.tables import clients, device_authorizations

_t = device_authorizations

# Every column but the code hashes, which are only ever looked up, never read back.
_COLUMNS = (
    _t.c.id,
    _t.c.client_id,
    _t.c.scope,
    _t.c.status,
    _t.c.created_at,
    _t.c.expires_at,
    _t.c.interval,
    _t.c.user_id,
    _t.c.approved_at,
    _t.c.denied_at,
    _t.c.consumed_at,
    _t.c.last_polled_at,
    _t.c.request_ip,
    _t.c.user_agent,
    _t.c.denial_reason,
)

# A poll judges this many fresh reads of its code before it leaves the decision to the
# general path (each lost compare-and-set means another poll of the code got in first).
_POLL_READS = 3


async def generic_poll(
    read: Callable[[], Awaitable[Columns | None]],
    record: Callable[[DeviceAuthorization, int], Awaitable[bool]],
    *,
    client_id: str,
    now: datetime,
    policy: FlowPolicy,
) -> PollDecision | None:
    """The generic poll (:data:`devicelink.core.ports.POLL_CONTRACT`), whatever does
    the reading and the writing: ``read`` gives the asking client's ``confidential``
    with the code's columns beside it (``id`` None for an unknown code; None for an
    unknown client), ``core`` decides, and ``record`` (the compare-and-set on the last
    poll read, with the new interval) records a pending code's poll; a lost
    compare-and-set reads again. None: the general path decides."""
    for _ in range(_POLL_READS):
        row = await read()
        if row is None or row["confidential"]:
            return None  # not a public client: the general path authenticates it
        found = None if row["id"] is None else authorization_from_row(row)
        decision = lifecycle.decide_poll(found, client_id=client_id, now=now, policy=policy)
        if not isinstance(decision, lifecycle.KeepWaiting | lifecycle.SlowDownTo):
            return decision  # a refusal, or the key's issuance: nothing to record
        assert found is not None
        if await record(found, decision.interval):
            return decision
    return None


# The time a transition into each status stamps.
_STAMPS = {
    Status.APPROVED: "approved_at",
    Status.DENIED: "denied_at",
    Status.CONSUMED: "consumed_at",
}


class SqlDeviceAuthorizationRepository(Repository):
    __slots__ = ()

    async def add(self, new: NewDeviceAuthorization) -> DeviceAuthorization:
        # INSERT ... ON CONFLICT DO NOTHING RETURNING: a collision of either code hash
        # returns no row and leaves the transaction usable, without a savepoint.
        dialect_insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        added = await self._first(
            dialect_insert(_t)
            .values(columns_of(new, scope=scope_text(new.scope), status=Status.PENDING.value))
            .on_conflict_do_nothing()
            .returning(*_COLUMNS),
            authorization_from_row,
        )
        if added is None:
            raise DuplicateCode
        return added

    async def get_by_device_code(self, device_code_hash: bytes) -> DeviceAuthorization | None:
        return await self._first(
            select(*_COLUMNS).where(_t.c.device_code_hash == device_code_hash),
            authorization_from_row,
        )

    async def get_by_user_code(self, user_code_hash: bytes) -> DeviceAuthorization | None:
        return await self._first(
            select(*_COLUMNS).where(_t.c.user_code_hash == user_code_hash),
            authorization_from_row,
        )

    async def get_with_client(
        self, device_code_hash: bytes
    ) -> tuple[DeviceAuthorization, Client] | None:
        return await self._first(
            select(
                *_COLUMNS,
                clients.c.name.label("client_name"),
                clients.c.scopes.label("client_scopes"),
                clients.c.key_lifetime,
                clients.c.confidential,
                clients.c.secret_hash,
                clients.c.created_at.label("client_created_at"),
                clients.c.resource_server,
                clients.c.grant_types,
                clients.c.redirect_uris,
            )
            .join(clients, clients.c.client_id == _t.c.client_id)
            .where(_t.c.device_code_hash == device_code_hash),
            authorization_and_client_from_row,
        )

    async def poll(
        self, device_code_hash: bytes, *, client_id: str, now: datetime, policy: FlowPolicy
    ) -> PollDecision | None:
        """The generic poll, on any dialect (:data:`devicelink.core.ports.POLL_CONTRACT`):
        one read of the asking client with the code's row beside it, ``core`` decides,
        and a pending code's poll is recorded by :meth:`record_poll`'s compare-and-set,
        exactly when :func:`~devicelink.core.lifecycle.poll_refusal` finds no refusal and
        the code is pending (the condition the one-statement poll restates). A lost
        compare-and-set (another poll of the code got in first) reads the row again."""
        statement = (
            select(clients.c.confidential, *_COLUMNS)
            .select_from(clients)
            .outerjoin(_t, _t.c.device_code_hash == device_code_hash)
            .where(clients.c.client_id == client_id)
        )

        async def read() -> Columns | None:
            row = (await self._conn.execute(statement)).first()
            return None if row is None else row._mapping

        async def record(found: DeviceAuthorization, interval: int) -> bool:
            return await self.record_poll(
                found.id, previous_poll=found.last_polled_at, now=now, interval=interval
            )

        return await generic_poll(read, record, client_id=client_id, now=now, policy=policy)

    async def record_poll(
        self,
        authorization_id: int,
        *,
        previous_poll: datetime | None,
        now: datetime,
        interval: int,
    ) -> bool:
        last = _t.c.last_polled_at
        return await self._changed_one_row(
            update(_t)
            .where(_t.c.id == authorization_id)
            .where(_t.c.status == Status.PENDING.value)
            .where(last.is_(None) if previous_poll is None else last == previous_poll)
            .values(last_polled_at=now, interval=interval)
        )

    async def transition(
        self,
        authorization_id: int,
        *,
        from_status: Status,
        to_status: Status,
        now: datetime,
        user_id: int | None = None,
        reason: str | None = None,
    ) -> bool:
        values: dict[str, Any] = {"status": to_status.value}
        if to_status is Status.DENIED:
            values["denial_reason"] = reason[:300] if reason else None
        stamp = _STAMPS.get(to_status)
        if stamp is not None:
            values[stamp] = now
        if to_status in (Status.APPROVED, Status.DENIED):
            values["user_id"] = user_id
        return await self._changed_one_row(
            update(_t)
            .where(_t.c.id == authorization_id)
            .where(_t.c.status == from_status.value)
            .where(_t.c.expires_at > now)
            .values(**values)
        )
