"""The generic cell rate algorithm (GCRA, virtual scheduling) as a send scheduler. Pure; the clock is passed in.

A limiter of ``rate`` per second with a ``burst`` keeps a theoretical arrival time (TAT): the moment the next
message would be due if every earlier one had gone exactly on schedule. A message may go at ``TAT - tolerance``
(tolerance = (burst - 1) / rate) or later; going books one emission interval (1 / rate) onto the TAT. Unlike a
fixed batch per second, the schedule is smooth (at 200/s, one message every 5 ms: never a 100 ms window with
more than its share plus the burst), and unlike a token bucket refilled by a timer it needs no timer: the next
slot is arithmetic.

A message crossing several limits (the provider account, the sender profile, the recipient's domain) takes
the latest of their earliest slots and books that slot on every one (``Limits``), so no limit is ever exceeded
and none is booked for a slot the others would refuse.
"""

from __future__ import annotations

from collections.abc import Iterable

EPSILON_S = 1e-9


class Gcra:
    def __init__(self, rate_per_s: float, burst: int = 1) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.interval = 1.0 / rate_per_s
        self.tolerance = (burst - 1) * self.interval
        self.tat = float("-inf")  # nothing booked yet: the first message may go at once

    @property
    def rate_per_s(self) -> float:
        return 1.0 / self.interval

    def earliest(self, now: float) -> float:
        """The first moment at or after ``now`` a message may go."""
        return max(now, self.tat - self.tolerance)

    def book(self, at: float) -> None:
        """A message goes at ``at`` (which must not be before ``earliest``)."""
        self.tat = max(self.tat, at) + self.interval

    def take(self, now: float) -> bool:
        """Go now if the limit allows it (booked), else False (nothing booked)."""
        if self.earliest(now) > now + EPSILON_S:  # booked intervals add up in floating point
            return False
        self.book(now)
        return True

    def reserve(self, now: float) -> float:
        """Book the next slot and return it: the caller waits until then and sends."""
        at = self.earliest(now)
        self.book(at)
        return at

    def set_rate(self, rate_per_s: float, burst: int = 1) -> None:
        """Change the limit (a provider's throttling, a plan's new day); what is booked stays booked."""
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.interval = 1.0 / rate_per_s
        self.tolerance = (burst - 1) * self.interval


class Limits:
    """Several limits a message must all pass."""

    def __init__(self, limits: Iterable[Gcra]) -> None:
        self.limits = list(limits)

    def earliest(self, now: float) -> float:
        return max((limit.earliest(now) for limit in self.limits), default=now)

    def reserve(self, now: float) -> float:
        at = self.earliest(now)
        for limit in self.limits:
            limit.book(at)
        return at
