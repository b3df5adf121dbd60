"""Warmup plans: how many messages a new sending domain or IP may send each day while mailbox providers learn
its reputation. Pure; days are the caller's (a date's ordinal, in the plan's time zone).

A plan is a list of daily caps from its first day; after the last one the sender is warm (no cap from the plan).
The count of what was sent today comes from the send ledger when the daemon starts (``DailyCap.rebuild``), so
a restart never grants a day's cap twice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupPlan:
    first_day: int
    daily_caps: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.daily_caps or any(cap < 0 for cap in self.daily_caps):
            raise ValueError("a warmup plan is a non-empty list of daily caps, none negative")

    def cap(self, day: int) -> int | None:
        """Today's cap; None once the plan is over (warm). Before the first day the first cap applies."""
        index = max(0, day - self.first_day)
        return self.daily_caps[index] if index < len(self.daily_caps) else None

    @classmethod
    def doubling(cls, first_day: int, start: int, target: int, factor: float = 2.0) -> WarmupPlan:
        """A common schedule: ``start`` a day, times ``factor`` each day, until ``target``."""
        if start < 1 or target < start or factor <= 1:
            raise ValueError("start >= 1, target >= start and factor > 1")
        caps, cap = [], float(start)
        while cap < target:
            caps.append(int(cap))
            cap *= factor
        caps.append(target)
        return cls(first_day, tuple(caps))


@dataclass
class DailyCap:
    """What may still go today under a plan, counted as messages are handed to the provider."""

    plan: WarmupPlan
    day: int = 0
    sent: int = 0

    def rebuild(self, day: int, sent_today: int) -> None:
        """After a restart: what the ledger says went today."""
        self.day, self.sent = day, sent_today

    def remaining(self, day: int) -> int | None:
        """How many more may go today; None: no cap."""
        self._roll(day)
        cap = self.plan.cap(day)
        return None if cap is None else max(0, cap - self.sent)

    def take(self, day: int, count: int = 1) -> bool:
        """Count ``count`` messages if today's cap allows them all."""
        left = self.remaining(day)
        if left is not None and count > left:
            return False
        self.sent += count
        return True

    def _roll(self, day: int) -> None:
        if day != self.day:
            self.day, self.sent = day, 0
