"""The Protocols through which the service reaches storage and upstream login.

Contracts, in the manner of Dex's ``storage.Storage``: times are timezone-aware UTC;
"not found" is ``None`` or ``False``, never an exception; every state change is a
compare-and-set that reports whether it happened, never read-then-write.

One module a concern, every name importable from here: ``repositories`` (the general
path: the repositories, the transaction holding them, the store), ``fast_path`` (one
statement per request on the hottest paths), ``issuing`` (the pluggable key issuer),
``signin`` (upstream sign-in) and ``purging`` (maintenance).
"""

from __future__ import annotations

from devicelink.core.ports.fast_path import (
    FastPathStore,
)
from devicelink.core.ports.issuing import (
    KeyIssuer,
)
from devicelink.core.ports.purging import (
    PURGE_KINDS,
    PurgeKind,
    Purger,
)
from devicelink.core.ports.repositories import (
    POLL_CONTRACT,
    ApiKeyRepository,
    AuditLog,
    AuthorizationCodeRepository,
    BrowserSessionRepository,
    ClientRepository,
    DeviceAuthorizationRepository,
    DuplicateCode,
    InstanceFacts,
    IssuerRevocationRepository,
    StorageUnavailable,
    Store,
    Transaction,
    UserRepository,
)
from devicelink.core.ports.signin import (
    Authenticator,
    LoginFailed,
    LoginRedirect,
)

__all__ = [
    "POLL_CONTRACT",
    "PURGE_KINDS",
    "ApiKeyRepository",
    "AuditLog",
    "Authenticator",
    "AuthorizationCodeRepository",
    "BrowserSessionRepository",
    "ClientRepository",
    "DeviceAuthorizationRepository",
    "DuplicateCode",
    "FastPathStore",
    "InstanceFacts",
    "IssuerRevocationRepository",
    "KeyIssuer",
    "LoginFailed",
    "LoginRedirect",
    "PurgeKind",
    "Purger",
    "StorageUnavailable",
    "Store",
    "Transaction",
    "UserRepository",
]
