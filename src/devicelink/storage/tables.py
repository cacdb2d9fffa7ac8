"""The schema. Only Alembic migrations change the database; these models describe it.

Codes and keys are stored as keyed hashes only (HMAC-SHA256, 32 bytes); timestamps are
timezone-aware UTC on both databases.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Constraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false

from devicelink.core.models import DEVICE_CODE_GRANT


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so values are stored as
    naive UTC and made aware again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class ClientRow(Base):
    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(Text, default="")
    key_lifetime: Mapped[int | None] = mapped_column(Integer)
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime]
    # May call the introspection endpoint (an operator's decision, never implied).
    resource_server: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Space-delimited: the grants it may use, and its loopback redirect URIs (migration
    # 0011; clients registered before it keep the device grant alone).
    grant_types: Mapped[str] = mapped_column(Text, server_default=DEVICE_CODE_GRANT)
    redirect_uris: Mapped[str] = mapped_column(Text, server_default=text("''"))


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_users_provider_subject"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    # devicelink.core.names.name_key(username): "Admin" and "admin" are one name.
    username_key: Mapped[str] = mapped_column(String(220), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    provider: Mapped[str] = mapped_column(String(32), server_default="local")
    subject: Mapped[str | None] = mapped_column(String(512))
    # The upstream's or host's name of the user, kept up to date at sign-in; unlike
    # username it need not be unique (two host users may both be "sam").
    display_name: Mapped[str | None] = mapped_column(String(200))


def _unique_by_hash(table: str, *columns: str) -> list[Constraint]:
    """Each of ``columns`` unique: an exclusion constraint on a hash index on PostgreSQL
    (named ``ex_<table>_<column>``), a unique constraint elsewhere. Each is made only on
    its database (``ddl_if``), and compared only there (:func:`on_database`)."""
    constraints: list[Constraint] = []
    for column in columns:
        constraints.append(UniqueConstraint(column).ddl_if(dialect="sqlite"))
        excluded = ExcludeConstraint((column, "="), using="hash", name=f"ex_{table}_{column}")
        constraints.append(excluded.ddl_if(dialect="postgresql"))
    return constraints


def on_database(dialect: str) -> Callable[[object, str | None, str, bool, object], bool]:
    """Alembic's ``include_object`` for a database of ``dialect``: whether an object
    belongs in the comparison of the models with it. Alembic compares every constraint
    of the models, whichever database its ``ddl_if`` names: those meant for another
    database are left out, and so are the hash indexes PostgreSQL's exclusion
    constraints stand on (not indexes of the models)."""

    def include(item: object, name: str | None, kind: str, reflected: bool, _: object) -> bool:
        condition = getattr(item, "_ddl_if", None)
        if not reflected and condition is not None and condition.dialect is not None:
            named = condition.dialect
            return dialect in ((named,) if isinstance(named, str) else tuple(named))
        return not (reflected and kind == "index" and (name or "").startswith("ex_"))

    return include


class DeviceAuthorizationRow(Base):
    __tablename__ = "device_authorizations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'approved', 'denied', 'consumed')", name="status_known"
        ),
        Index("ix_device_authorizations_expires_at", "expires_at"),
        # Each code hash is unique. On PostgreSQL through a hash index (an exclusion
        # constraint: PostgreSQL's hash indexes cannot be UNIQUE), 4 bytes of hash a row
        # where a B-tree keeps the 32-byte key: random keys landing all over a B-tree
        # larger than shared_buffers slowed every new flow as the table grew (10^6 rows:
        # 0.82 of its rate at 10^3 in pgbench; the hash index: flat). On SQLite, as ever.
        *_unique_by_hash("device_authorizations", "device_code_hash", "user_code_hash"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    device_code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    user_code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    approved_at: Mapped[datetime | None]
    denied_at: Mapped[datetime | None]
    consumed_at: Mapped[datetime | None]
    last_polled_at: Mapped[datetime | None]
    interval: Mapped[int] = mapped_column(Integer)
    request_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    denial_reason: Mapped[str | None] = mapped_column(String(300))
    """Why it was denied when the key issuer refused, not the user (shown to the device)."""


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        # The purge finds keys that expired or were revoked long ago (bounded batches).
        Index("ix_api_keys_expires_at", "expires_at"),
        Index("ix_api_keys_revoked_at", "revoked_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    # One key per device authorization, enforced by the database as well as the
    # compare-and-set (DESIGN.md defect 9). NULL for keys not born of a device flow.
    device_authorization_id: Mapped[int | None] = mapped_column(
        ForeignKey("device_authorizations.id", ondelete="SET NULL"), unique=True
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
    # Indexed: a host tells devicelink of a key it revoked itself by this id.
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)


class IssuerRevocationRow(Base):
    """A revoked key whose issuer has yet to hear of it (an outbox): written in the
    transaction that revokes the key, deleted in the one that tells the issuer."""

    __tablename__ = "issuer_revocations"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    api_key_id: Mapped[int] = mapped_column(
        Id, ForeignKey("api_keys.id", ondelete="CASCADE"), unique=True
    )
    requested_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(300))


class BrowserSessionRow(Base):
    __tablename__ = "browser_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    data: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class AuditEventRow(Base):
    """What happened, who did it, when and from where; never a code, key or secret."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_user_id_occurred_at", "user_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    event: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str | None] = mapped_column(String(200))
    client_id: Mapped[str | None] = mapped_column(String(128))
    device_authorization_id: Mapped[int | None] = mapped_column(BigInteger)
    api_key_id: Mapped[int | None] = mapped_column(BigInteger)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    detail: Mapped[str | None] = mapped_column(String(300))


class AuthorizationCodeRow(Base):
    """An authorization code of a same-device sign-in (RFC 6749 section 4.1), by its
    keyed hash, bound to what it was issued for; used once, within a minute."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(String(512))
    code_challenge: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    redeemed_at: Mapped[datetime | None]
    # The key the redemption issued: revoked when the code comes back.
    api_key_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("api_keys.id", ondelete="SET NULL")
    )


metadata = Base.metadata


# The tables for SQLAlchemy Core statements (the repositories and the purge write Core,
# not ORM sessions).
class InstanceFactRow(Base):
    """What a deployment must agree on, by name: ``secret_fingerprint``, a value derived
    from the server secret that every process checks at start."""

    __tablename__ = "instance_facts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


clients = cast(Table, ClientRow.__table__)
users = cast(Table, UserRow.__table__)
device_authorizations = cast(Table, DeviceAuthorizationRow.__table__)
api_keys = cast(Table, ApiKeyRow.__table__)
issuer_revocations = cast(Table, IssuerRevocationRow.__table__)
browser_sessions = cast(Table, BrowserSessionRow.__table__)
audit_events = cast(Table, AuditEventRow.__table__)
instance_facts = cast(Table, InstanceFactRow.__table__)
authorization_codes = cast(Table, AuthorizationCodeRow.__table__)
