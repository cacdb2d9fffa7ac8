"""Concurrent one-row statements, sent to the database as one statement per batch.

Under load, a server process has many polls (or starts) waiting on the database at
once, and on a single core most of a round trip's cost is the driver's work on each
side of it, not the database's. :class:`Batcher` lets every request wait for its own
answer while the statements go out together: a request is sent at once when a
connection's worth of room is free (no added latency when the server is idle), and
requests that arrive while ``max_in_flight`` batches are out wait for the next one,
which takes them all (up to ``max_batch``). Each batch is one statement, so one
transaction, one commit and one round trip.

A batch never holds two requests with the same key (the same device code): the second
waits for the next batch, so the two are judged one after the other, exactly as two
statements on the row's lock would be. A batcher made with ``one_per_key=False`` lets
them share a batch, its ``run`` judging them one after the other itself (the poll's
does: most polls of one code, a forged or a stale one, change nothing and need no turn).

Written here rather than taken from a library: what it must guarantee (the per-key
rule, the results in request order, failures reaching every waiting request) is
specific to these statements, and it is fifty lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass(slots=True)
class _Request(Generic[R]):
    key: Hashable
    args: tuple[Any, ...]
    future: asyncio.Future[R] = field(repr=False)


class Batcher(Generic[R]):
    def __init__(
        self,
        run: Callable[[Sequence[tuple[Any, ...]]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 100,
        max_in_flight: int = 4,
        one_per_key: bool = True,
    ) -> None:
        """``run`` executes one batch: the requests' arguments in order, their results
        in the same order (or it raises, and every request of the batch fails)."""
        self._run = run
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.one_per_key = one_per_key
        self._queue: list[_Request[R]] = []
        self._in_flight = 0
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.requests = 0

    async def submit(self, key: Hashable, *args: Any) -> R:
        loop = asyncio.get_running_loop()
        request: _Request[R] = _Request(key, args, loop.create_future())
        self._queue.append(request)
        self._schedule(loop)
        return await request.future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._queue and self._in_flight < self.max_in_flight and not self._flush_scheduled:
            # After the other callbacks of this turn of the loop: requests that arrive
            # together leave together.
            self._flush_scheduled = True
            loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_scheduled = False
        while self._queue and self._in_flight < self.max_in_flight:
            batch: list[_Request[R]] = []
            later: list[_Request[R]] = []
            keys: set[Hashable] = set()
            for request in self._queue:
                if request.future.done():
                    continue  # its caller gave up (cancelled) before it was sent
                if len(batch) < self.max_batch and (
                    request.key not in keys or not self.one_per_key
                ):
                    keys.add(request.key)
                    batch.append(request)
                else:
                    later.append(request)
            self._queue = later
            if not batch:
                return
            self._in_flight += 1
            task = loop.create_task(self._execute(batch, loop))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[_Request[R]], loop: asyncio.AbstractEventLoop) -> None:
        try:
            self.batches += 1
            self.requests += len(batch)
            results = await self._run([request.args for request in batch])
        except BaseException as exc:  # every waiting request hears of it
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
        finally:
            self._in_flight -= 1
            self._schedule(loop)

    async def close(self) -> None:
        """Wait for the batches already sent."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
