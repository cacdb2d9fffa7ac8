"""Stored rows to the models of :mod:`devicelink.core.models`, one function per model,
and new records to rows: a model's field is the column of the same name.

Both the repositories (SQLAlchemy rows, given as ``row._mapping``) and the fast path
(asyncpg records) read rows through these, by column name, so a model is built the
same way whichever path read it.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from devicelink.core.authcode import AuthorizationCode
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

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

M = TypeVar("M", bound="DataclassInstance")


class Columns(Protocol):
    """A row read by column name: an asyncpg ``Record`` or a SQLAlchemy ``RowMapping``."""

    def __getitem__(self, name: str, /) -> Any: ...


def scope_tuple(stored: str | None) -> tuple[str, ...]:
    """A scope as stored (space-delimited text) to the tuple of its tokens."""
    return tuple(stored.split()) if stored else ()


def scope_text(scope: tuple[str, ...]) -> str:
    return " ".join(scope)


def columns_of(record: DataclassInstance, **converted: object) -> dict[str, Any]:
    """A new record (a dataclass of :mod:`devicelink.core.models`) as the values of a
    row: each field in the column of the same name, ``converted`` in place of its own
    (a scope as text, say)."""
    return {field.name: getattr(record, field.name) for field in fields(record)} | converted


def model_of(model: type[M], row: Columns, **converted: object) -> M:
    """A model read from a row: each field from the column of the same name, but those
    given in ``converted`` (a scope from text, say)."""
    read = {field.name: row[field.name] for field in fields(model) if field.name not in converted}
    return model(**read, **converted)


def client_from_row(row: Columns) -> Client:
    return model_of(Client, row, scopes=scope_tuple(row["scopes"]), **_client_lists(row))


def _client_lists(row: Columns) -> dict[str, tuple[str, ...]]:
    """A client's grants and redirect URIs, stored space-delimited as its scopes are."""
    return {
        "grant_types": scope_tuple(row["grant_types"]),
        "redirect_uris": scope_tuple(row["redirect_uris"]),
    }


def client_columns(client: Client) -> dict[str, str]:
    """A client's scopes, grants and redirect URIs as stored."""
    return {
        "scopes": scope_text(client.scopes),
        "grant_types": scope_text(client.grant_types),
        "redirect_uris": scope_text(client.redirect_uris),
    }


def user_from_row(row: Columns) -> User:
    return model_of(User, row, disabled=row["disabled_at"] is not None)


def authorization_from_row(row: Columns) -> DeviceAuthorization:
    return model_of(
        DeviceAuthorization, row, scope=scope_tuple(row["scope"]), status=Status(row["status"])
    )


def authorization_and_client_from_row(row: Columns) -> tuple[DeviceAuthorization, Client]:
    """An authorization and its client read in one row: the authorization's columns,
    then the client's, those whose names clash labelled ``client_name``,
    ``client_scopes`` and ``client_created_at``."""
    client = model_of(
        Client,
        row,
        name=row["client_name"],
        scopes=scope_tuple(row["client_scopes"]),
        created_at=row["client_created_at"],
        **_client_lists(row),
    )
    return authorization_from_row(row), client


def api_key_from_row(row: Columns) -> ApiKey:
    return model_of(ApiKey, row, scope=scope_tuple(row["scope"]))


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


def authorization_code_from_row(row: Columns) -> AuthorizationCode:
    return model_of(AuthorizationCode, row, scope=scope_tuple(row["scope"]))


def session_from_row(row: Columns) -> BrowserSession:
    return model_of(BrowserSession, row, data=json.loads(row["data"]))


def audit_event_from_row(row: Columns) -> AuditEvent:
    return model_of(AuditEvent, row, kind=AuditKind(row["event"]))
