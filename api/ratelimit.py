"""A per-client token bucket: anonymous lookups may not map the network as fast as a script asks."""

from __future__ import annotations

import math
import threading
import time

from common.errors import RateLimited

_MAX_CLIENTS = 100_000


class RateLimiter:
    """``per_minute`` requests per client, refilled continuously, with a burst of as many; 0 disables."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        # Shared by the threadpool routes and the async fast path; each check holds it for microseconds.
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Count one request of ``client``; ``RateLimited`` (with the seconds to wait) when over."""
        if self.per_minute <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self._rate)
                raise RateLimited(
                    f"too many anonymous lookups from this address: at most {self.per_minute} a minute; "
                    f"retry in {wait} s, or use a token (匿名查询过于频繁，请稍后再试)",
                    retry_after=wait,
                )
            if len(self._buckets) >= _MAX_CLIENTS and client not in self._buckets:
                self._forget_idle(now)
            self._buckets[client] = (tokens - 1.0, now)

    def _forget_idle(self, now: float) -> None:
        """Drop clients whose bucket has refilled: they are indistinguishable from new ones."""
        full = 60.0
        self._buckets = {c: v for c, v in self._buckets.items() if now - v[1] < full}
        if len(self._buckets) >= _MAX_CLIENTS:
            self._buckets.clear()
