"""The batching queue and the allocation threads that take from it, driven directly.

What the served tests cannot pin down deterministically: which requests form one batch, that a
caller who leaves takes its waiting work with it, that a stopping allocation finishes the batch in
hand, and that stopping a deployment leaves no request waiting for ever.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from inferd.core.errors import InferdError, Overloaded
from inferd.core.tasks import TaskType
from inferd.engine.batcher import BatchLimits, WorkQueue
from inferd.engine.budget import ThreadBudget
from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.deployment import AllocationPlan, Deployment

SPEC = ModelSpec("m", (TaskType.TEXT_EMBEDDING,), "a test model", Runtime.ONNX_CROSS_ENCODER)


def run_async(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def double(runtime: Any, items: list[Any]) -> list[Any]:
    return [item * 2 for item in items]


def test_a_batch_takes_the_oldest_request_and_the_compatible_ones_that_fit() -> None:
    async def scenario() -> None:
        queue = WorkQueue(BatchLimits(max_batch_tokens=10, max_batch_items=4), "d")
        submits = [
            asyncio.create_task(queue.submit("a", double, [1], 4)),
            asyncio.create_task(queue.submit("b", double, [2], 1)),  # another kind
            asyncio.create_task(queue.submit("a", double, [3, 4], 4)),
            asyncio.create_task(queue.submit("a", double, [5], 4)),  # over the token budget
            asyncio.create_task(queue.submit("a", double, [6], 1, batchable=False)),  # runs alone
            asyncio.create_task(queue.submit("a", double, [7, 8], 1)),  # over the item cap
        ]
        await asyncio.sleep(0)
        assert len(queue) == 6
        never = threading.Event()
        batches = [queue.take(never) for _ in range(4)]
        assert [[work.items for work in batch] for batch in batches if batch] == [
            [[1], [3, 4]],
            [[2]],
            [[5], [7, 8]],
            [[6]],
        ]
        assert len(queue) == 0
        for task in submits:
            task.cancel()

    run_async(scenario)


def test_take_waits_for_work_and_returns_none_once_told_to_stop() -> None:
    queue = WorkQueue(BatchLimits(), "d")
    stopping = threading.Event()
    taken: list[object] = []
    worker = threading.Thread(target=lambda: taken.append(queue.take(stopping)))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive(), "take returned without work"
    stopping.set()
    queue.wake_all()
    worker.join(5)
    assert not worker.is_alive()
    assert taken == [None]


def test_a_full_queue_refuses_at_once_with_retry_after() -> None:
    async def scenario() -> None:
        queue = WorkQueue(BatchLimits(max_queue=2), "dep")
        waiting = [asyncio.create_task(queue.submit("a", double, [i], 1)) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await queue.submit("a", double, [9], 1)
        assert refused.value.status == 429
        assert refused.value.headers == {"Retry-After": ["1"]}
        assert "deployment [dep]" in refused.value.reason
        assert len(queue) == 2, "the refused request was queued"
        for task in waiting:
            task.cancel()

    run_async(scenario)


def test_a_caller_that_leaves_takes_its_waiting_work_with_it() -> None:
    async def scenario() -> None:
        queue = WorkQueue(BatchLimits(), "d")
        leaving = asyncio.create_task(queue.submit("a", double, [1], 1))
        staying = asyncio.create_task(queue.submit("a", double, [2], 1))
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        assert len(queue) == 1
        batch = queue.take(threading.Event())
        assert batch is not None and [work.items for work in batch] == [[2]]
        staying.cancel()

    run_async(scenario)


def test_fail_all_answers_every_waiting_request() -> None:
    async def scenario() -> None:
        queue = WorkQueue(BatchLimits(), "d")
        waiting = [asyncio.create_task(queue.submit("a", double, [i], 1)) for i in range(3)]
        await asyncio.sleep(0)
        queue.fail_all(InferdError("gone", status=409))
        for task in waiting:
            with pytest.raises(InferdError, match="gone"):
                await task
        assert len(queue) == 0

    run_async(scenario)


class GatedRuntime:
    """Blocks each batch until the test lets it through, so a stop can land mid-batch."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.closed = False

    def run(self, items: list[int]) -> list[int]:
        self.started.set()
        assert self.release.wait(10)
        return [item + 100 for item in items]

    def count_tokens(self, texts: Any) -> list[int]:
        return [1 for _ in texts]

    def close(self) -> None:
        self.closed = True


def gated(runtime: GatedRuntime, items: list[int]) -> list[int]:
    return runtime.run(items)


def deployment_with(runtimes: list[GatedRuntime], *, adaptive: bool = False, open_gates: bool = False) -> Deployment:
    def load(spec: ModelSpec, folder: Path, num_threads: int) -> GatedRuntime:
        runtime = GatedRuntime()
        if open_gates:
            runtime.release.set()
        runtimes.append(runtime)
        return runtime

    plan = AllocationPlan(num_threads=1, num_allocations=1, adaptive=adaptive, min_allocations=0)
    return Deployment(
        "d",
        SPEC,
        Path("."),
        plan,
        loader=load,  # type: ignore[arg-type]
        budget=ThreadBudget(2),
        limits=BatchLimits(),
        idle_seconds=300,
    )


def test_stopping_finishes_the_batch_in_hand_and_refuses_the_rest() -> None:
    async def scenario() -> None:
        runtimes: list[GatedRuntime] = []
        deployment = deployment_with(runtimes)
        await deployment.start()
        running = asyncio.create_task(deployment.run("a", gated, [1], 1))
        await asyncio.to_thread(runtimes[0].started.wait, 5)
        waiting = asyncio.create_task(deployment.run("a", gated, [2], 1))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(deployment.stop("a test stopped it"))
        await asyncio.sleep(0.05)
        with pytest.raises(InferdError, match="a test stopped it") as refused:
            await waiting
        assert refused.value.status == 409
        assert not stopping.done(), "stop did not wait for the batch in hand"
        runtimes[0].release.set()
        assert await running == [101]
        await stopping
        assert runtimes[0].closed
        assert deployment.num_allocations == 0
        assert deployment.budget.used == 0
        with pytest.raises(InferdError, match="a test stopped it"):
            await deployment.run("a", gated, [3], 1)
        assert deployment.num_allocations == 0, "a stopped deployment started again"
        assert deployment.budget.used == 0

    run_async(scenario)


def test_a_request_queued_while_the_last_allocation_stops_is_still_served() -> None:
    async def scenario() -> None:
        runtimes: list[GatedRuntime] = []
        deployment = deployment_with(runtimes, adaptive=True, open_gates=True)
        await deployment.resize(1)
        first = deployment.allocations[0]
        # The request saw a live allocation and queued; the allocation is already stopping.
        first.stopping.set()
        request = asyncio.create_task(deployment.run("a", gated, [7], 1))
        await asyncio.sleep(0)
        await deployment.resize(0)
        assert await request == [107]
        assert deployment.num_allocations == 1, "no allocation was started for the queued request"
        assert len(runtimes) == 2
        await deployment.stop()

    run_async(scenario)


def test_an_allocation_never_stopped_ends_with_its_event_loop() -> None:
    """A crash that skips the shutdown must not leave a model thread keeping the interpreter alive."""
    runtimes: list[GatedRuntime] = []
    deployments: list[Deployment] = []

    async def scenario() -> None:
        deployment = deployment_with(runtimes, open_gates=True)
        deployments.append(deployment)
        await deployment.start()
        assert await deployment.run("a", gated, [1], 1) == [101]

    asyncio.run(scenario())  # returns with the allocation still serving; the loop is now closed
    # What the interpreter does at exit: join the executor's threads.
    joining = threading.Thread(
        target=deployments[0].allocations[0].executor.shutdown, kwargs={"wait": True}, daemon=True
    )
    joining.start()
    joining.join(10)
    assert not joining.is_alive(), "the allocation thread outlived its event loop"
