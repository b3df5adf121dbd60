"""Abandoned-call accounting as the regulators define it. Pure; days are the caller's (a date's ordinal).

- US (47 CFR 64.1200(a)(7), FTC TSR): abandoned / answered by a person, per campaign over 30 days; a call is
  abandoned when no agent is connected within 2 s of the end of the greeting.
- UK (Ofcom): A / (L + A) per campaign per calendar day, L being live calls connected to agents.

People AMD hangs up on as machines (false positives) are abandoned too, but the dialer never sees them: they
are estimated from the false-positive rate, as a share of the people answering (f of all people means
f / (1 - f) times those the dialer did see). With them counted, both formulas give the same ratio over the
same calls; they differ in their window.
"""

from __future__ import annotations

from collections import OrderedDict

US_WINDOW_DAYS = 30


class AbandonLedger:
    def __init__(self, amd_false_positive_rate: float = 0.0, *, days_kept: int = US_WINDOW_DAYS) -> None:
        if not 0 <= amd_false_positive_rate < 1:
            raise ValueError("amd_false_positive_rate must be in [0, 1)")
        self.false_positive_rate = amd_false_positive_rate
        self._days: OrderedDict[int, list[float]] = OrderedDict()  # day -> [connected, abandoned]
        self._days_kept = days_kept

    def record(self, day: int, *, connected: bool, weight: float = 1.0) -> None:
        """One person connected or abandoned; ``weight`` < 1 for an abandoned call that was a person only with
        that probability (nobody heard it)."""
        counts = self._days.get(day)
        if counts is None:
            counts = self._days[day] = [0.0, 0.0]
            while len(self._days) > self._days_kept:
                self._days.popitem(last=False)
        counts[0 if connected else 1] += weight

    def counts(self, first_day: int, last_day: int) -> tuple[float, float]:
        """(connected, abandoned) people seen by the dialer over these days, inclusive."""
        connected = abandoned = 0.0
        for day, (c, a) in self._days.items():
            if first_day <= day <= last_day:
                connected += c
                abandoned += a
        return connected, abandoned

    def rate(self, first_day: int, last_day: int) -> tuple[float, float]:
        """(abandon rate, people answering) over these days, AMD false positives estimated in both."""
        connected, abandoned = self.counts(first_day, last_day)
        seen = connected + abandoned
        false_positives = seen * self.false_positive_rate / (1 - self.false_positive_rate)
        people = seen + false_positives
        return ((abandoned + false_positives) / people if people else 0.0), people

    def us_rate(self, today: int) -> float:
        return self.rate(today - US_WINDOW_DAYS + 1, today)[0]

    def uk_rate(self, day: int) -> float:
        return self.rate(day, day)[0]
