"""Registered OAuth clients: :class:`devicelink.core.ports.ClientRepository`."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update

from devicelink.core.models import Client
from devicelink.storage.repositories.base import Repository
from devicelink.storage.repositories.instance_facts import is_database_secret
from devicelink.storage.rows import client_columns, client_from_row, columns_of
from devicelink.storage.tables import clients


class SqlClientRepository(Repository):
    __slots__ = ()

    async def get(self, client_id: str, *, for_update: bool = False) -> Client | None:
        query = select(clients).where(clients.c.client_id == client_id)
        return await self._first(query.with_for_update() if for_update else query, client_from_row)

    async def add(self, client: Client) -> None:
        async with self._refused_if_taken(f"client {client.client_id!r} already exists"):
            await self._conn.execute(
                insert(clients).values(columns_of(client, **client_columns(client)))
            )

    async def rehash_secret(
        self, client_id: str, *, old_hash: bytes, new_hash: bytes, fingerprint: str
    ) -> bool:
        return await self._changed_one_row(
            update(clients)
            .where(
                clients.c.client_id == client_id,
                clients.c.secret_hash == old_hash,
                is_database_secret(fingerprint),
            )
            .values(secret_hash=new_hash)
        )

    async def update(self, client: Client) -> bool:
        # Its grants and redirect URIs too: ClientRepository.update's contract.
        return await self._changed_one_row(
            update(clients)
            .where(clients.c.client_id == client.client_id)
            .values(
                name=client.name,
                **client_columns(client),
                key_lifetime=client.key_lifetime,
                confidential=client.confidential,
                secret_hash=client.secret_hash,
                resource_server=client.resource_server,
            )
        )

    async def list(self) -> list[Client]:
        return await self._all(select(clients).order_by(clients.c.client_id), client_from_row)

    async def remove(self, client_id: str) -> bool:
        return await self._changed_one_row(delete(clients).where(clients.c.client_id == client_id))
