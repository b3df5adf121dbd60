"""A sliding-window limit: at most ``limit`` events in any ``window_s`` seconds. Pure; the clock is passed in.

Telnyx counts dials per second as a rolling 5-second sum (30/s -> 150 per 5 s); keeping our own dials under
the same rule means the carrier never has to refuse one (HTTP 429, code 90103). The carrier counts a dial when
it arrives, somewhere between our send and its answer, and network latency varies: so a slot is held while
the request is out (``acquire``) and counted from its answer (``release``), the latest moment the carrier can
have counted it. Counting from the send instead lets a slow dial of one window land beside a fast dial of
the next, and the carrier refuses the second.
"""

from __future__ import annotations

from collections import deque

POLL_S = 0.05
MIN_WAIT_S = 0.001


class SlidingWindow:
    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be at least 1 and window_s positive")
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()  # released slots, in release order
        self.pending = 0  # acquired, not yet released

    def _expire(self, now: float) -> None:
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()

    def acquire(self, now: float) -> float:
        """Take a slot and return 0.0, or take nothing and return the seconds until a slot may free (when every
        slot is held by a request still out, a short poll: the first answer frees nothing before a window)."""
        self._expire(now)
        if len(self._times) + self.pending < self.limit:
            self.pending += 1
            return 0.0
        if not self._times:
            return min(POLL_S, self.window_s)
        # Never 0.0 unless a slot was taken: floating-point rounding can put the oldest slot a hair inside the
        # window by _expire's test and exactly at its edge by this subtraction.
        return max(self._times[0] + self.window_s - now, MIN_WAIT_S)

    def release(self, now: float) -> bool:
        """The request of an acquired slot is over (answered, refused or lost): it counts from ``now``. False (and
        nothing changes) when no slot is held: a caller's bug must not cost a dial its answer."""
        if self.pending <= 0:
            return False
        self.pending -= 1
        self._times.append(now)
        return True

    def in_window(self, now: float) -> int:
        self._expire(now)
        return len(self._times) + self.pending
