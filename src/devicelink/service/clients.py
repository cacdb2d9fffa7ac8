"""Client authentication (RFC 6749 section 2.3), shared by every endpoint that takes a
``client_id``: the device flow's two endpoints and revocation."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from devicelink.core.codes import CodeHasher
from devicelink.core.errors import InvalidClient, InvalidRequest
from devicelink.core.models import Client
from devicelink.core.ports import Store, Transaction


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a request said about its client (RFC 6749 section 2.3)."""

    client_id: str | None
    client_secret: str | None = None
    used_basic_auth: bool = False


def is_client_id(candidate: str) -> bool:
    # RFC 6749 appendix A.1: client-id = *VSCHAR (printable ASCII); stored ids are <= 128.
    return 0 < len(candidate) <= 128 and all(" " <= ch <= "~" for ch in candidate)


class ClientAuthenticator:
    def __init__(self, hasher: CodeHasher, default_client_id: str | None) -> None:
        self._hasher = hasher
        self._default_client_id = default_client_id

    async def authenticate(
        self, tx: Transaction, creds: ClientCredentials, *, known: Client | None = None
    ) -> Client:
        """The client a request speaks for, authenticated. ``known`` is a client already
        read in the same transaction (the poll reads it with the device code), which
        saves a statement when it is the one asked for."""
        client_id = creds.client_id or self._default_client_id
        if not client_id:
            raise InvalidRequest("client_id is required")
        if not is_client_id(client_id):
            raise InvalidClient("unknown client")
        if known is not None and known.client_id == client_id:
            client: Client | None = known
        else:
            client = await tx.clients.get(client_id)
        if client is None:
            raise InvalidClient("unknown client")
        if client.confidential:
            # RFC 8628 section 3.4: confidential clients MUST authenticate.
            if creds.client_secret is None or client.secret_hash is None:
                raise InvalidClient("this client must authenticate")
            secret_hash = self._hasher.client_secret(creds.client_secret)
            if not hmac.compare_digest(secret_hash, client.secret_hash) and not (
                self._hasher.previous
                and await self._under_previous(tx, client, creds.client_secret, secret_hash)
            ):
                raise InvalidClient()
        return client

    async def _under_previous(
        self, tx: Transaction, client: Client, presented: str, secret_hash: bytes
    ) -> bool:
        """A rotation in progress: the secret matches under a previous server secret,
        and is rewritten under the current one (by the database's secret only)."""
        assert client.secret_hash is not None
        for previous in self._hasher.previous:
            old_hash = previous.client_secret(presented)
            if hmac.compare_digest(old_hash, client.secret_hash):
                await tx.clients.rehash_secret(
                    client.client_id,
                    old_hash=old_hash,
                    new_hash=secret_hash,
                    fingerprint=self._hasher.fingerprint,
                )
                return True
        return False


async def supported_scopes(store: Store) -> list[str]:
    """Every scope some registered client may ask for, sorted (RFC 8414
    ``scopes_supported``)."""
    async with store.transaction() as tx:
        registered = await tx.clients.list()
    return sorted({scope for client in registered for scope in client.scopes})
