"""A device code handed out before a secret rotation still polls (RFC 8628 §3.5).

Stored codes are keyed hashes of the server secret: while a rotation is in progress the
hasher keeps the previous secrets' hashers (``CodeHasher.previous``), and a code unknown
under the current secret is looked for under theirs, on every path a poll can take (the
repositories' poll on SQLite, the one statement on PostgreSQL, the general path that
issues the key). Outside a rotation a code hashed with another secret is unknown.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devicelink.core.codes import CodeHasher
from devicelink.core.errors import AuthorizationPending, InvalidGrant
from devicelink.core.models import Client
from devicelink.core.ports import FastPathStore
from devicelink.service.clients import ClientCredentials
from devicelink.service.device_flow import DeviceFlowService
from devicelink.service.issuing import StoredKeyIssuer
from devicelink.storage import SqlStore
from devicelink.storage.fast_path import AsyncpgFastPath
from tests.support.databases import Database

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CLI = ClientCredentials("cli")
OLD = CodeHasher(b"the secret before the rotation".ljust(40, b"."))
NEW = CodeHasher(b"the secret after the rotation".ljust(40, b"."), previous=(OLD,))
ALONE = CodeHasher(b"the secret after the rotation".ljust(40, b"."))


def service(
    store: SqlStore, hasher: CodeHasher, fast_path: FastPathStore | None
) -> DeviceFlowService:
    return DeviceFlowService(
        store, hasher, StoredKeyIssuer(), clock=lambda: NOW, fast_path=fast_path
    )


@pytest.mark.rfc("8628", "3.5")
async def test_a_code_from_before_the_rotation_polls_until_its_key(store: SqlStore) -> None:
    await poll_through_a_rotation(store, None)


@pytest.mark.rfc("8628", "3.5")
@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_code_from_before_the_rotation_polls_on_the_fast_path(
    store: SqlStore, database: Database
) -> None:
    hot = await AsyncpgFastPath.connect(database.url)
    try:
        await poll_through_a_rotation(store, hot)
    finally:
        await hot.close()


async def poll_through_a_rotation(store: SqlStore, fast_path: FastPathStore | None) -> None:
    async with store.transaction() as tx:
        await tx.clients.add(
            Client(
                client_id="cli",
                name="CLI",
                scopes=("api",),
                key_lifetime=None,
                confidential=False,
                created_at=NOW,
            )
        )
        alice = await tx.users.add("alice", None, NOW)
    before = service(store, OLD, None)
    started = await before.start(CLI, scope=None, request_ip=None, user_agent=None)

    with pytest.raises(InvalidGrant):  # outside a rotation, another secret's code
        await service(store, ALONE, fast_path).poll(CLI, started.device_code)
    after = service(store, NEW, fast_path)
    with pytest.raises(AuthorizationPending):
        await after.poll(CLI, started.device_code)
    with pytest.raises(InvalidGrant):  # a code no secret ever hashed
        await after.poll(CLI, "not-a-code-of-ours")

    await before.approve(started.user_code, user_id=alice.id)
    grant = await after.poll(CLI, started.device_code)
    assert grant.access_token
    with pytest.raises(InvalidGrant):  # consumed: the key is handed out once
        await after.poll(CLI, started.device_code)
