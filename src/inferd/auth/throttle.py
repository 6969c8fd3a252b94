"""Throttling of failed authentications, per user and address and per address alone.

Keyed on the pair, so that an attacker elsewhere cannot lock a user out from their own address;
the per-address limit stops one address from trying many user names.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class FailureThrottle:
    def __init__(self, per_user_and_address: str, per_address: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._pair_limit: RateLimitItem = parse(per_user_and_address)
        self._address_limit: RateLimitItem = parse(per_address)

    def retry_after(self, username: str | None, address: str) -> int | None:
        """Seconds to wait if this caller is blocked now, else None."""
        checks: list[tuple[RateLimitItem, tuple[str, ...]]] = [(self._address_limit, ("address", address))]
        if username is not None:
            checks.append((self._pair_limit, ("user", username, address)))
        waits = []
        for limit, keys in checks:
            if not self._limiter.test(limit, *keys):
                reset = self._limiter.get_window_stats(limit, *keys).reset_time
                waits.append(max(1, math.ceil(reset - time.time())))
        return max(waits) if waits else None

    def record_failure(self, username: str | None, address: str) -> None:
        self._limiter.hit(self._address_limit, "address", address)
        if username is not None:
            self._limiter.hit(self._pair_limit, "user", username, address)
