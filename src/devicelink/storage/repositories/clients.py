"""Registered OAuth clients: :class:`devicelink.core.ports.ClientRepository`."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from devicelink.core.models import Client
from devicelink.storage.repositories.base import Repository
from devicelink.storage.rows import client_from_row, columns_of, scope_text
from devicelink.storage.tables import clients


class SqlClientRepository(Repository):
    __slots__ = ()

    async def get(self, client_id: str) -> Client | None:
        return await self._first(
            select(clients).where(clients.c.client_id == client_id), client_from_row
        )

    async def add(self, client: Client) -> None:
        async with self._refused_if_taken(f"client {client.client_id!r} already exists"):
            await self._conn.execute(
                insert(clients).values(columns_of(client, scopes=scope_text(client.scopes)))
            )

    async def update(self, client: Client) -> bool:
        return await self._changed_one_row(
            update(clients)
            .where(clients.c.client_id == client.client_id)
            .values(
                name=client.name,
                scopes=scope_text(client.scopes),
                key_lifetime=client.key_lifetime,
                confidential=client.confidential,
                secret_hash=client.secret_hash,
                resource_server=client.resource_server,
            )
        )

    async def list(self) -> list[Client]:
        return await self._all(select(clients).order_by(clients.c.client_id), client_from_row)
