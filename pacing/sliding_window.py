"""A sliding-window limit: at most ``limit`` events in any ``window_s`` seconds. Pure; the clock is passed in.

Telnyx counts dials per second as a rolling 5-second sum (30/s -> 150 per 5 s); keeping our own dials under
the same rule means the carrier never has to refuse one (HTTP 429, code 90103).
"""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be at least 1 and window_s positive")
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()

    def acquire(self, now: float) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds until a slot frees."""
        self._expire(now)
        if len(self._times) < self.limit:
            self._times.append(now)
            return 0.0
        return self._times[0] + self.window_s - now

    def in_window(self, now: float) -> int:
        self._expire(now)
        return len(self._times)
