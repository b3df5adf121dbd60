"""A campaign's live figures for the supervisor dashboard: the last hour's rates and the shift's time series.

Pure: the runner reports what happens (a person connected, abandoned, a conversation finished) and, about once
a second, how many agents are logged in and busy; the clock is the caller's. Figures over the last hour are
rates per hour of what was seen (an hour not yet over is scaled up from what has passed, after a minute), so
they mean the same at 09:05 as at 15:00.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_S = 3600.0
#: A point of the shift's charts every this many seconds, and this many kept (12 hours).
POINT_EVERY_S = 30.0
POINTS_KEPT = 1440
#: Agent time is added up in buckets of this many seconds (the window drops whole buckets).
BUCKET_S = 10.0


@dataclass(frozen=True)
class Point:
    """One point of the shift's charts: ``at`` is the caller's wall-clock time (epoch seconds)."""

    at: float
    abandon_rate: float  # today's, as the regulator of the campaign counts it
    dial_level: float  # lines in use per active agent
    occupancy: float  # share of logged-in agent time on calls or wrapping up, since the last point


@dataclass(frozen=True)
class Figures:
    connects_per_hour: float
    talk_min_per_agent_hour: float
    average_handle_s: float | None  # talk + wrap-up of the conversations finished in the window
    occupancy: float | None


class CampaignLive:
    def __init__(self, started: float) -> None:
        self.started = started
        self._connects: deque[float] = deque()
        self._conversations: deque[tuple[float, float, float]] = deque()  # (ended, talk_s, handle_s)
        self._buckets: deque[list[float]] = deque()  # [start, logged-in agent-seconds, busy agent-seconds]
        self._last_agents: float | None = None
        self._point_logged = self._point_busy = 0.0
        self._last_point = started
        self.points: deque[Point] = deque(maxlen=POINTS_KEPT)
        self._day, self._settled, self._abandoned = 0, 0, 0  # today: answers that were connected or abandoned

    def settled(self, day: int, *, abandoned: bool) -> None:
        """An answer connected or abandoned (machines no AMD screened included: what the dialer saw)."""
        if day != self._day:
            self._day, self._settled, self._abandoned = day, 0, 0
        self._settled += 1
        self._abandoned += abandoned

    def rebuild_today(self, day: int, *, settled: int, abandoned: int) -> None:
        self._day, self._settled, self._abandoned = day, settled, abandoned

    def today(self, day: int) -> tuple[int, int]:
        """(answers settled, abandoned) today, as the dialer saw them."""
        return (self._settled, self._abandoned) if day == self._day else (0, 0)

    def connected(self, now: float) -> None:
        self._connects.append(now)
        self._prune(now)

    def conversation(self, now: float, talk_s: float, handle_s: float) -> None:
        self._conversations.append((now, max(0.0, talk_s), max(0.0, handle_s)))
        self._prune(now)

    def agents(self, now: float, *, logged_in: int, busy: int, dial_level: float, abandon_rate: float,
               wall: float) -> Point | None:  # fmt: skip
        """Agent time since the last call (``logged_in`` and ``busy`` held since then); a new chart point every
        POINT_EVERY_S, returned."""
        if self._last_agents is not None and now > self._last_agents:
            elapsed = now - self._last_agents
            start = now - now % BUCKET_S
            if not self._buckets or self._buckets[-1][0] != start:
                self._buckets.append([start, 0.0, 0.0])
            bucket = self._buckets[-1]
            bucket[1] += logged_in * elapsed
            bucket[2] += busy * elapsed
            self._point_logged += logged_in * elapsed
            self._point_busy += busy * elapsed
        self._last_agents = now
        self._prune(now)
        if now - self._last_point < POINT_EVERY_S:
            return None
        occupancy = self._point_busy / self._point_logged if self._point_logged > 0 else 0.0
        point = Point(wall, abandon_rate, dial_level, occupancy)
        self.points.append(point)
        self._last_point, self._point_logged, self._point_busy = now, 0.0, 0.0
        return point

    def figures(self, now: float) -> Figures:
        self._prune(now)
        span = min(WINDOW_S, max(60.0, now - self.started))
        logged = sum(bucket[1] for bucket in self._buckets)
        busy = sum(bucket[2] for bucket in self._buckets)
        talk = sum(talk for _, talk, _ in self._conversations)
        handled = [handle for _, _, handle in self._conversations]
        return Figures(
            connects_per_hour=len(self._connects) * 3600.0 / span,
            talk_min_per_agent_hour=60.0 * talk / logged if logged > 0 else 0.0,
            average_handle_s=sum(handled) / len(handled) if handled else None,
            occupancy=busy / logged if logged > 0 else None,
        )

    def _prune(self, now: float) -> None:
        edge = now - WINDOW_S
        while self._connects and self._connects[0] < edge:
            self._connects.popleft()
        while self._conversations and self._conversations[0][0] < edge:
            self._conversations.popleft()
        while self._buckets and self._buckets[0][0] + BUCKET_S <= edge:
            self._buckets.popleft()
