"""A stored API key (:class:`Credential`) and what can go wrong keeping it.

Where keys are kept is ``devicelink.client.store``; this module is the value alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from devicelink.client.urls import normalise_server

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Final

DEFAULT_TOKEN_ENV: Final = "DEVICELINK_TOKEN"  # noqa: S105 - a variable name
"""The environment variable whose key overrides the stored one (a name, not a secret)."""


class CredentialStoreError(Exception):
    """The stored credentials cannot be read or written; the message is for the user."""


class InsecureCredentialsFileError(CredentialStoreError):
    """The credentials file is readable by other users or owned by someone else."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _optional_time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = _optional_str(data, key)
    return None if value is None else datetime.fromisoformat(value)


@dataclass(frozen=True, kw_only=True)
class Credential:
    """An API key for one server, with what the client knows about it.

    ``server`` is normalised on construction; times are aware and converted to UTC;
    the key never appears in ``repr``.

    ``revocation_pending_since`` marks a key that a logout could not revoke (the server
    unreachable, failing or refusing): from then on the key is never used nor handed out,
    and the next command that reaches the server revokes it, then forgets it. It is kept
    only while set, so a record without it (every record written before it existed) is an
    ordinary key.
    """

    server: str
    access_token: str = field(repr=False)
    client_id: str
    scope: str | None = None
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=_utcnow)
    username: str | None = None
    revocation_pending_since: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", normalise_server(self.server))
        if not isinstance(self.access_token, str) or not self.access_token:
            raise ValueError("access_token must be a non-empty string")
        if self.expires_at is not None:
            object.__setattr__(self, "expires_at", _as_utc(self.expires_at, "expires_at"))
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "created_at"))
        if self.revocation_pending_since is not None:
            since = _as_utc(self.revocation_pending_since, "revocation_pending_since")
            object.__setattr__(self, "revocation_pending_since", since)

    @property
    def revocation_pending(self) -> bool:
        """Whether the key is marked to be revoked (and so must not be used)."""
        return self.revocation_pending_since is not None

    def marked_for_revocation(self, since: datetime) -> Credential:
        """This credential marked to be revoked (an already marked one keeps its date)."""
        if self.revocation_pending_since is not None:
            return self
        return replace(self, revocation_pending_since=since)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Whether the key has passed its ``expires_at`` (never, for a key without one)."""
        if self.expires_at is None:
            return False
        return (now or _utcnow()) >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; times as ISO 8601 with offset. The revocation mark appears
        only when set: an ordinary key's record is what it always was."""
        data: dict[str, Any] = {
            "server": self.server,
            "access_token": self.access_token,
            "client_id": self.client_id,
            "scope": self.scope,
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "created_at": self.created_at.isoformat(),
            "username": self.username,
        }
        if self.revocation_pending_since is not None:
            data["revocation_pending_since"] = self.revocation_pending_since.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Credential:
        """The inverse of :meth:`to_dict`; unknown keys are ignored. ValueError if malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("a credential must be a JSON object")
        server, token = data.get("server"), data.get("access_token")
        if not isinstance(server, str) or not isinstance(token, str):
            raise ValueError("a credential needs server and access_token strings")
        created_at = _optional_time(data, "created_at")
        return cls(
            server=server,
            access_token=token,
            client_id=_optional_str(data, "client_id") or "",
            scope=_optional_str(data, "scope"),
            expires_at=_optional_time(data, "expires_at"),
            created_at=created_at if created_at is not None else _utcnow(),
            username=_optional_str(data, "username"),
            revocation_pending_since=_optional_time(data, "revocation_pending_since"),
        )


__all__ = [
    "DEFAULT_TOKEN_ENV",
    "Credential",
    "CredentialStoreError",
    "InsecureCredentialsFileError",
]
