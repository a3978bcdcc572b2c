"""A small in-process rate limiter: at most N events per key (a client address) in a sliding window.

It protects the anonymous report form of the scan page. It is per process (several server processes
each allow N) and forgets on restart; that is enough against a script hammering one server, not
against a distributed flood, which belongs to the reverse proxy in front.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """Allows ``limit`` events per key within any ``window_s`` seconds."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 50_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        """Record an event for ``key``; whether it is within the limit (refused events do not count)."""
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self._max_keys:
                self._forget_idle(now)
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may send again (0 when it may now)."""
        events = self._events.get(key)
        if not events or len(events) < self.limit:
            return 0
        return max(1, int(events[0] + self.window_s - self._clock()) + 1)

    def _forget_idle(self, now: float) -> None:
        # Bounded memory: drop keys whose events have all left the window (all keys if none has).
        idle = [k for k, v in self._events.items() if not v or v[-1] <= now - self.window_s]
        for key in idle or list(self._events):
            del self._events[key]
