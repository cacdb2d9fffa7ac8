"""The domain records the service reads and writes, independent of any storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    """Stored state of a device authorization. "Expired" is never stored: it is read
    off ``expires_at`` against the clock, so checking expiry never writes."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CONSUMED = "consumed"


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
AUTHORIZATION_CODE_GRANT = "authorization_code"


@dataclass(frozen=True, slots=True)
class Client:
    """A registered OAuth client (RFC 6749 section 2)."""

    client_id: str
    name: str
    scopes: tuple[str, ...]
    """Scopes this client may ask for; a request without ``scope`` gets all of them."""
    key_lifetime: int | None
    """Seconds an issued key lives; ``None`` means keys of this client never expire."""
    confidential: bool = False
    secret_hash: bytes | None = field(default=None, repr=False)
    created_at: datetime | None = None
    resource_server: bool = False
    """An operator marked it as a resource server: a confidential client that may ask
    the introspection endpoint about any key (RFC 7662 section 4 wants introspection
    callers specifically authorised, not every confidential client)."""
    grant_types: tuple[str, ...] = (DEVICE_CODE_GRANT,)
    """The grants it may use: :data:`DEVICE_CODE_GRANT` (an operator may switch the
    phishable device flow off per client), :data:`AUTHORIZATION_CODE_GRANT`."""
    redirect_uris: tuple[str, ...] = ()
    """Its registered loopback redirect URIs (:mod:`devicelink.core.authcode`)."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    """The account's name here, unique: the ``sub`` of its keys and what the operator's
    commands take. For a user of an upstream or of the host, the name it first came
    with, or that name with a suffix when another account had it (``sam~1f0c2e9a``)."""
    disabled: bool = False
    password_hash: str | None = field(default=None, repr=False)
    created_at: datetime | None = None
    provider: str = "local"
    """Where the user signs in: ``local`` (a password here), ``oidc`` (upstream), or
    the provider a host's ``resolve_user`` names."""
    subject: str | None = None
    """The upstream or host's unique key of the user; with ``provider``, what maps a
    sign-in to this account (never the name, which need not be unique there)."""
    display_name: str | None = None
    """The name the upstream or the host gave at the last sign-in (None: ``username``)."""

    @property
    def shown_name(self) -> str:
        """The name pages show the user."""
        return self.display_name or self.username


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a sign-in proved the browser to be, before it is mapped to a :class:`User`."""

    provider: str
    subject: str
    """Unique per ``provider``: the key of the user (a host's user id, an upstream's
    ``iss`` and ``sub``)."""
    username: str
    """The name to show, which may change and need not be unique."""
    user_id: int | None = None
    """Set by sign-in methods that already know the local user (local accounts)."""


@dataclass(frozen=True, slots=True)
class BrowserSession:
    """A browser's session on the sign-in pages; the cookie holds a random token whose
    keyed hash identifies this record, so signing out ends it on the server."""

    id: int
    user_id: int | None
    data: dict[str, str]
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NewDeviceAuthorization:
    device_code_hash: bytes
    user_code_hash: bytes
    client_id: str
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    interval: int
    request_ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class DeviceAuthorization:
    """One run of the device flow (RFC 8628 section 3), as stored (hashes only)."""

    id: int
    client_id: str
    scope: tuple[str, ...]
    status: Status
    created_at: datetime
    expires_at: datetime
    interval: int
    user_id: int | None = None
    approved_at: datetime | None = None
    denied_at: datetime | None = None
    consumed_at: datetime | None = None
    last_polled_at: datetime | None = None
    request_ip: str | None = None
    user_agent: str | None = None
    denial_reason: str | None = None
    """Why the key issuer refused (``KeyIssueRefused``), when it, not the user, denied."""

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class NewApiKey:
    key_hash: bytes
    name: str
    user_id: int
    client_id: str
    device_authorization_id: int | None
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    user_id: int
    client_id: str
    device_authorization_id: int | None
    scope: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    revoked_at: datetime | None = None
    external_id: str | None = None
    """The key's id in the system that minted it, when that is not devicelink."""

    def is_active(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """What the device receives once: the key in clear, and when it stops working.

    ``external_id`` names the key in the system that minted it (an embedding
    application's own key store), so that revoking the device can revoke it there.
    """

    access_token: str
    expires_at: datetime | None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingRevocation:
    """A revoked key whose issuer has not yet been told (the issuer's outbox): kept
    until the issuer's ``revoke`` has committed, retried at ``next_attempt_at``."""

    id: int
    key: ApiKey
    requested_at: datetime
    next_attempt_at: datetime
    attempts: int = 0
    last_error: str | None = None


class AuditKind(StrEnum):
    FLOW_STARTED = "flow_started"
    WRONG_CODE = "wrong_code"
    APPROVED = "approved"
    DENIED = "denied"
    KEY_ISSUED = "key_issued"
    KEY_FIRST_USED = "key_first_used"
    REVOKED = "revoked"
    USER_DISABLED = "user_disabled"
    KEY_REFUSED = "key_refused"
    """The key issuer refused to mint a key (``KeyIssueRefused``); the reason in ``detail``."""
    UPSTREAM_LOGOUT = "upstream_logout"
    """The sign-in provider said the user signed out (back-channel logout); what was
    ended and revoked, and the token's ``jti`` digest, in ``detail``."""
    CODE_ISSUED = "code_issued"
    """A user approved a same-device sign-in: an authorization code went to the client."""
    CODE_REDEEMED = "code_redeemed"
    CODE_REPLAYED = "code_replayed"
    """A used authorization code came back: refused, and the key it issued revoked."""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the audit log: who did what, when and from where. Never a secret:
    codes and keys appear only as the ids of their rows."""

    kind: AuditKind
    occurred_at: datetime
    user_id: int | None = None
    username: str | None = None
    client_id: str | None = None
    device_authorization_id: int | None = None
    api_key_id: int | None = None
    ip: str | None = None
    user_agent: str | None = None
    detail: str | None = None
    id: int | None = None

    @classmethod
    def about_key(
        cls,
        kind: AuditKind,
        key: ApiKey,
        *,
        now: datetime,
        username: str | None,
        ip: str | None = None,
        detail: str | None = None,
    ) -> AuditEvent:
        """A line about one key: its owner, client and device flow read off the key."""
        return cls(
            kind=kind,
            occurred_at=now,
            user_id=key.user_id,
            username=username,
            client_id=key.client_id,
            device_authorization_id=key.device_authorization_id,
            api_key_id=key.id,
            ip=ip,
            detail=detail,
        )
