"""The machine-wide thread budget: allocations take threads from it and give them back.

Two models each taking every core collapsed throughput 5-45x in measurements on this kind of
machine, so the sum of allocations x threads never exceeds the cores (or the configured budget).
When the budget is spent, idle adaptive deployments give threads back (down to their minimum,
possibly zero) before anyone is refused: adaptive allocations are elastic by definition.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from inferd.core.errors import StatusError

# Frees at least `threads` threads if it can, sparing the deployment named second.
Reclaimer = Callable[[int, str], Awaitable[None]]


class ThreadBudget:
    def __init__(self, total: int | None = None) -> None:
        self.total = total or os.cpu_count() or 1
        self.used = 0
        self.reclaim: Reclaimer | None = None

    @property
    def free(self) -> int:
        return self.total - self.used

    async def take(self, threads: int, deployment_id: str) -> None:
        if threads > self.free and self.reclaim is not None:
            await self.reclaim(threads - self.free, deployment_id)
        if threads > self.free:
            raise StatusError(
                f"Could not start an allocation of deployment [{deployment_id}] with [{threads}] threads: "
                f"[{self.free}] of the [{self.total}] threads of this node are free",
                status=429,
            )
        self.used += threads

    def give(self, threads: int) -> None:
        self.used = max(0, self.used - threads)
