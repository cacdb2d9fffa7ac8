"""The audit log: :class:`devicelink.core.ports.AuditLog`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select

from devicelink.core.models import AuditEvent
from devicelink.storage.repositories.base import Repository
from devicelink.storage.rows import audit_event_from_row
from devicelink.storage.tables import audit_events


def event_columns(event: AuditEvent) -> dict[str, object]:
    """``event`` as the values of its row (the SQLite writer stores its events so too)."""
    return {
        "occurred_at": event.occurred_at,
        "event": event.kind.value,
        "user_id": event.user_id,
        "username": event.username,
        "client_id": event.client_id,
        "device_authorization_id": event.device_authorization_id,
        "api_key_id": event.api_key_id,
        "ip": event.ip,
        # Cut to the columns' sizes: PostgreSQL refuses longer text.
        "user_agent": event.user_agent and event.user_agent[:512],
        "detail": event.detail and event.detail[:300],
    }


class SqlAuditLog(Repository):
    __slots__ = ()

    async def record(self, event: AuditEvent) -> None:
        await self._conn.execute(insert(audit_events).values(event_columns(event)))

    async def recent(
        self, *, user_id: int | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        statement = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if user_id is not None:
            statement = statement.where(audit_events.c.user_id == user_id)
        if since is not None:
            statement = statement.where(audit_events.c.occurred_at >= since)
        newest_first = await self._all(statement, audit_event_from_row)
        return newest_first[::-1]
