"""``clients remove`` while a key is being issued for that client: the key, once committed,
is never deleted unannounced by the database's cascade; the removal is refused and says
to run it again (``--revoke-keys`` then revokes it, announced). Runs on SQLite and
PostgreSQL through the ``store`` fixture, two transactions at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from devicelink.core.models import Client
from devicelink.service.admin import AdminService, ClientInUse
from devicelink.storage import SqlStore

from .conftest import digest, new_key

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CLIENT = Client(
    client_id="ci-bot", name="CI bot", scopes=("api",), key_lifetime=None, created_at=T0
)


async def test_a_key_issued_during_the_removal_is_kept_and_the_removal_refused(
    store: SqlStore,
) -> None:
    async with store.transaction() as tx:
        await tx.clients.add(CLIENT)
        user = await tx.users.add("alice", None, T0)
    issuing, issued = asyncio.Event(), asyncio.Event()

    async def issue() -> None:
        # A poll's transaction: the key is written, not yet committed.
        async with store.transaction() as tx:
            await tx.api_keys.add(
                new_key(digest("key"), user_id=user.id, client_id=CLIENT.client_id, created_at=T0)
            )
            issuing.set()
            await issued.wait()

    issuer = asyncio.create_task(issue())
    await issuing.wait()
    removal = asyncio.create_task(AdminService(store, lambda: T0).remove_client("ci-bot"))
    await asyncio.sleep(0.3)
    assert not removal.done()  # it waits for the issuing transaction
    issued.set()
    await issuer
    # Refused either way: SQLite's writer serialised the removal after the issuance
    # ("has 1 live key"); PostgreSQL's removal found it once it could lock the client.
    with pytest.raises(ClientInUse, match=r"live key|issued a key meanwhile"):
        await removal
    async with store.transaction() as tx:
        assert await tx.clients.get("ci-bot") == CLIENT
        keys = await tx.api_keys.list_for_client("ci-bot")
    assert [(key.user_id, key.is_active(T0)) for key, _ in keys] == [(user.id, True)]
