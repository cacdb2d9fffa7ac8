"""Concurrent one-row statements sent as one statement per batch (storage/batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from devicelink.storage.batching import Batcher

pytestmark = pytest.mark.anyio


async def settle() -> None:
    """Let every task that can run, run (and the callbacks they schedule)."""
    for _ in range(5):
        await asyncio.sleep(0)


class Database:
    """Records the batches; answers each request with its arguments, after a pause."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[Any, ...]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def run(self, batch: Sequence[tuple[Any, ...]]) -> list[str]:
        self.batches.append(list(batch))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [f"answer to {args}" for args in batch]


async def test_a_request_to_an_idle_batcher_goes_out_at_once_alone() -> None:
    db = Database()
    batcher: Batcher[str] = Batcher(db.run, max_in_flight=1)
    assert await batcher.submit("a", 1) == "answer to (1,)"
    assert db.batches == [[(1,)]]


async def test_requests_that_wait_leave_together_each_with_its_own_answer() -> None:
    db = Database()
    db.gate.clear()
    batcher: Batcher[str] = Batcher(db.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit("k0", 0))
    await settle()  # the first batch is out, and waits on the database
    rest = [asyncio.ensure_future(batcher.submit(f"k{i}", i)) for i in range(1, 6)]
    await settle()
    db.gate.set()
    answers = await asyncio.gather(first, *rest)
    assert answers == [f"answer to ({i},)" for i in range(6)]
    assert [len(batch) for batch in db.batches] == [1, 5]


async def test_one_key_is_never_twice_in_a_batch() -> None:
    db = Database()
    db.gate.clear()
    batcher: Batcher[str] = Batcher(db.run, max_in_flight=1)
    futures = [asyncio.ensure_future(batcher.submit(key, n)) for n, key in enumerate("aabab")]
    await settle()
    db.gate.set()
    await asyncio.gather(*futures)
    for batch in db.batches:
        keys = ["aabab"[args[0]] for args in batch]
        assert len(keys) == len(set(keys)), db.batches
    assert [len(batch) for batch in db.batches] == [2, 2, 1]


async def test_without_one_per_key_requests_of_one_key_leave_together() -> None:
    """The poll's batcher: its statement judges polls of one code itself."""
    db = Database()
    db.gate.clear()
    batcher: Batcher[str] = Batcher(db.run, max_in_flight=1, one_per_key=False)
    futures = [asyncio.ensure_future(batcher.submit(key, n)) for n, key in enumerate("aabab")]
    await settle()
    db.gate.set()
    answers = await asyncio.gather(*futures)
    assert answers == [f"answer to ({n},)" for n in range(5)]
    assert db.batches == [[(0,), (1,), (2,), (3,), (4,)]]  # one_per_key: [2, 2, 1]


async def test_batches_are_bounded_in_size_and_number() -> None:
    db = Database()
    db.gate.clear()
    batcher: Batcher[str] = Batcher(db.run, max_batch=3, max_in_flight=2)
    futures = [asyncio.ensure_future(batcher.submit(n, n)) for n in range(10)]
    await settle()
    assert len(db.batches) == 2  # two in flight, the rest wait
    db.gate.set()
    await asyncio.gather(*futures)
    assert sorted(len(batch) for batch in db.batches) == [1, 3, 3, 3]


async def test_a_failed_batch_fails_every_request_in_it() -> None:
    db = Database()
    db.fail = ConnectionError("the database went away")
    batcher: Batcher[str] = Batcher(db.run)
    results = await asyncio.gather(
        *(batcher.submit(n, n) for n in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    db.fail = None
    assert await batcher.submit(9, 9) == "answer to (9,)"  # and it goes on


async def test_a_request_cancelled_before_it_left_is_not_sent() -> None:
    db = Database()
    db.gate.clear()
    batcher: Batcher[str] = Batcher(db.run, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit("a", 1))
    await settle()
    gone = asyncio.ensure_future(batcher.submit("b", 2))
    kept = asyncio.ensure_future(batcher.submit("c", 3))
    await settle()
    gone.cancel()
    db.gate.set()
    assert await first == "answer to (1,)"
    assert await kept == "answer to (3,)"
    assert db.batches == [[(1,)], [(3,)]]
