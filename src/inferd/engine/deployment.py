"""A deployment: one model served by `num_allocations` allocations of `num_threads` threads each.

Each allocation holds its own loaded runtime, the one thread that runs it and a finisher thread
that builds results while the model runs the next batch; all allocations pull batches from the
deployment's shared queue. With adaptive allocations the count follows the queue: up
when requests wait, down after an idle period, to zero (the model unloaded) and back up on the
next request. Threads come from the machine-wide budget, so deployments never oversubscribe the
cores.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.core.errors import EngineError, InferdError, StatusError
from inferd.engine.batcher import BatchLimits, RunFn, Unfinished, Work, WorkQueue, deliver, fail
from inferd.engine.budget import ThreadBudget
from inferd.engine.catalog import ModelSpec
from inferd.engine.runtimes.base import ModelRuntime, RuntimeLoader

log = logging.getLogger(__name__)

IDLE_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class AllocationPlan:
    """How many allocations a deployment wants: fixed, or adaptive between bounds."""

    num_threads: int
    num_allocations: int | None = None
    adaptive: bool = False
    min_allocations: int = 0
    max_allocations: int = 32

    @property
    def initial(self) -> int:
        if not self.adaptive:
            return self.num_allocations or 1
        return max(self.min_allocations, 1)


class Allocation:
    """One loaded copy of the model, the thread that runs it, and the thread that finishes its batches.

    The model thread loads the model, then takes batches from the deployment's queue until told to
    stop, finishing the batch in hand. A batch that comes back `Unfinished` goes to the finisher
    thread, which builds the results while the model runs the next batch; at most
    `FINISH_AHEAD` batches wait for it. Results go back to the event loop, which owns the futures.
    """

    FINISH_AHEAD = 2

    def __init__(self, deployment: Deployment, index: int) -> None:
        self.deployment = deployment
        self.index = index
        name = f"{deployment.deployment_id}-{index}"
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-finish")
        self._finish_slots = threading.BoundedSemaphore(self.FINISH_AHEAD)
        self.runtime: ModelRuntime | None = None
        self.stopping = threading.Event()
        self.worker: asyncio.Future[None] | None = None
        self.busy = False

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        d = self.deployment
        self.runtime = await loop.run_in_executor(self.executor, d.loader, d.spec, d.folder, d.plan.num_threads)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.worker = loop.run_in_executor(self.executor, self._serve, loop)

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """The model thread: batch after batch, without a round trip through the event loop."""
        queue = self.deployment.queue
        # The wait wakes up now and then to see whether the event loop is gone: a deployment never
        # stopped (a crash) must not keep the interpreter from exiting, which joins executor threads.
        while not self.stopping.is_set() and not loop.is_closed():
            batch = queue.take(self.stopping, timeout=IDLE_CHECK_SECONDS)
            if batch is None:
                continue
            self.busy = True
            try:
                outcome = self._run(batch)
            finally:
                self.busy = False
                self.deployment.touched = time.monotonic()
            if isinstance(outcome, Unfinished):
                self._finish_slots.acquire()
                self.finisher.submit(self._finish, loop, batch, outcome)
            elif not _answer(loop, outcome):
                return  # the event loop is closed: nobody is left to answer

    def _run(self, batch: list[Work]) -> tuple[Any, ...] | Unfinished:
        items = [item for work in batch for item in work.items]
        try:
            results = batch[0].run(self.runtime, items)
        except Exception as exc:
            return (self._failed, batch, exc)
        return results if isinstance(results, Unfinished) else (deliver, batch, results)

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[Work], unfinished: Unfinished) -> None:
        """The finisher thread: build a batch's results and send them to the event loop."""
        try:
            try:
                answer: tuple[Any, ...] = (deliver, batch, unfinished.finish())
            except Exception as exc:
                answer = (self._failed, batch, exc)
            _answer(loop, answer)
        finally:
            self._finish_slots.release()

    def _failed(self, batch: list[Work], exc: Exception) -> None:
        if isinstance(exc, InferdError):
            fail(batch, exc)
            return
        if all(work.future.done() for work in batch):
            return  # every caller went away (e.g. an abandoned stream stopped its generation)
        log.error("model [%s] failed on a batch", self.deployment.spec.model_id, exc_info=exc)
        fail(batch, EngineError(f"model [{self.deployment.spec.model_id}] failed: {exc}"))

    async def stop(self) -> None:
        self.stopping.set()
        self.deployment.queue.wake_all()
        if self.worker is not None:
            await self.worker
        loop = asyncio.get_running_loop()
        # Batches the model has run are finished and answered before the model goes.
        await loop.run_in_executor(self.executor, self.finisher.shutdown)
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            await loop.run_in_executor(self.executor, runtime.close)
        self.executor.shutdown(wait=False)

    def discard(self) -> None:
        """Let go of the threads of an allocation whose model never loaded."""
        self.executor.shutdown(wait=False)
        self.finisher.shutdown(wait=False)


def _answer(loop: asyncio.AbstractEventLoop, answer: tuple[Any, ...]) -> bool:
    """Run `answer` (a callable and its arguments) on the event loop; False if the loop is closed."""
    try:
        loop.call_soon_threadsafe(*answer)
    except RuntimeError:
        return False
    return True


class Deployment:
    def __init__(
        self,
        deployment_id: str,
        spec: ModelSpec,
        folder: Path,
        plan: AllocationPlan,
        *,
        loader: RuntimeLoader,
        budget: ThreadBudget,
        limits: BatchLimits,
        idle_seconds: float,
    ) -> None:
        self.deployment_id = deployment_id
        self.spec = spec
        self.folder = folder
        self.plan = plan
        self.loader = loader
        self.budget = budget
        self.idle_seconds = idle_seconds
        self.queue = WorkQueue(limits, deployment_id)
        self.allocations: list[Allocation] = []
        self.touched = time.monotonic()
        self._resize_lock = asyncio.Lock()
        self._scaler: asyncio.Task[None] | None = None
        self.endpoints: set[str] = set()  # inference ids using this deployment
        self._stopped: StatusError | None = None  # set by `stop`: what later requests are answered

    @property
    def stopped(self) -> bool:
        return self._stopped is not None

    @property
    def num_allocations(self) -> int:
        return len(self.allocations)

    @property
    def idle(self) -> bool:
        return not len(self.queue) and not any(a.busy for a in self.allocations) and not self._resize_lock.locked()

    async def give_back(self, threads: int) -> int:
        """Scale an idle adaptive deployment down (not below its minimum) to free threads; returns those freed."""
        freed = 0
        while (
            freed < threads and self.plan.adaptive and self.idle and len(self.allocations) > self.plan.min_allocations
        ):
            await self.resize(len(self.allocations) - 1)
            freed += self.plan.num_threads
        return freed

    async def start(self) -> None:
        await self.resize(self.plan.initial)
        if self.plan.adaptive:
            self._scaler = asyncio.create_task(self._autoscale(), name=f"scale-{self.deployment_id}")

    async def resize(self, target: int) -> None:
        async with self._resize_lock:
            if self.stopped:
                target = 0
            while len(self.allocations) > target:
                # Counted until its model is closed: a count of zero means the model is unloaded.
                try:
                    await self.allocations[-1].stop()
                finally:
                    self.allocations.pop()
                self.budget.give(self.plan.num_threads)
            if not target and len(self.queue) and not self.stopped:
                target = 1  # a request was queued while the last allocation stopped: it must not wait forever
            while len(self.allocations) < target:
                await self.budget.take(self.plan.num_threads, self.deployment_id)
                allocation = Allocation(self, len(self.allocations))
                try:
                    await allocation.load()
                except BaseException:
                    self.budget.give(self.plan.num_threads)
                    allocation.discard()
                    raise
                allocation.start()
                self.allocations.append(allocation)
            log.info("deployment [%s] of [%s] has %d allocation(s)", self.deployment_id, self.spec.model_id, target)

    async def replan(self, plan: AllocationPlan) -> None:
        """Apply new allocation settings to the live deployment (from `_update`)."""
        if plan.num_threads != self.plan.num_threads:
            raise StatusError("[num_threads] cannot be updated")
        self.plan = plan
        if plan.adaptive and self._scaler is None:
            self._scaler = asyncio.create_task(self._autoscale(), name=f"scale-{self.deployment_id}")
        elif not plan.adaptive and self._scaler is not None:
            self._scaler.cancel()
            self._scaler = None
        if not plan.adaptive:
            await self.resize(plan.initial)

    async def run(
        self, kind: Hashable, run: RunFn, items: list[Any], tokens: int, *, batchable: bool = True
    ) -> list[Any]:
        """Queue work; an adaptive deployment scaled to zero starts an allocation for it."""
        self.touched = time.monotonic()
        if not self.allocations:
            await self.resize(1)
        if self._stopped is not None:  # checked with no await before the submit, so nothing slips past `stop`
            raise self._stopped
        return await self.queue.submit(kind, run, items, tokens, batchable=batchable)

    async def _autoscale(self, interval: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval)
            plan = self.plan
            waiting = len(self.queue)
            busy = sum(a.busy for a in self.allocations)
            count = len(self.allocations)
            try:
                if (
                    waiting > 0
                    and busy == count
                    and count < plan.max_allocations
                    and self.budget.free >= plan.num_threads
                ):
                    await self.resize(count + 1)
                elif (
                    waiting == 0
                    and busy == 0
                    and count > plan.min_allocations
                    and time.monotonic() - self.touched > self.idle_seconds
                ):
                    await self.resize(count - 1)
                    self.touched = time.monotonic()
            except InferdError as exc:
                log.warning("adaptive allocations of [%s]: %s", self.deployment_id, exc.reason)

    async def stop(self, reason: str = "the deployment was stopped") -> None:
        if self._scaler is not None:
            self._scaler.cancel()
            self._scaler = None
        self._stopped = StatusError(f"deployment [{self.deployment_id}] stopped: {reason}", status=409)
        self.queue.fail_all(self._stopped)
        await self.resize(0)
