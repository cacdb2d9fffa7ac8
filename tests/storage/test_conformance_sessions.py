"""Conformance of the repositories the sign-in pages use, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devicelink.core.models import Client, NewDeviceAuthorization
from devicelink.storage import SqlStore

from .conftest import digest

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 29, 12, 0, 0, 654321, tzinfo=UTC)


async def test_browser_session_round_trips_its_data_and_user(store: SqlStore) -> None:
    async with store.transaction() as tx:
        user = await tx.users.add("alice", None, T0)
        added = await tx.browser_sessions.add(
            digest("s1"),
            user_id=user.id,
            data={"next": "/oauth/device/verify", "oidc_state": "x"},
            now=T0,
            expires_at=T0 + timedelta(hours=1),
        )
    async with store.transaction() as tx:
        found = await tx.browser_sessions.get(digest("s1"), now=T0 + timedelta(minutes=5))
    assert found == added
    assert found.user_id == user.id
    assert found.data == {"next": "/oauth/device/verify", "oidc_state": "x"}
    assert found.expires_at == T0 + timedelta(hours=1)


async def test_expired_or_unknown_browser_session_reads_as_none(store: SqlStore) -> None:
    async with store.transaction() as tx:
        await tx.browser_sessions.add(
            digest("s1"), user_id=None, data={}, now=T0, expires_at=T0 + timedelta(hours=1)
        )
    async with store.transaction() as tx:
        assert await tx.browser_sessions.get(digest("s1"), now=T0 + timedelta(hours=1)) is None
        assert await tx.browser_sessions.get(digest("other"), now=T0) is None


async def test_browser_session_data_is_replaced_and_deletion_ends_it(store: SqlStore) -> None:
    async with store.transaction() as tx:
        added = await tx.browser_sessions.add(
            digest("s1"), user_id=None, data={"a": "1"}, now=T0, expires_at=T0 + timedelta(hours=1)
        )
        await tx.browser_sessions.set_data(added.id, {"b": "2"})
    async with store.transaction() as tx:
        found = await tx.browser_sessions.get(digest("s1"), now=T0)
        assert found is not None
        assert found.data == {"b": "2"}
        await tx.browser_sessions.delete(added.id)
    async with store.transaction() as tx:
        assert await tx.browser_sessions.get(digest("s1"), now=T0) is None


async def test_deleting_a_users_sessions_ends_every_one_of_them_and_no_other(
    store: SqlStore,
) -> None:
    async with store.transaction() as tx:
        alice = await tx.users.add("alice", None, T0)
        bob = await tx.users.add("bob", None, T0)
        for label, user_id, lifetime in (
            ("alice-1", alice.id, 1),
            ("alice-2", alice.id, 1),
            ("alice-old", alice.id, -1),
            ("bob", bob.id, 1),
            ("anonymous", None, 1),
        ):
            await tx.browser_sessions.add(
                digest(label),
                user_id=user_id,
                data={},
                now=T0,
                expires_at=T0 + timedelta(hours=lifetime),
            )
    async with store.transaction() as tx:
        assert await tx.browser_sessions.delete_for_user(alice.id) == 3
        assert await tx.browser_sessions.delete_for_user(alice.id) == 0
    async with store.transaction() as tx:
        assert await tx.browser_sessions.get(digest("alice-1"), now=T0) is None
        assert await tx.browser_sessions.get(digest("alice-2"), now=T0) is None
        assert await tx.browser_sessions.get(digest("bob"), now=T0) is not None
        assert await tx.browser_sessions.get(digest("anonymous"), now=T0) is not None


async def test_upstream_users_are_found_by_provider_and_subject(store: SqlStore) -> None:
    async with store.transaction() as tx:
        upstream = await tx.users.add(
            "oidc-alice", None, T0, provider="oidc", subject="https://idp|u-1"
        )
        await tx.users.add("bob", "hash", T0)
    async with store.transaction() as tx:
        found = await tx.users.get_by_subject("oidc", "https://idp|u-1")
        assert found == upstream
        assert found is not None
        assert found.provider == "oidc"
        assert found.subject == "https://idp|u-1"
        assert await tx.users.get_by_subject("oidc", "https://idp|u-2") is None
        assert await tx.users.get_by_subject("local", "https://idp|u-1") is None


async def test_the_same_upstream_subject_cannot_be_two_users(store: SqlStore) -> None:
    async with store.transaction() as tx:
        await tx.users.add("a", None, T0, provider="oidc", subject="https://idp|u-1")
        with pytest.raises(ValueError, match="already exists"):
            await tx.users.add("b", None, T0, provider="oidc", subject="https://idp|u-1")
        assert await tx.users.count() == 1


async def test_set_password_replaces_the_hash_of_that_user_only(store: SqlStore) -> None:
    async with store.transaction() as tx:
        alice = await tx.users.add("alice", "old-a", T0)
        bob = await tx.users.add("bob", "old-b", T0)
        assert await tx.users.set_password(alice.id, "new-a")
        assert not await tx.users.set_password(alice.id + bob.id + 100, "nobody")
    async with store.transaction() as tx:
        alice_after, bob_after = await tx.users.get(alice.id), await tx.users.get(bob.id)
    assert alice_after is not None
    assert alice_after.password_hash == "new-a"
    assert bob_after is not None
    assert bob_after.password_hash == "old-b"


async def test_authorization_is_read_with_its_client_in_one_call(store: SqlStore) -> None:
    client = Client(
        client_id="cli", name="The CLI", scopes=("api",), key_lifetime=None, created_at=T0
    )
    async with store.transaction() as tx:
        await tx.clients.add(client)
        added = await tx.device_authorizations.add(
            NewDeviceAuthorization(
                device_code_hash=digest("d"),
                user_code_hash=digest("u"),
                client_id="cli",
                scope=("api",),
                created_at=T0,
                expires_at=T0 + timedelta(minutes=10),
                interval=5,
                request_ip=None,
                user_agent=None,
            )
        )
    async with store.transaction() as tx:
        found = await tx.device_authorizations.get_with_client(digest("d"))
        assert await tx.device_authorizations.get_with_client(digest("x")) is None
    assert found == (added, client)
