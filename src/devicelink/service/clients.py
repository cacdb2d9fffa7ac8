"""Client authentication (RFC 6749 section 2.3), shared by every endpoint that takes a
``client_id``: the device flow's two endpoints and revocation.

During a rotation of the server secret a confidential client's secret may still be
stored under a previous secret's hash; once it has authenticated, the hash is rewritten
under the current secret in a transaction of its own, after the request's
(:meth:`ClientAuthenticator.transaction`): a request that ends in an error (a poll still
pending, an expired or denied code) rolls its own transaction back, and a client whose
every request ended so would otherwise never move, and be refused once the previous
secret is dropped.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from devicelink.core.codes import CodeHasher
from devicelink.core.errors import InvalidClient, InvalidRequest
from devicelink.core.models import Client
from devicelink.core.ports import Store, Transaction

log = logging.getLogger("devicelink.clients")


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a request said about its client (RFC 6749 section 2.3)."""

    client_id: str | None
    client_secret: str | None = None
    used_basic_auth: bool = False


def is_client_id(candidate: str) -> bool:
    # RFC 6749 appendix A.1: client-id = *VSCHAR (printable ASCII); stored ids are <= 128.
    # For ASCII, isprintable() is exactly " " to "~" (control characters and DEL are not).
    return 0 < len(candidate) <= 128 and candidate.isascii() and candidate.isprintable()


@dataclass(frozen=True, slots=True)
class _SecretMove:
    """A client secret found under a previous server secret's hash: its rewrite."""

    client_id: str
    old_hash: bytes
    new_hash: bytes
    fingerprint: str


_MOVES: ContextVar[list[_SecretMove] | None] = ContextVar("devicelink_secret_moves", default=None)
"""The moves found in the request transaction of :meth:`ClientAuthenticator.transaction`
under way in this task; None outside one (then a move is made in the caller's own
transaction, as it authenticates)."""


class ClientAuthenticator:
    def __init__(self, hasher: CodeHasher, default_client_id: str | None) -> None:
        self._hasher = hasher
        self._default_client_id = default_client_id

    @asynccontextmanager
    async def transaction(self, store: Store) -> AsyncIterator[Transaction]:
        """``store.transaction()`` for a request that authenticates its client. A client
        secret found under a previous server secret is rewritten when the transaction
        has ended, committed or rolled back, in one of its own (not nested in it: on
        SQLite it waits for the write turn the request's holds)."""
        moves: list[_SecretMove] = []
        token = _MOVES.set(moves)
        try:
            async with store.transaction() as tx:
                yield tx
        finally:
            _MOVES.reset(token)
            for move in moves:
                await self._move(store, move)

    async def _move(self, store: Store, move: _SecretMove) -> None:
        """Rewrite one secret's hash; a failure is logged (never the hashes) and left to
        the client's next request, which finds the old hash again."""
        try:
            async with store.transaction() as tx:
                await tx.clients.rehash_secret(
                    move.client_id,
                    old_hash=move.old_hash,
                    new_hash=move.new_hash,
                    fingerprint=move.fingerprint,
                )
        except Exception as exc:
            log.warning(
                "could not rewrite the secret of client %r under the current server "
                "secret (%s); its next request tries again",
                move.client_id,
                type(exc).__name__,
            )

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
        and is rewritten under the current one (by the database's secret only): after
        the request's transaction when it is one of :meth:`transaction`, else in it."""
        assert client.secret_hash is not None
        for previous in self._hasher.previous:
            old_hash = previous.client_secret(presented)
            if hmac.compare_digest(old_hash, client.secret_hash):
                move = _SecretMove(
                    client.client_id, old_hash, secret_hash, self._hasher.fingerprint
                )
                moves = _MOVES.get()
                if moves is not None:
                    moves.append(move)
                else:
                    await tx.clients.rehash_secret(
                        move.client_id,
                        old_hash=move.old_hash,
                        new_hash=move.new_hash,
                        fingerprint=move.fingerprint,
                    )
                return True
        return False


async def supported_scopes(store: Store) -> list[str]:
    """Every scope some registered client may ask for, sorted (RFC 8414
    ``scopes_supported``)."""
    async with store.transaction() as tx:
        registered = await tx.clients.list()
    return sorted({scope for client in registered for scope in client.scopes})
