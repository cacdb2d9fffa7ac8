"""One conformance suite of the repository contracts (``devicelink.core.ports``).

In the manner of Dex's ``storage/conformance``: every test runs on SQLite and on
PostgreSQL through the ``store`` fixture, and checks what the Protocol docstrings promise:
not-found is ``None`` or ``False``, times are timezone-aware UTC and round-trip exactly,
every state change is a compare-and-set, and a failed transaction leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from devicelink.core.models import (
    ApiKey,
    Client,
    DeviceAuthorization,
    NewApiKey,
    NewDeviceAuthorization,
    Status,
    User,
)
from devicelink.core.ports import DuplicateCode
from devicelink.storage import SqlStore

from .conftest import digest

pytestmark = pytest.mark.anyio

# Microseconds on purpose: a backend that truncates them breaks compare-and-set on times.
T0 = datetime(2026, 11, 29, 12, 0, 0, 123456, tzinfo=UTC)
LIFETIME = timedelta(seconds=600)
CLIENT = Client(
    client_id="devicelink-cli",
    name="devicelink CLI",
    scopes=("keys:read", "profile"),
    key_lifetime=30 * 86_400,
    created_at=T0,
)


class Boom(Exception):
    """Raised inside a transaction to make it fail."""


def new_authorization(
    label: str,
    *,
    client_id: str = CLIENT.client_id,
    created_at: datetime = T0,
    device_code_hash: bytes | None = None,
    user_code_hash: bytes | None = None,
) -> NewDeviceAuthorization:
    return NewDeviceAuthorization(
        device_code_hash=device_code_hash or digest(f"device:{label}"),
        user_code_hash=user_code_hash or digest(f"user:{label}"),
        client_id=client_id,
        scope=("keys:read", "profile"),
        created_at=created_at,
        expires_at=created_at + LIFETIME,
        interval=5,
        request_ip="203.0.113.7",
        user_agent="devicelink/0.1 (conformance)",
    )


def new_key(
    label: str, *, user_id: int, device_authorization_id: int | None, expires: bool = True
) -> NewApiKey:
    return NewApiKey(
        key_hash=digest(f"key:{label}"),
        name=f"key {label}",
        user_id=user_id,
        client_id=CLIENT.client_id,
        device_authorization_id=device_authorization_id,
        scope=("keys:read",),
        created_at=T0,
        expires_at=T0 + timedelta(days=30) if expires else None,
    )


def assert_utc(moment: datetime | None) -> None:
    assert moment is not None
    assert moment.tzinfo is not None, "naive datetime read back from the database"
    assert moment.utcoffset() == timedelta(0)


async def seed(store: SqlStore, username: str = "alice") -> User:
    """The default client and one user, committed."""
    async with store.transaction() as tx:
        if await tx.clients.get(CLIENT.client_id) is None:
            await tx.clients.add(CLIENT)
        return await tx.users.add(username, None, T0)


async def add_authorization(store: SqlStore, label: str = "a") -> DeviceAuthorization:
    async with store.transaction() as tx:
        return await tx.device_authorizations.add(new_authorization(label))


async def reload(store: SqlStore, label: str = "a") -> DeviceAuthorization:
    async with store.transaction() as tx:
        found = await tx.device_authorizations.get_by_device_code(digest(f"device:{label}"))
    assert found is not None
    return found


async def transition(
    store: SqlStore,
    record_id: int,
    from_status: Status,
    to_status: Status,
    *,
    now: datetime,
    user: User | None = None,
) -> bool:
    """One transition, in a transaction of its own."""
    async with store.transaction() as tx:
        return await tx.device_authorizations.transition(
            record_id,
            from_status=from_status,
            to_status=to_status,
            now=now,
            user_id=None if user is None else user.id,
        )


async def approved_authorization(store: SqlStore, user: User) -> DeviceAuthorization:
    record = await add_authorization(store)
    assert await transition(
        store, record.id, Status.PENDING, Status.APPROVED, now=T0 + timedelta(seconds=30), user=user
    )
    return await reload(store)


def clashing(colliding: str, label: str) -> NewDeviceAuthorization:
    """A new authorization whose device or user code is the one of ``label``."""
    if colliding == "device code":
        return new_authorization("clash", device_code_hash=digest(f"device:{label}"))
    return new_authorization("clash", user_code_hash=digest(f"user:{label}"))


# --- clients -------------------------------------------------------------------------


async def test_client_add_get_list_round_trip(store: SqlStore) -> None:
    confidential = Client(
        client_id="ci-runner",
        name="CI runner",
        scopes=(),
        key_lifetime=None,
        confidential=True,
        secret_hash=digest("client-secret"),
        created_at=T0,
    )
    async with store.transaction() as tx:
        await tx.clients.add(CLIENT)
        await tx.clients.add(confidential)
    async with store.transaction() as tx:
        assert await tx.clients.get(CLIENT.client_id) == CLIENT
        assert await tx.clients.get("ci-runner") == confidential
        assert await tx.clients.get("nobody") is None
        listed = await tx.clients.list()
    assert sorted(listed, key=lambda c: c.client_id) == [confidential, CLIENT]


async def test_duplicate_client_id_raises_value_error_and_keeps_the_first(
    store: SqlStore,
) -> None:
    async with store.transaction() as tx:
        await tx.clients.add(CLIENT)
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="already exists"):
            await tx.clients.add(replace(CLIENT, name="impostor"))
        # The failed insert must not poison the transaction.
        await tx.clients.add(replace(CLIENT, client_id="other"))
    async with store.transaction() as tx:
        assert await tx.clients.get(CLIENT.client_id) == CLIENT
        assert [c.client_id for c in await tx.clients.list()] == ["devicelink-cli", "other"]


# --- users ---------------------------------------------------------------------------


async def test_user_add_get_get_by_username_count(store: SqlStore) -> None:
    async with store.transaction() as tx:
        assert await tx.users.count() == 0
        alice = await tx.users.add("alice", "$argon2id$v=19$stub", T0)
        bob = await tx.users.add("bob", None, T0 + timedelta(microseconds=1))
    assert alice.id != bob.id
    assert (alice.username, alice.password_hash, alice.disabled) == (
        "alice",
        "$argon2id$v=19$stub",
        False,
    )
    assert alice.created_at == T0
    assert_utc(alice.created_at)
    async with store.transaction() as tx:
        assert await tx.users.get(alice.id) == alice
        assert await tx.users.get_by_username("bob") == bob
        assert await tx.users.get(max(alice.id, bob.id) + 1000) is None
        assert await tx.users.get_by_username("carol") is None
        assert await tx.users.count() == 2


async def test_duplicate_username_raises_value_error(store: SqlStore) -> None:
    async with store.transaction() as tx:
        alice = await tx.users.add("alice", None, T0)
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="already exists"):
            await tx.users.add("alice", "$argon2id$other", T0)
        await tx.users.add("bob", None, T0)
    async with store.transaction() as tx:
        assert await tx.users.get_by_username("alice") == alice
        assert await tx.users.count() == 2


# --- device authorizations: insert and read ------------------------------------------


async def test_add_returns_the_pending_record_with_exact_utc_times(store: SqlStore) -> None:
    await seed(store)
    new = new_authorization("a")
    async with store.transaction() as tx:
        added = await tx.device_authorizations.add(new)
    assert added.status is Status.PENDING
    assert (added.client_id, added.scope, added.interval) == (
        new.client_id,
        new.scope,
        new.interval,
    )
    assert (added.request_ip, added.user_agent) == (new.request_ip, new.user_agent)
    assert added.user_id is None
    assert (added.approved_at, added.denied_at, added.consumed_at, added.last_polled_at) == (
        None,
        None,
        None,
        None,
    )
    assert added.created_at == new.created_at
    assert added.expires_at == new.expires_at
    assert added.created_at.microsecond == 123456
    assert_utc(added.created_at)
    assert_utc(added.expires_at)
    async with store.transaction() as tx:
        assert await tx.device_authorizations.get_by_device_code(new.device_code_hash) == added
        assert await tx.device_authorizations.get_by_user_code(new.user_code_hash) == added


async def test_times_in_another_zone_are_stored_as_the_same_instant_in_utc(
    store: SqlStore,
) -> None:
    await seed(store)
    tokyo = timezone(timedelta(hours=9))
    created = T0.astimezone(tokyo)
    async with store.transaction() as tx:
        added = await tx.device_authorizations.add(new_authorization("a", created_at=created))
    stored = await reload(store)
    for record in (added, stored):
        assert record.created_at == T0
        assert_utc(record.created_at)
        assert record.expires_at == T0 + LIFETIME
        assert_utc(record.expires_at)


async def test_unknown_codes_read_as_none(store: SqlStore) -> None:
    await seed(store)
    await add_authorization(store, "a")
    async with store.transaction() as tx:
        assert await tx.device_authorizations.get_by_device_code(digest("device:b")) is None
        assert await tx.device_authorizations.get_by_user_code(digest("user:b")) is None
        # The two kinds of hash live in separate columns: one never finds the other.
        assert await tx.device_authorizations.get_by_device_code(digest("user:a")) is None
        assert await tx.device_authorizations.get_by_user_code(digest("device:a")) is None


@pytest.mark.parametrize("colliding", ["device code", "user code"])
async def test_duplicate_code_raises_and_leaves_the_transaction_usable(
    store: SqlStore, colliding: str
) -> None:
    await seed(store)
    first = await add_authorization(store, "first")
    async with store.transaction() as tx:
        before = await tx.device_authorizations.add(new_authorization("before"))
        with pytest.raises(DuplicateCode):
            await tx.device_authorizations.add(clashing(colliding, "first"))
        # The service retries with fresh codes in the same transaction.
        after = await tx.device_authorizations.add(new_authorization("after"))
    async with store.transaction() as tx:
        repo = tx.device_authorizations
        assert await repo.get_by_device_code(digest("device:first")) == first
        assert await repo.get_by_device_code(digest("device:before")) == before
        assert await repo.get_by_device_code(digest("device:after")) == after
        # Nothing of the colliding insert was stored under its other, unique code.
        assert await repo.get_by_device_code(digest("device:clash")) is None
        assert await repo.get_by_user_code(digest("user:clash")) is None


@pytest.mark.parametrize("colliding", ["device code", "user code"])
async def test_duplicate_code_within_one_transaction(store: SqlStore, colliding: str) -> None:
    await seed(store)
    async with store.transaction() as tx:
        first = await tx.device_authorizations.add(new_authorization("a"))
        with pytest.raises(DuplicateCode):
            await tx.device_authorizations.add(clashing(colliding, "a"))
    assert await reload(store, "a") == first


# --- device authorizations: record_poll ----------------------------------------------


async def test_record_poll_is_compare_and_set_on_the_previous_poll(store: SqlStore) -> None:
    await seed(store)
    record = await add_authorization(store)
    first_poll = T0 + timedelta(seconds=5, microseconds=654321)
    second_poll = first_poll + timedelta(seconds=5)
    async with store.transaction() as tx:
        assert await tx.device_authorizations.record_poll(
            record.id, previous_poll=None, now=first_poll, interval=5
        )
    polled = await reload(store)
    assert polled.last_polled_at == first_poll
    assert_utc(polled.last_polled_at)
    async with store.transaction() as tx:
        repo = tx.device_authorizations
        # A request that read the record before the first poll lost the race.
        assert not await repo.record_poll(
            record.id, previous_poll=None, now=second_poll, interval=99
        )
        # Off by one microsecond is stale too: the comparison is exact.
        assert not await repo.record_poll(
            record.id,
            previous_poll=first_poll - timedelta(microseconds=1),
            now=second_poll,
            interval=99,
        )
        # The one that read the current value wins, and may slow the device down.
        assert await repo.record_poll(
            record.id, previous_poll=polled.last_polled_at, now=second_poll, interval=10
        )
    polled_again = await reload(store)
    assert (polled_again.last_polled_at, polled_again.interval) == (second_poll, 10)
    assert polled_again.status is Status.PENDING


async def test_record_poll_fails_when_not_pending(store: SqlStore) -> None:
    user = await seed(store)
    record = await approved_authorization(store, user)
    async with store.transaction() as tx:
        assert not await tx.device_authorizations.record_poll(
            record.id, previous_poll=None, now=T0 + timedelta(seconds=40), interval=10
        )
    after = await reload(store)
    assert after.last_polled_at is None
    assert after.interval == 5


async def test_record_poll_of_unknown_authorization_is_false(store: SqlStore) -> None:
    await seed(store)
    record = await add_authorization(store)
    async with store.transaction() as tx:
        assert not await tx.device_authorizations.record_poll(
            record.id + 1000, previous_poll=None, now=T0, interval=5
        )


# --- device authorizations: transition -----------------------------------------------


async def test_approval_stamps_time_and_user_and_happens_once(store: SqlStore) -> None:
    alice = await seed(store, "alice")
    async with store.transaction() as tx:
        mallory = await tx.users.add("mallory", None, T0)
    record = await add_authorization(store)
    approved_at = T0 + timedelta(seconds=30, microseconds=1)
    assert await transition(
        store, record.id, Status.PENDING, Status.APPROVED, now=approved_at, user=alice
    )
    approved = await reload(store)
    assert approved.status is Status.APPROVED
    assert approved.approved_at == approved_at
    assert_utc(approved.approved_at)
    assert approved.user_id == alice.id
    assert (approved.denied_at, approved.consumed_at) == (None, None)

    later = approved_at + timedelta(seconds=1)
    # A second approval (double submit, another user) changes nothing.
    assert not await transition(
        store, record.id, Status.PENDING, Status.APPROVED, now=later, user=mallory
    )
    # Nor can the approved record be denied afterwards.
    assert not await transition(
        store, record.id, Status.PENDING, Status.DENIED, now=later, user=mallory
    )
    assert await reload(store) == approved


async def test_denial_stamps_time_and_user_and_blocks_approval(store: SqlStore) -> None:
    user = await seed(store)
    record = await add_authorization(store)
    denied_at = T0 + timedelta(seconds=20)
    assert await transition(
        store, record.id, Status.PENDING, Status.DENIED, now=denied_at, user=user
    )
    denied = await reload(store)
    assert (denied.status, denied.denied_at, denied.user_id) == (Status.DENIED, denied_at, user.id)
    assert denied.approved_at is None
    too_late = denied_at + timedelta(seconds=1)
    assert not await transition(
        store, record.id, Status.PENDING, Status.APPROVED, now=too_late, user=user
    )
    assert await reload(store) == denied


async def test_consumption_happens_once_only(store: SqlStore) -> None:
    user = await seed(store)
    approved = await approved_authorization(store, user)
    consumed_at = T0 + timedelta(seconds=35)
    assert await transition(store, approved.id, Status.APPROVED, Status.CONSUMED, now=consumed_at)
    consumed = await reload(store)
    assert consumed.status is Status.CONSUMED
    assert consumed.consumed_at == consumed_at
    # Consuming keeps who approved it and when.
    assert (consumed.user_id, consumed.approved_at) == (user.id, approved.approved_at)
    assert not await transition(
        store, approved.id, Status.APPROVED, Status.CONSUMED, now=consumed_at + timedelta(seconds=5)
    )
    assert await reload(store) == consumed


async def test_a_pending_record_cannot_be_consumed(store: SqlStore) -> None:
    await seed(store)
    record = await add_authorization(store)
    assert not await transition(
        store, record.id, Status.APPROVED, Status.CONSUMED, now=T0 + timedelta(seconds=5)
    )
    assert await reload(store) == record


@pytest.mark.parametrize("to_status", [Status.APPROVED, Status.DENIED])
async def test_no_decision_on_an_expired_record(store: SqlStore, to_status: Status) -> None:
    user = await seed(store)
    record = await add_authorization(store)
    expiry = record.expires_at
    # Expired means now >= expires_at, to the microsecond (DeviceAuthorization.is_expired).
    for too_late in (expiry, expiry + timedelta(hours=1)):
        assert not await transition(
            store, record.id, Status.PENDING, to_status, now=too_late, user=user
        )
    assert await reload(store) == record
    # One microsecond before expiry the decision still counts.
    assert await transition(
        store,
        record.id,
        Status.PENDING,
        to_status,
        now=expiry - timedelta(microseconds=1),
        user=user,
    )
    assert (await reload(store)).status is to_status


async def test_transition_of_unknown_authorization_is_false(store: SqlStore) -> None:
    user = await seed(store)
    record = await add_authorization(store)
    assert not await transition(
        store, record.id + 1000, Status.PENDING, Status.APPROVED, now=T0, user=user
    )


# --- api keys ------------------------------------------------------------------------


async def test_api_key_add_and_get_with_owner(store: SqlStore) -> None:
    user = await seed(store)
    record = await approved_authorization(store, user)
    new = new_key("a", user_id=user.id, device_authorization_id=record.id)
    async with store.transaction() as tx:
        key = await tx.api_keys.add(new)
    # What was given comes back as given, with an id; nothing else is set.
    given = {field.name: getattr(new, field.name) for field in fields(new)}
    del given["key_hash"]
    assert key == ApiKey(id=key.id, **given)
    owners = (key.user_id, key.client_id, key.device_authorization_id)
    assert owners == (user.id, CLIENT.client_id, record.id)
    assert_utc(key.created_at)
    assert_utc(key.expires_at)
    async with store.transaction() as tx:
        found = await tx.api_keys.get_with_owner(new.key_hash)
        assert await tx.api_keys.get_with_owner(digest("key:unknown")) is None
    assert found is not None
    found_key, owner = found
    assert found_key == key
    # The owner as the users repository reads it; the password hash need not travel along.
    assert replace(owner, password_hash=None) == replace(user, password_hash=None)


async def test_api_key_that_never_expires_round_trips(store: SqlStore) -> None:
    user = await seed(store)
    new = new_key("forever", user_id=user.id, device_authorization_id=None, expires=False)
    async with store.transaction() as tx:
        key = await tx.api_keys.add(new)
    assert key.expires_at is None
    assert key.is_active(T0 + timedelta(days=3650))
    async with store.transaction() as tx:
        found = await tx.api_keys.get_with_owner(new.key_hash)
    assert found is not None
    assert found[0] == key


@pytest.mark.defect(9)
async def test_one_key_per_device_authorization(store: SqlStore) -> None:
    user = await seed(store)
    record = await approved_authorization(store, user)
    async with store.transaction() as tx:
        first = await tx.api_keys.add(
            new_key("first", user_id=user.id, device_authorization_id=record.id)
        )
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="one key per device authorization"):
            await tx.api_keys.add(
                new_key("second", user_id=user.id, device_authorization_id=record.id)
            )
        # The refusal leaves the transaction usable.
        assert await tx.api_keys.count_for_authorization(record.id) == 1
    async with store.transaction() as tx:
        assert await tx.api_keys.get_with_owner(digest("key:second")) is None
        assert await tx.api_keys.list_for_user(user.id) == [first]


async def test_keys_outside_a_device_flow_are_not_limited_to_one(store: SqlStore) -> None:
    user = await seed(store)
    async with store.transaction() as tx:
        for label in ("manual-1", "manual-2"):
            await tx.api_keys.add(new_key(label, user_id=user.id, device_authorization_id=None))
    async with store.transaction() as tx:
        assert len(await tx.api_keys.list_for_user(user.id)) == 2


async def test_list_for_user_and_count_for_authorization(store: SqlStore) -> None:
    alice = await seed(store, "alice")
    async with store.transaction() as tx:
        bob = await tx.users.add("bob", None, T0)
        auths = [
            await tx.device_authorizations.add(new_authorization(label))
            for label in ("laptop", "desktop", "bobs")
        ]
    laptop, desktop, bobs = auths
    async with store.transaction() as tx:
        k1, k2, k3 = [
            await tx.api_keys.add(new_key(label, user_id=owner.id, device_authorization_id=auth.id))
            for label, owner, auth in (
                ("laptop", alice, laptop),
                ("desktop", alice, desktop),
                ("bobs", bob, bobs),
            )
        ]
    async with store.transaction() as tx:
        # Several devices at once: each has its own key.
        assert await tx.api_keys.list_for_user(alice.id) == [k1, k2]
        assert await tx.api_keys.list_for_user(bob.id) == [k3]
        assert await tx.api_keys.list_for_user(bob.id + alice.id + 1000) == []
        assert await tx.api_keys.count_for_authorization(laptop.id) == 1
        assert await tx.api_keys.count_for_authorization(bobs.id) == 1
        assert await tx.api_keys.count_for_authorization(bobs.id + 1000) == 0


async def test_list_all_gives_every_key_with_its_owner(store: SqlStore) -> None:
    alice = await seed(store, "alice")
    async with store.transaction() as tx:
        bob = await tx.users.add("bob", None, T0)
        first = await tx.api_keys.add(new_key("a", user_id=alice.id, device_authorization_id=None))
        second = await tx.api_keys.add(new_key("b", user_id=bob.id, device_authorization_id=None))
    async with store.transaction() as tx:
        assert await tx.api_keys.list_all() == [(first, alice), (second, bob)]


# --- transactions --------------------------------------------------------------------


async def test_a_transaction_that_raises_rolls_back_everything(store: SqlStore) -> None:
    async def write_everything_then_fail() -> None:
        async with store.transaction() as tx:
            await tx.clients.add(CLIENT)
            user = await tx.users.add("alice", None, T0)
            record = await tx.device_authorizations.add(new_authorization("a"))
            await tx.api_keys.add(new_key("a", user_id=user.id, device_authorization_id=record.id))
            raise Boom

    with pytest.raises(Boom):
        await write_everything_then_fail()
    async with store.transaction() as tx:
        assert await tx.clients.list() == []
        assert await tx.users.count() == 0
        assert await tx.device_authorizations.get_by_device_code(digest("device:a")) is None
        assert await tx.api_keys.get_with_owner(digest("key:a")) is None
    # The codes are free again: nothing half-written holds the unique indexes.
    user = await seed(store)
    record = await add_authorization(store)
    assert (record.status, user.username) == (Status.PENDING, "alice")


@pytest.mark.parametrize("error_type", [TimeoutError, ConnectionRefusedError])
async def test_an_error_from_the_callers_code_is_not_reported_as_the_database(
    store: SqlStore, error_type: type[OSError]
) -> None:
    """``StorageUnavailable`` means the database could not be reached. An embedding
    application's key issuer runs inside the transaction; when its own network call
    times out, that error must reach the caller (and the log) as itself, not as
    "the database is unavailable" with the traceback cut off."""
    await seed(store)
    error = error_type("the key service did not answer")

    async def start_then_fail() -> None:
        async with store.transaction() as tx:
            await tx.device_authorizations.add(new_authorization("a"))
            raise error

    with pytest.raises(error_type) as raised:
        await start_then_fail()
    assert raised.value is error
    async with store.transaction() as tx:
        assert await tx.device_authorizations.get_by_device_code(digest("device:a")) is None


@pytest.mark.defect(3)
async def test_failed_issuance_rolls_back_the_consumption(store: SqlStore) -> None:
    """Minting the key fails after the consume: the device must still get a key on its
    next poll, not an error until expiry."""
    user = await seed(store)
    approved = await approved_authorization(store, user)

    async def consume_then_fail_to_issue() -> None:
        async with store.transaction() as tx:
            assert await tx.device_authorizations.transition(
                approved.id,
                from_status=Status.APPROVED,
                to_status=Status.CONSUMED,
                now=T0 + timedelta(seconds=40),
            )
            await tx.api_keys.add(
                new_key("a", user_id=user.id, device_authorization_id=approved.id)
            )
            raise Boom

    with pytest.raises(Boom):
        await consume_then_fail_to_issue()
    assert await reload(store) == approved
    async with store.transaction() as tx:
        assert await tx.api_keys.count_for_authorization(approved.id) == 0
        # The next poll succeeds.
        assert await tx.device_authorizations.transition(
            approved.id,
            from_status=Status.APPROVED,
            to_status=Status.CONSUMED,
            now=T0 + timedelta(seconds=45),
        )
        await tx.api_keys.add(new_key("b", user_id=user.id, device_authorization_id=approved.id))
    async with store.transaction() as tx:
        assert await tx.api_keys.count_for_authorization(approved.id) == 1


# --- concurrency (DESIGN.md defect 9) ------------------------------------------------

RACERS = 20


@pytest.mark.defect(9)
async def test_concurrent_polls_of_an_approved_code_issue_exactly_one_key_no_double_issuance(
    store: SqlStore,
) -> None:
    """Twenty polls race to consume one approved authorization, each in its own
    transaction, reading the record first as the service does. A read-then-write
    implementation lets several of them see ``approved`` and each mint a key. (On SQLite
    ``BEGIN IMMEDIATE`` serialises the transactions, so there this checks that the write
    lock is taken up front; PostgreSQL is where an unguarded update would double-issue.)"""
    user = await seed(store)
    approved = await approved_authorization(store, user)
    start = asyncio.Event()

    async def poll(n: int) -> bool:
        await start.wait()
        async with store.transaction() as tx:
            seen = await tx.device_authorizations.get_by_device_code(digest("device:a"))
            assert seen is not None
            won = await tx.device_authorizations.transition(
                seen.id,
                from_status=Status.APPROVED,
                to_status=Status.CONSUMED,
                now=T0 + timedelta(seconds=40, microseconds=n),
            )
            if won:
                await tx.api_keys.add(
                    new_key(f"race-{n}", user_id=user.id, device_authorization_id=seen.id)
                )
            return won

    racers = [asyncio.ensure_future(poll(n)) for n in range(RACERS)]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*racers)
    assert results.count(True) == 1, results
    consumed = await reload(store)
    assert consumed.status is Status.CONSUMED
    async with store.transaction() as tx:
        assert await tx.api_keys.count_for_authorization(approved.id) == 1
        assert len(await tx.api_keys.list_for_user(user.id)) == 1


@pytest.mark.defect(9)
async def test_concurrent_approvals_of_one_code_no_double_approval(store: SqlStore) -> None:
    """Twenty users press Approve on the same code at once: exactly one approval counts,
    and the record names that user."""
    async with store.transaction() as tx:
        await tx.clients.add(CLIENT)
        users = [await tx.users.add(f"user{n}", None, T0) for n in range(RACERS)]
    record = await add_authorization(store)
    start = asyncio.Event()

    moment = T0 + timedelta(seconds=30)

    async def approve(user: User) -> bool:
        await start.wait()
        return await transition(
            store, record.id, Status.PENDING, Status.APPROVED, now=moment, user=user
        )

    racers = [asyncio.ensure_future(approve(user)) for user in users]
    await asyncio.sleep(0)
    start.set()
    results = await asyncio.gather(*racers)
    assert results.count(True) == 1, results
    winner = users[results.index(True)]
    approved = await reload(store)
    assert (approved.status, approved.user_id) == (Status.APPROVED, winner.id)
