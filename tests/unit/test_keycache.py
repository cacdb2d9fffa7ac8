"""What a process remembers of the keys it checked (storage/keycache.py): only what it
could still accept, never across an announced change, never while it may miss one."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from devicelink.core.models import ApiKey, User
from devicelink.storage.keycache import KeyCache, key_changed, user_changed

T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)
ALICE = User(id=1, username="alice", disabled=False, created_at=T0)
BOB = User(id=2, username="bob", disabled=False, created_at=T0)


def key(key_id: int, owner: User = ALICE) -> ApiKey:
    """Key ``key_id`` of ``owner``, not revoked; its other fields do not matter here."""
    return ApiKey(key_id, f"key {key_id}", owner.id, "devicelink-cli", None, ("api",), T0, None)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_cache(size: int = 10, clock: Clock | None = None) -> KeyCache:
    cache = KeyCache(size, max_age=60, monotonic=clock or Clock())
    cache.live = True
    return cache


def test_a_key_put_is_answered_until_a_change_of_it_is_announced() -> None:
    cache = live_cache()
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    cache.put(b"h2", key(2), ALICE, generation=cache.generation)
    assert cache.get(b"h1") == (key(1), ALICE)
    cache.changed([key_changed(1)])
    assert cache.get(b"h1") is None
    assert cache.get(b"h2") == (key(2), ALICE)
    assert (cache.hits, cache.misses) == (2, 1)


def test_an_account_change_drops_every_key_of_that_account_only() -> None:
    cache = live_cache()
    for key_id, owner in ((1, ALICE), (2, ALICE), (3, BOB)):
        cache.put(f"h{key_id}".encode(), key(key_id, owner), owner, generation=cache.generation)
    cache.changed([user_changed(ALICE.id)])
    assert [cache.get(h) is not None for h in (b"h1", b"h2", b"h3")] == [False, False, True]


def test_an_announcement_it_cannot_read_empties_the_cache() -> None:
    cache = live_cache()
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    cache.changed(["x:1"])
    assert cache.get(b"h1") is None
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    cache.changed(["k:one"])
    assert len(cache) == 0


def test_a_lookup_that_raced_with_a_change_is_not_kept() -> None:
    """Read the row, then a revocation is announced before the answer is stored: the
    answer (read before the revocation) must not be remembered."""
    cache = live_cache()
    generation = cache.generation
    cache.changed([key_changed(1)])  # while the lookup was in flight
    cache.put(b"h1", key(1), ALICE, generation=generation)
    assert cache.get(b"h1") is None
    cache.put(b"h1", key(1), ALICE, generation=generation)
    cache.changed([key_changed(99)])  # another key
    assert cache.get(b"h1") is None


def test_nothing_is_read_or_kept_while_changes_could_be_missed() -> None:
    cache = KeyCache(10)
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    cache.live = True
    assert cache.get(b"h1") is None
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    cache.live = False
    assert cache.get(b"h1") is None


def test_keys_that_could_not_be_accepted_are_not_kept() -> None:
    cache = live_cache()
    cache.put(b"h1", replace(key(1), revoked_at=T0), ALICE, generation=cache.generation)
    cache.put(b"h2", key(2), replace(ALICE, disabled=True), generation=cache.generation)
    assert len(cache) == 0


def test_size_and_age_are_bounded() -> None:
    clock = Clock()
    cache = live_cache(size=3, clock=clock)
    for key_id in range(1, 6):
        cache.put(f"h{key_id}".encode(), key(key_id), ALICE, generation=cache.generation)
    assert len(cache) == 3
    # the oldest went first
    assert cache.get(b"h1") is None
    assert cache.get(b"h2") is None
    assert cache.get(b"h5") is not None
    clock.now += 61
    assert cache.get(b"h5") is None
    assert len(cache) == 2


def test_a_zero_size_cache_keeps_nothing() -> None:
    cache = live_cache(size=0)
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    assert cache.get(b"h1") is None


def test_heartbeats_on_the_channel_are_not_changes() -> None:
    cache = live_cache()
    cache.put(b"h1", key(1), ALICE, generation=cache.generation)
    cache.changed(["ping:0123abcd"])
    assert cache.get(b"h1") is not None
