"""Token-budget dynamic batching across concurrent requests (TEI-style).

Requests wait in one bounded queue per deployment. A worker (one per allocation) takes the oldest
request and adds the following compatible ones (same kind, e.g. embeddings with the same input
type) while the batch stays within the token budget and the item cap. Every request owns a future
that is always resolved: with its own slice of the batch result, or with the error that failed the
batch. A full queue refuses new work at once with 429.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from inferd.core.errors import Overloaded

# Runs a batch on a loaded model: the items of several requests, flattened; one result per item.
RunFn = Callable[[Any, list[Any]], list[Any]]


@dataclass(eq=False)
class Work:
    kind: Hashable  # requests batch together only with the same kind (which implies the same `run`)
    run: RunFn
    items: list[Any]
    tokens: int
    future: asyncio.Future[list[Any]]
    batchable: bool = True  # False: runs alone (e.g. generation, whose items are not independent)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class BatchLimits:
    max_batch_tokens: int = 16384
    max_batch_items: int = 64
    max_queue: int = 1024  # requests waiting, beyond which new ones get 429


class WorkQueue:
    """The shared queue of one deployment; allocations pull batches from it."""

    def __init__(self, limits: BatchLimits, name: str) -> None:
        self.limits = limits
        self.name = name
        self._waiting: deque[Work] = deque()
        self._ready = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._waiting)

    async def submit(
        self, kind: Hashable, run: RunFn, items: list[Any], tokens: int, *, batchable: bool = True
    ) -> list[Any]:
        if len(self._waiting) >= self.limits.max_queue:
            raise Overloaded(
                f"rejected execution of inference request on deployment [{self.name}]: "
                f"the queue is full ([{self.limits.max_queue}] requests waiting)",
                headers={"Retry-After": "1"},
            )
        work = Work(kind, run, items, tokens, asyncio.get_running_loop().create_future(), batchable)
        async with self._ready:
            self._waiting.append(work)
            self._ready.notify()
        try:
            return await work.future
        except asyncio.CancelledError:
            # The caller went away: if its work has not started, drop it; a running batch still finishes.
            if work in self._waiting:
                self._waiting.remove(work)
            raise

    async def next_batch(self) -> list[Work]:
        """Wait for work, then take the oldest request and what fits beside it."""
        async with self._ready:
            while not self._waiting:
                await self._ready.wait()
            first = self._waiting.popleft()
            batch = [first]
            if not first.batchable:
                return batch
            tokens, count = first.tokens, len(first.items)
            kept: deque[Work] = deque()
            while self._waiting:
                work = self._waiting.popleft()
                fits = (
                    work.batchable
                    and work.kind == first.kind
                    and tokens + work.tokens <= self.limits.max_batch_tokens
                    and count + len(work.items) <= self.limits.max_batch_items
                )
                if fits:
                    batch.append(work)
                    tokens += work.tokens
                    count += len(work.items)
                else:
                    kept.append(work)
            self._waiting.extendleft(reversed(kept))
            return batch

    def fail_all(self, error: BaseException) -> None:
        """Answer every waiting request with `error` (the deployment is going away)."""
        while self._waiting:
            work = self._waiting.popleft()
            if not work.future.done():
                work.future.set_exception(error)


def deliver(batch: list[Work], results: list[Any]) -> None:
    """Hand each request its own slice of a batch result."""
    start = 0
    for work in batch:
        end = start + len(work.items)
        if not work.future.done():
            work.future.set_result(results[start:end])
        start = end


def fail(batch: list[Work], error: BaseException) -> None:
    for work in batch:
        if not work.future.done():
            work.future.set_exception(error)
