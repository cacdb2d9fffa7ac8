"""Conformance of what issue 12 added to the repositories, on SQLite and PostgreSQL (the
``store`` fixture): clients' grants and redirect URIs, and the authorization codes of
same-device sign-in (``AuthorizationCodeRepository``): stored by keyed hash with every
binding, redeemed once by a compare-and-set, never after expiry, with the key it issued
kept for a replay to revoke.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from devicelink.core.authcode import NewAuthorizationCode
from devicelink.core.models import AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, User
from devicelink.core.ports import DuplicateCode
from devicelink.storage import SqlStore

from .conftest import digest
from .test_conformance import CLIENT, T0, seed
from .test_conformance import new_key as flow_key

pytestmark = pytest.mark.anyio

REDIRECT = "http://127.0.0.1:50123/callback"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def new_code(label: str, user: User, *, lifetime: int = 60) -> NewAuthorizationCode:
    return NewAuthorizationCode(
        code_hash=digest(f"code:{label}"),
        client_id=CLIENT.client_id,
        user_id=user.id,
        redirect_uri=REDIRECT,
        code_challenge=CHALLENGE,
        scope=("keys:read", "profile"),
        created_at=T0,
        expires_at=T0 + timedelta(seconds=lifetime),
    )


async def test_a_client_keeps_its_grants_and_redirect_uris(store: SqlStore) -> None:
    both = replace(
        CLIENT,
        client_id="both",
        grant_types=(AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT),
        redirect_uris=("http://127.0.0.1/callback", "http://[::1]/callback"),
    )
    async with store.transaction() as tx:
        await tx.clients.add(both)
        await tx.clients.add(replace(CLIENT, client_id="device-only"))
    async with store.transaction() as tx:
        assert await tx.clients.get("both") == both
        device_only = await tx.clients.get("device-only")
        assert device_only is not None
        assert device_only.grant_types == (DEVICE_CODE_GRANT,)
        assert device_only.redirect_uris == ()
        # Switching the device grant off is an update like any other.
        assert await tx.clients.update(
            replace(both, grant_types=(AUTHORIZATION_CODE_GRANT,), redirect_uris=())
        )
    async with store.transaction() as tx:
        updated = await tx.clients.get("both")
    assert updated is not None
    assert (updated.grant_types, updated.redirect_uris) == ((AUTHORIZATION_CODE_GRANT,), ())


async def test_a_code_is_found_by_its_hash_with_every_binding(store: SqlStore) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        added = await tx.authorization_codes.add(new_code("a", user))
    async with store.transaction() as tx:
        found = await tx.authorization_codes.get(digest("code:a"))
        assert await tx.authorization_codes.get(digest("code:other")) is None
    assert found == added
    assert (found.client_id, found.user_id, found.redirect_uri, found.code_challenge) == (
        CLIENT.client_id,
        user.id,
        REDIRECT,
        CHALLENGE,
    )
    assert found.scope == ("keys:read", "profile")
    assert (found.created_at, found.expires_at) == (T0, T0 + timedelta(seconds=60))
    assert (found.redeemed_at, found.api_key_id) == (None, None)


async def test_a_colliding_code_hash_is_refused_and_the_transaction_goes_on(
    store: SqlStore,
) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        await tx.authorization_codes.add(new_code("a", user))
        with pytest.raises(DuplicateCode):
            await tx.authorization_codes.add(new_code("a", user))
        await tx.authorization_codes.add(new_code("b", user))
    async with store.transaction() as tx:
        assert await tx.authorization_codes.get(digest("code:b")) is not None


async def test_a_code_is_redeemed_once_and_keeps_its_key(store: SqlStore) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        code = await tx.authorization_codes.add(new_code("a", user))
        key = await tx.api_keys.add(flow_key("a", user_id=user.id, device_authorization_id=None))
        # A key is kept only for a redeemed code.
        assert not await tx.authorization_codes.attach_key(code.id, key.id)
    now = T0 + timedelta(seconds=5)
    async with store.transaction() as tx:
        assert await tx.authorization_codes.redeem(code.id, now=now)
        assert not await tx.authorization_codes.redeem(code.id, now=now)
        assert await tx.authorization_codes.attach_key(code.id, key.id)
        assert not await tx.authorization_codes.attach_key(code.id, key.id)
    async with store.transaction() as tx:
        found = await tx.authorization_codes.get(digest("code:a"))
    assert found is not None
    assert (found.redeemed_at, found.api_key_id) == (now, key.id)


async def test_an_expired_code_is_never_redeemed(store: SqlStore) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        code = await tx.authorization_codes.add(new_code("a", user))
    async with store.transaction() as tx:
        assert not await tx.authorization_codes.redeem(code.id, now=T0 + timedelta(seconds=60))
    async with store.transaction() as tx:
        found = await tx.authorization_codes.get(digest("code:a"))
    assert found is not None
    assert found.redeemed_at is None


async def test_concurrent_redemptions_let_exactly_one_through(store: SqlStore) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        code = await tx.authorization_codes.add(new_code("a", user))

    async def redeem() -> bool:
        async with store.transaction() as tx:
            return await tx.authorization_codes.redeem(code.id, now=T0 + timedelta(seconds=1))

    outcomes = await asyncio.gather(*(redeem() for _ in range(8)))
    assert sorted(outcomes) == [False] * 7 + [True]


async def test_deleting_the_issued_key_keeps_the_code_row(store: SqlStore) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        code = await tx.authorization_codes.add(new_code("a", user))
        key = await tx.api_keys.add(flow_key("a", user_id=user.id, device_authorization_id=None))
        await tx.authorization_codes.redeem(code.id, now=T0)
        await tx.authorization_codes.attach_key(code.id, key.id)
    async with store.transaction() as tx:
        await tx.connection.exec_driver_sql(f"DELETE FROM api_keys WHERE id = {int(key.id)}")
    async with store.transaction() as tx:
        found = await tx.authorization_codes.get(digest("code:a"))
    assert found is not None
    assert (found.redeemed_at, found.api_key_id) == (T0, None)
