"""Repositories: the contracts of :mod:`devicelink.core.ports` in SQL, one module per
aggregate, all sharing the connection of one :class:`devicelink.storage.SqlStore`
transaction. Rows become models through :mod:`devicelink.storage.rows`."""

from devicelink.storage.repositories.api_keys import SqlApiKeyRepository
from devicelink.storage.repositories.audit import SqlAuditLog
from devicelink.storage.repositories.authorization_codes import SqlAuthorizationCodeRepository
from devicelink.storage.repositories.browser_sessions import SqlBrowserSessionRepository
from devicelink.storage.repositories.clients import SqlClientRepository
from devicelink.storage.repositories.device_authorizations import (
    SqlDeviceAuthorizationRepository,
)
from devicelink.storage.repositories.instance_facts import SqlInstanceFacts
from devicelink.storage.repositories.issuer_revocations import SqlIssuerRevocationRepository
from devicelink.storage.repositories.users import SqlUserRepository

__all__ = [
    "SqlApiKeyRepository",
    "SqlAuditLog",
    "SqlAuthorizationCodeRepository",
    "SqlBrowserSessionRepository",
    "SqlClientRepository",
    "SqlDeviceAuthorizationRepository",
    "SqlInstanceFacts",
    "SqlIssuerRevocationRepository",
    "SqlUserRepository",
]
