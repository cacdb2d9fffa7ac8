"""Stored rows to the models of :mod:`devicelink.core.models`, one function per model.

Both the repositories (SQLAlchemy rows, given as ``row._mapping``) and the fast path
(asyncpg records) read rows through these, by column name, so a model is built the
same way whichever path read it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from devicelink.core.models import (
    ApiKey,
    AuditEvent,
    AuditKind,
    BrowserSession,
    Client,
    DeviceAuthorization,
    Status,
    User,
)


class Columns(Protocol):
    """A row read by column name: an asyncpg ``Record`` or a SQLAlchemy ``RowMapping``."""

    def __getitem__(self, name: str, /) -> Any: ...


def scope_tuple(stored: str | None) -> tuple[str, ...]:
    """A scope as stored (space-delimited text) to the tuple of its tokens."""
    return tuple(stored.split()) if stored else ()


def scope_text(scope: tuple[str, ...]) -> str:
    return " ".join(scope)


def client_from_row(row: Columns) -> Client:
    return Client(
        client_id=row["client_id"],
        name=row["name"],
        scopes=scope_tuple(row["scopes"]),
        key_lifetime=row["key_lifetime"],
        confidential=row["confidential"],
        secret_hash=row["secret_hash"],
        created_at=row["created_at"],
    )


def user_from_row(row: Columns) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        disabled=row["disabled_at"] is not None,
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        provider=row["provider"],
        subject=row["subject"],
        display_name=row["display_name"],
    )


def authorization_from_row(row: Columns) -> DeviceAuthorization:
    return DeviceAuthorization(
        id=row["id"],
        client_id=row["client_id"],
        scope=scope_tuple(row["scope"]),
        status=Status(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        interval=row["interval"],
        user_id=row["user_id"],
        approved_at=row["approved_at"],
        denied_at=row["denied_at"],
        consumed_at=row["consumed_at"],
        last_polled_at=row["last_polled_at"],
        request_ip=row["request_ip"],
        user_agent=row["user_agent"],
        denial_reason=row["denial_reason"],
    )


def authorization_and_client_from_row(row: Columns) -> tuple[DeviceAuthorization, Client]:
    """An authorization and its client read in one row: the authorization's columns,
    then the client's, those whose names clash labelled ``client_name``,
    ``client_scopes`` and ``client_created_at``."""
    client = Client(
        client_id=row["client_id"],
        name=row["client_name"],
        scopes=scope_tuple(row["client_scopes"]),
        key_lifetime=row["key_lifetime"],
        confidential=row["confidential"],
        secret_hash=row["secret_hash"],
        created_at=row["client_created_at"],
    )
    return authorization_from_row(row), client


def api_key_from_row(row: Columns) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        user_id=row["user_id"],
        client_id=row["client_id"],
        device_authorization_id=row["device_authorization_id"],
        scope=scope_tuple(row["scope"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        last_used_ip=row["last_used_ip"],
        revoked_at=row["revoked_at"],
        external_id=row["external_id"],
    )


def key_and_owner_from_row(row: Columns) -> tuple[ApiKey, User]:
    """A key and its owner read in one row: the key's columns, then the owner's
    ``username``, ``disabled_at``, ``created_at AS user_created_at``, ``provider`` and
    ``subject`` (the owner's password hash is not read)."""
    owner = User(
        id=row["user_id"],
        username=row["username"],
        disabled=row["disabled_at"] is not None,
        created_at=row["user_created_at"],
        provider=row["provider"],
        subject=row["subject"],
    )
    return api_key_from_row(row), owner


def session_from_row(row: Columns) -> BrowserSession:
    return BrowserSession(
        id=row["id"],
        user_id=row["user_id"],
        data=json.loads(row["data"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
    )


def audit_event_from_row(row: Columns) -> AuditEvent:
    return AuditEvent(
        kind=AuditKind(row["event"]),
        occurred_at=row["occurred_at"],
        user_id=row["user_id"],
        username=row["username"],
        client_id=row["client_id"],
        device_authorization_id=row["device_authorization_id"],
        api_key_id=row["api_key_id"],
        ip=row["ip"],
        user_agent=row["user_agent"],
        detail=row["detail"],
        id=row["id"],
    )
