"""What an embedding application hears of: a device approved, a key issued, a key
revoked (``DeviceLink(on_event=...)``), to turn into its own events or webhooks.

An event is announced after the transaction that made it happen has committed, never
inside it: a host that hears of an event can rely on it having happened. It carries
ids and names only, never a code or a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from devicelink.core.models import ApiKey


class EventKind(StrEnum):
    APPROVED = "approved"
    """A user approved a device on the confirm page (no key exists yet)."""
    KEY_ISSUED = "key_issued"
    """A device received its key (the poll that consumed the approval)."""
    KEY_REVOKED = "key_revoked"
    """A key was revoked and its issuer has been told (at once for revocations made in
    this process; at the next drain for the operator's commands); also when the host
    itself reported a key it revoked."""


@dataclass(frozen=True, slots=True)
class DeviceLinkEvent:
    kind: EventKind
    occurred_at: datetime
    user_id: int | None = None
    username: str | None = None
    client_id: str | None = None
    device_authorization_id: int | None = None
    api_key_id: int | None = None
    external_id: str | None = None
    """The key's id in the issuer's own system (``IssuedKey.external_id``)."""
    detail: str | None = None

    @classmethod
    def about_key(
        cls,
        kind: EventKind,
        key: ApiKey,
        *,
        now: datetime,
        username: str | None,
        detail: str | None = None,
    ) -> DeviceLinkEvent:
        """An event about one key: its owner, client, flow and ids read off the key."""
        return cls(
            kind=kind,
            occurred_at=now,
            user_id=key.user_id,
            username=username,
            client_id=key.client_id,
            device_authorization_id=key.device_authorization_id,
            api_key_id=key.id,
            external_id=key.external_id,
            detail=detail,
        )


EventCallback = Callable[[DeviceLinkEvent], Awaitable[None] | None]
"""A host's callback: a plain function or a coroutine function. What it raises is
logged and goes no further: the request that caused the event is answered as usual."""
