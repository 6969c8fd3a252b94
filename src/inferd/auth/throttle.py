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

_MAX_ADDRESSES = 10_000  # past this many remembered addresses, those outside the window are dropped


class FailureThrottle:
    def __init__(self, per_user_and_address: str, per_address: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._pair_limit: RateLimitItem = parse(per_user_and_address)
        self._address_limit: RateLimitItem = parse(per_address)
        # Every failure counts against its address, so an address without one in the longest window
        # cannot be blocked. Checked first: the limiter's two lookups were 7 % of the event loop's
        # time per authenticated request, nearly all from addresses that never failed.
        self._window_s = max(self._pair_limit.get_expiry(), self._address_limit.get_expiry())
        self._last_failure: dict[str, float] = {}

    def retry_after(self, username: str | None, address: str) -> int | None:
        """Seconds to wait if this caller is blocked now, else None."""
        last = self._last_failure.get(address)
        if last is None or time.monotonic() - last > self._window_s + 1:  # 1 s: the limiter keeps wall-clock time
            return None
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
        now = time.monotonic()
        if len(self._last_failure) >= _MAX_ADDRESSES:
            self._last_failure = {a: t for a, t in self._last_failure.items() if now - t <= self._window_s}
        self._last_failure[address] = now
        self._limiter.hit(self._address_limit, "address", address)
        if username is not None:
            self._limiter.hit(self._pair_limit, "user", username, address)
