"""Token-budget dynamic batching across concurrent requests (TEI-style).

Requests wait in one bounded queue per deployment. The model thread of each allocation takes the
oldest request and adds the following compatible ones (same kind, e.g. embeddings with the same
input type) while the batch stays within the token budget and the item cap. Every request owns an
asyncio future that is always resolved: with its own slice of the batch result, or with the error
that failed the batch. A full queue refuses new work at once with 429.

Workers take batches themselves, under a thread lock, rather than being handed them by the event
loop: a busy event loop then never delays the next batch, and the model thread goes from one batch
straight to the next. Futures are only ever touched on their event loop (results travel back with
`call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from inferd.core.errors import Overloaded


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A batch the model has run, whose results are still to be built from the model's outputs.

    Turning arrays into the Python lists and dicts of a response (SPLADE's {token: weight} maps,
    float lists) is a tenth of a batch's time and holds the GIL. An allocation hands that step to
    its finisher thread and its model thread takes the next batch at once, so the model's own
    threads never wait for it (Infinity pipelines its post-processing the same way).
    """

    finish: Callable[[], list[Any]]


# Runs a batch on a loaded model: the items of several requests, flattened; one result per item,
# or the step that will build them.
RunFn = Callable[[Any, list[Any]], "list[Any] | Unfinished"]


@dataclass(eq=False)
class Work:
    kind: Hashable  # requests batch together only with the same kind (which implies the same `run`)
    run: RunFn
    items: list[Any]
    tokens: int
    future: asyncio.Future[list[Any]]
    batchable: bool = True  # False: runs alone (e.g. generation, whose items are not independent)


@dataclass(frozen=True)
class BatchLimits:
    max_batch_tokens: int = 16384
    max_batch_items: int = 64
    max_queue: int = 1024  # requests waiting, beyond which new ones get 429


class WorkQueue:
    """The shared queue of one deployment: the event loop submits, allocation threads take batches."""

    def __init__(self, limits: BatchLimits, name: str) -> None:
        self.limits = limits
        self.name = name
        self._waiting: deque[Work] = deque()
        self._ready = threading.Condition(threading.Lock())

    def __len__(self) -> int:
        return len(self._waiting)

    async def submit(
        self, kind: Hashable, run: RunFn, items: list[Any], tokens: int, *, batchable: bool = True
    ) -> list[Any]:
        work = Work(kind, run, items, tokens, asyncio.get_running_loop().create_future(), batchable)
        with self._ready:
            if len(self._waiting) >= self.limits.max_queue:
                raise Overloaded(
                    f"rejected execution of inference request on deployment [{self.name}]: "
                    f"the queue is full ([{self.limits.max_queue}] requests waiting)",
                    headers={"Retry-After": "1"},
                )
            self._waiting.append(work)
            self._ready.notify()
        try:
            return await work.future
        except asyncio.CancelledError:
            # The caller went away: if its work has not started, drop it; a running batch still finishes.
            with self._ready:
                if work in self._waiting:
                    self._waiting.remove(work)
            raise

    def take(self, stopping: threading.Event, timeout: float | None = None) -> list[Work] | None:
        """Wait for work, then take the oldest request and what fits beside it.

        Returns None, taking nothing, once `stopping` is set (see `wake_all`), or when `timeout`
        seconds pass without work.
        """
        with self._ready:
            if not self._waiting and not stopping.is_set():
                self._ready.wait(timeout)
            if stopping.is_set() or not self._waiting:
                return None
            return self._take_batch()

    def _take_batch(self) -> list[Work]:
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

    def wake_all(self) -> None:
        """Wake every waiting worker, so that those told to stop see it."""
        with self._ready:
            self._ready.notify_all()

    def fail_all(self, error: BaseException) -> None:
        """Answer every waiting request with `error` (the deployment is going away). Call on the event loop."""
        with self._ready:
            waiting, self._waiting = self._waiting, deque()
        fail(waiting, error)


def deliver(batch: list[Work], results: list[Any]) -> None:
    """Hand each request its own slice of a batch result. Call on the event loop."""
    start = 0
    for work in batch:
        end = start + len(work.items)
        if not work.future.done():
            work.future.set_result(results[start:end])
        start = end


def fail(batch: Iterable[Work], error: BaseException) -> None:
    """Answer every request of `batch` with `error`. Call on the event loop."""
    for work in batch:
        if not work.future.done():
            work.future.set_exception(error)
