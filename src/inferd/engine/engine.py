"""The local model engine of a node: its deployments, the thread budget they share, and delivery.

Deployments are keyed by deployment id (by default the id of the endpoint that created it);
endpoints naming the same `deployment_id` share one. A deployment is started when an endpoint is
created, or on first use (preconfigured endpoints, and endpoints after a restart), and stopped
when no endpoint uses it any more.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from inferd.core.errors import NotFound, StatusError
from inferd.engine.batcher import BatchLimits
from inferd.engine.budget import ThreadBudget
from inferd.engine.catalog import ModelSpec
from inferd.engine.deployment import AllocationPlan, Deployment
from inferd.engine.runtimes.base import RuntimeLoader

log = logging.getLogger(__name__)


class Delivery(Protocol):
    """What the engine needs from model delivery (`inferd.engine.fetch.ModelDelivery`)."""

    def spec(self, model_id: str) -> ModelSpec | None: ...

    async def ensure(self, spec: ModelSpec) -> Path: ...

    def verify(self, spec: ModelSpec) -> Path: ...


@dataclass(frozen=True)
class EngineLimits:
    batch: BatchLimits = field(default_factory=BatchLimits)
    threads: int | None = None  # the thread budget; None: the machine's cores
    idle_seconds: float = 300.0  # adaptive allocations scale down after this long without work


class Engine:
    def __init__(self, delivery: Delivery, loader: RuntimeLoader, limits: EngineLimits | None = None) -> None:
        self.delivery = delivery
        self.loader = loader
        self.limits = limits = limits or EngineLimits()
        self.budget = ThreadBudget(limits.threads)
        self.budget.reclaim = self._reclaim
        self.deployments: dict[str, Deployment] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _reclaim(self, threads: int, requester: str) -> None:
        """Free threads from idle adaptive deployments, the longest idle first."""
        others = sorted(
            (d for d in self.deployments.values() if d.deployment_id != requester and d.plan.adaptive),
            key=lambda d: d.touched,
        )
        for deployment in others:
            if threads <= 0:
                return
            threads -= await deployment.give_back(threads)

    def spec(self, model_id: str) -> ModelSpec | None:
        return self.delivery.spec(model_id)

    def find(self, deployment_id: str) -> Deployment | None:
        return self.deployments.get(deployment_id)

    async def deploy(self, deployment_id: str, spec: ModelSpec, plan: AllocationPlan, inference_id: str) -> Deployment:
        """The running deployment `deployment_id` for `spec`, started (download included) if needed."""
        lock = self._locks.setdefault(deployment_id, asyncio.Lock())
        async with lock:
            existing = self.deployments.get(deployment_id)
            if existing is not None:
                if existing.spec.model_id != spec.model_id:
                    raise StatusError(
                        f"Deployment [{deployment_id}] uses model [{existing.spec.model_id}] which does not match "
                        f"the model [{spec.model_id}] in the request."
                    )
                existing.endpoints.add(inference_id)
                return existing
            await self.delivery.ensure(spec)
            folder = await asyncio.to_thread(self.delivery.verify, spec)
            deployment = Deployment(
                deployment_id,
                spec,
                folder,
                plan,
                loader=self.loader,
                budget=self.budget,
                limits=self.limits.batch,
                idle_seconds=self.limits.idle_seconds,
            )
            try:
                await deployment.start()
            except BaseException:
                await deployment.stop("it failed to start")
                raise
            deployment.endpoints.add(inference_id)
            self.deployments[deployment_id] = deployment
            return deployment

    def attach(self, deployment_id: str, spec: ModelSpec, inference_id: str) -> Deployment:
        """Use an existing deployment from another endpoint (ES's `deployment_id` setting)."""
        deployment = self.deployments.get(deployment_id)
        if deployment is None:
            raise NotFound(f"Cannot find deployment [{deployment_id}]")
        if deployment.spec.model_id != spec.model_id:
            raise StatusError(
                f"Deployment [{deployment_id}] uses model [{deployment.spec.model_id}] which does not match the "
                f"model [{spec.model_id}] in the request."
            )
        deployment.endpoints.add(inference_id)
        return deployment

    async def release(self, deployment_id: str, inference_id: str) -> None:
        """An endpoint stops using a deployment; the last one out stops it."""
        lock = self._locks.setdefault(deployment_id, asyncio.Lock())
        async with lock:
            deployment = self.deployments.get(deployment_id)
            if deployment is None:
                return
            deployment.endpoints.discard(inference_id)
            if not deployment.endpoints:
                del self.deployments[deployment_id]
                await deployment.stop("its last inference endpoint was deleted")

    async def close(self) -> None:
        for deployment in list(self.deployments.values()):
            await deployment.stop("the node is shutting down")
        self.deployments.clear()
