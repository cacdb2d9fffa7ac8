"""Conformance of what issue 17 added to the repositories, on SQLite and PostgreSQL (the
``store`` fixture): the outbox of revocations a key issuer has yet to hear of
(``IssuerRevocationRepository``), keys found by the issuer's ``external_id``, and the
reason a denial keeps.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from devicelink.core.models import ApiKey, Status, User
from devicelink.storage import SqlStore

from .conftest import digest
from .test_conformance import CLIENT, T0, Boom, add_authorization, seed, transition
from .test_conformance import new_key as flow_key

pytestmark = pytest.mark.anyio


async def stored_key(store: SqlStore, user: User, label: str, external_id: str | None) -> ApiKey:
    async with store.transaction() as tx:
        return await tx.api_keys.add(
            replace(
                flow_key(label, user_id=user.id, device_authorization_id=None),
                external_id=external_id,
            )
        )


async def test_a_queued_revocation_is_due_at_once_with_its_key(store: SqlStore) -> None:
    user = await seed(store)
    key = await stored_key(store, user, "a", "hk1")
    async with store.transaction() as tx:
        queued = await tx.issuer_revocations.add(key.id, now=T0)
        assert queued is not None
        # One pending revocation per key: a second is not queued.
        assert await tx.issuer_revocations.add(key.id, now=T0) is None
    async with store.transaction() as tx:
        assert await tx.issuer_revocations.due(now=T0 - timedelta(seconds=1), limit=10) == []
        (due,) = await tx.issuer_revocations.due(now=T0, limit=10)
        assert await tx.issuer_revocations.count() == 1
    assert due.id == queued
    assert due.key == key
    assert (due.requested_at, due.next_attempt_at, due.attempts, due.last_error) == (
        T0,
        T0,
        0,
        None,
    )


async def test_due_comes_longest_due_first_and_at_most_limit(store: SqlStore) -> None:
    user = await seed(store)
    keys = [await stored_key(store, user, str(n), None) for n in range(3)]
    async with store.transaction() as tx:
        ids = [await tx.issuer_revocations.add(key.id, now=T0) for key in keys]
        assert ids[0] is not None
        assert await tx.issuer_revocations.postpone(
            ids[0], until=T0 + timedelta(seconds=5), error="E"
        )
    async with store.transaction() as tx:
        due = await tx.issuer_revocations.due(now=T0 + timedelta(seconds=10), limit=2)
    assert [pending.id for pending in due] == [ids[1], ids[2]]


async def test_a_claim_deletes_when_it_commits_and_restores_when_it_rolls_back(
    store: SqlStore,
) -> None:
    user = await seed(store)
    key = await stored_key(store, user, "a", "hk1")
    async with store.transaction() as tx:
        queued = await tx.issuer_revocations.add(key.id, now=T0)
    assert queued is not None

    async def claim_then_fail() -> None:
        async with store.transaction() as tx:
            claimed = await tx.issuer_revocations.claim(queued, now=T0)
            assert claimed is not None
            assert claimed.key.external_id == "hk1"
            raise Boom  # the issuer failed: the revocation stays pending

    with pytest.raises(Boom):
        await claim_then_fail()
    async with store.transaction() as tx:
        assert await tx.issuer_revocations.count() == 1
        assert await tx.issuer_revocations.claim(queued, now=T0) is not None
    async with store.transaction() as tx:
        # Delivered: gone, never claimed again.
        assert await tx.issuer_revocations.claim(queued, now=T0) is None
        assert await tx.issuer_revocations.count() == 0
        assert await tx.issuer_revocations.claim(987_654, now=T0) is None


async def test_a_revocation_postponed_since_it_was_listed_is_not_claimed_before_its_retry(
    store: SqlStore,
) -> None:
    """Two processes drain: one lists the revocation, the other fails to deliver it and
    postpones it. The first must not call the issuer again at once."""
    user = await seed(store)
    key = await stored_key(store, user, "a", "hk1")
    async with store.transaction() as tx:
        queued = await tx.issuer_revocations.add(key.id, now=T0)
    assert queued is not None
    async with store.transaction() as tx:
        (listed,) = await tx.issuer_revocations.due(now=T0, limit=5)
    async with store.transaction() as tx:
        assert await tx.issuer_revocations.postpone(
            listed.id, until=T0 + timedelta(seconds=10), error="E"
        )
    async with store.transaction() as tx:
        assert await tx.issuer_revocations.claim(listed.id, now=T0) is None
    async with store.transaction() as tx:
        claimed = await tx.issuer_revocations.claim(listed.id, now=T0 + timedelta(seconds=10))
    assert claimed is not None
    assert claimed.attempts == 1


async def test_a_claim_held_by_another_transaction_is_skipped(store: SqlStore) -> None:
    """PostgreSQL: skipped, not waited for. SQLite has one writer at a time (BEGIN
    IMMEDIATE), so there the second transaction starts once the first has committed
    and finds the revocation gone."""
    user = await seed(store)
    key = await stored_key(store, user, "a", None)
    async with store.transaction() as tx:
        queued = await tx.issuer_revocations.add(key.id, now=T0)
    assert queued is not None
    held = asyncio.Event()
    release = asyncio.Event()

    async def first() -> bool:
        async with store.transaction() as tx:
            got = await tx.issuer_revocations.claim(queued, now=T0) is not None
            held.set()
            await release.wait()
        return got

    async def second() -> bool:
        await held.wait()
        if store.engine.dialect.name == "sqlite":
            release.set()
        async with store.transaction() as tx:
            got = await tx.issuer_revocations.claim(queued, now=T0) is not None
        release.set()
        return got

    assert list(await asyncio.wait_for(asyncio.gather(first(), second()), 20)) == [True, False]


async def test_postpone_counts_the_attempt_and_keeps_the_error(store: SqlStore) -> None:
    user = await seed(store)
    key = await stored_key(store, user, "a", None)
    later = T0 + timedelta(seconds=10)
    async with store.transaction() as tx:
        queued = await tx.issuer_revocations.add(key.id, now=T0)
        assert queued is not None
        assert await tx.issuer_revocations.postpone(queued, until=later, error="x" * 500)
        assert not await tx.issuer_revocations.postpone(123_456, until=later, error="gone")
    async with store.transaction() as tx:
        assert await tx.issuer_revocations.due(now=T0, limit=10) == []
        (pending,) = await tx.issuer_revocations.due(now=later, limit=10)
    assert pending.attempts == 1
    assert pending.next_attempt_at == later
    assert pending.last_error == "x" * 300


async def test_discard_drops_only_that_keys_revocation(store: SqlStore) -> None:
    user = await seed(store)
    first = await stored_key(store, user, "a", None)
    second = await stored_key(store, user, "b", None)
    async with store.transaction() as tx:
        await tx.issuer_revocations.add(first.id, now=T0)
        await tx.issuer_revocations.add(second.id, now=T0)
        assert await tx.issuer_revocations.discard(first.id)
        assert not await tx.issuer_revocations.discard(first.id)
        (left,) = await tx.issuer_revocations.due(now=T0, limit=10)
    assert left.key.id == second.id


async def test_keys_are_found_by_their_issuers_id(store: SqlStore) -> None:
    user = await seed(store)
    first = await stored_key(store, user, "a", "hk1")
    await stored_key(store, user, "b", "hk2")
    async with store.transaction() as tx:
        assert await tx.api_keys.revoke(first.id, now=T0)
        (found,) = await tx.api_keys.list_by_external_id("hk1")
        assert await tx.api_keys.list_by_external_id("hk9") == []
    assert found.id == first.id
    assert found.revoked_at == T0  # revoked ones included


async def test_a_denial_keeps_its_reason(store: SqlStore) -> None:
    user = await seed(store)
    record = await add_authorization(store)
    assert await transition(store, record.id, Status.PENDING, Status.APPROVED, now=T0, user=user)
    decided_at = T0 + timedelta(seconds=1)
    async with store.transaction() as tx:
        assert await tx.device_authorizations.transition(
            record.id,
            from_status=Status.APPROVED,
            to_status=Status.DENIED,
            now=decided_at,
            user_id=user.id,
            reason="Acme: your plan allows 3 devices",
        )
        denied = await tx.device_authorizations.get_by_device_code(digest("device:a"))
    assert denied is not None
    assert denied.status is Status.DENIED
    assert denied.user_id == user.id
    assert denied.denial_reason == "Acme: your plan allows 3 devices"
    assert denied.client_id == CLIENT.client_id


async def test_a_denial_by_the_user_has_no_reason(store: SqlStore) -> None:
    user = await seed(store)
    record = await add_authorization(store)
    assert await transition(store, record.id, Status.PENDING, Status.DENIED, now=T0, user=user)
    async with store.transaction() as tx:
        denied = await tx.device_authorizations.get_by_device_code(digest("device:a"))
    assert denied is not None
    assert denied.denial_reason is None


async def test_the_purge_keeps_a_revoked_key_until_its_issuer_has_heard(store: SqlStore) -> None:
    from devicelink.storage.purge import SqlPurger

    user = await seed(store)
    told = await stored_key(store, user, "a", "hk1")
    untold = await stored_key(store, user, "b", "hk2")
    async with store.transaction() as tx:
        for key in (told, untold):
            assert await tx.api_keys.revoke(key.id, now=T0)
        await tx.issuer_revocations.add(untold.id, now=T0)
    purger = SqlPurger(store.engine)
    assert await purger.purge_batch("api_keys", before=T0 + timedelta(days=1), limit=10) == 1
    async with store.transaction() as tx:
        assert await tx.api_keys.get(told.id) is None
        assert await tx.api_keys.get(untold.id) is not None
