"""The keys this process has looked up, kept until a change to them is announced.

Every request a signed-in CLI makes checks its key. On PostgreSQL the check is answered
from this cache when it can be, and the cache is only trusted while this process is
told of every change that could make a cached answer wrong: a key revoked, an account
disabled. Those changes are announced by the transaction that makes them (see
:class:`devicelink.storage.database.SqlStore`): to this process directly once it has
committed, and to every other process by PostgreSQL ``NOTIFY`` on :data:`CHANNEL`,
which PostgreSQL delivers only when the transaction commits. Each process listens on
one connection of its own (:mod:`devicelink.storage.fast_path.listener`); while that
connection is down the cache is empty and unused, so a change announced in that time
cannot be missed.

Only keys that could still be accepted are kept (not revoked, owner not disabled); the
expiry is checked against the clock on every use, so an expired key needs no
announcement. A lookup that raced with an announcement is not kept (the generation
counter). Entries also age out after :data:`MAX_AGE_SECONDS` and the oldest are dropped
beyond ``max_entries``: bounds on memory and on what a lost notification could cost, not
the mechanism that makes revocation take effect.

Entries are keyed by the keyed hash of the key (what the database stores), never by
the key itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from devicelink.core.models import ApiKey, User

CHANNEL = "devicelink_keys"
"""The PostgreSQL notification channel of key and account changes."""

PING_PREFIX = "ping:"
"""Heartbeats of the listening connections on :data:`CHANNEL` (not changes)."""

MAX_AGE_SECONDS = 300.0


def key_changed(key_id: int) -> str:
    return f"k:{key_id}"


def user_changed(user_id: int) -> str:
    return f"u:{user_id}"


class KeyCache:
    def __init__(
        self,
        max_entries: int,
        *,
        max_age: float = MAX_AGE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self._max_age = max_age
        self._monotonic = monotonic
        self._entries: dict[bytes, tuple[float, ApiKey, User]] = {}
        self._by_key: dict[int, set[bytes]] = {}
        """Every hash a key is cached under: during a rotation of the server secret one
        key may be cached under its previous secret's hash and its current one, and a
        change to the key must drop both."""
        self._by_user: dict[int, set[bytes]] = {}
        self._generation = 0
        self.live = False
        """True while every change is known to reach :meth:`changed` (the listening
        connection is up); the cache is neither read nor filled otherwise."""
        self.hits = 0
        self.misses = 0

    @property
    def generation(self) -> int:
        """Read before a database lookup and given back to :meth:`put`: a lookup during
        which anything changed is not kept."""
        return self._generation

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: bytes) -> tuple[ApiKey, User] | None:
        if not self.live:
            return None
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < self._monotonic():
            if entry is not None:
                self._drop(key_hash)
            self.misses += 1
            return None
        self.hits += 1
        return entry[1], entry[2]

    def put(self, key_hash: bytes, key: ApiKey, user: User, *, generation: int) -> None:
        if (
            not self.live
            or generation != self._generation
            or self.max_entries <= 0
            or key.revoked_at is not None
            or user.disabled
        ):
            return
        self._drop(key_hash)
        while len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))
        self._entries[key_hash] = (self._monotonic() + self._max_age, key, user)
        self._by_key.setdefault(key.id, set()).add(key_hash)
        self._by_user.setdefault(user.id, set()).add(key_hash)

    def changed(self, announcements: Iterable[str]) -> None:
        """Apply announced changes (``k:<key id>``, ``u:<user id>``; heartbeats,
        ``ping:...``, are not changes; anything else empties the cache)."""
        self._generation += 1
        for announcement in announcements:
            kind, _, ident = announcement.partition(":")
            if kind == "ping":
                continue
            if not ident.isdigit():
                self.clear()
                continue
            if kind == "k":
                for key_hash in list(self._by_key.get(int(ident), ())):
                    self._drop(key_hash)
            elif kind == "u":
                for key_hash in list(self._by_user.get(int(ident), ())):
                    self._drop(key_hash)
            else:
                self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_key.clear()
        self._by_user.clear()

    def _drop(self, key_hash: bytes) -> None:
        entry = self._entries.pop(key_hash, None)
        if entry is None:
            return
        _, key, user = entry
        _discard(self._by_key, key.id, key_hash)
        _discard(self._by_user, user.id, key_hash)


def _discard(index: dict[int, set[bytes]], ident: int, key_hash: bytes) -> None:
    hashes = index.get(ident)
    if hashes is not None:
        hashes.discard(key_hash)
        if not hashes:
            del index[ident]
