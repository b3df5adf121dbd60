"""The baseline to beat: VICIdial's adaptive predictive dialing, written from the prose of pacing.md s1.4.

Clean-room: nothing here comes from VICIdial's code (AGPL). The replica runs ADAPT_TAPERED (or HARD_LIMIT,
AVERAGE) with the US-compliant configuration of pacing.md s4.5: drop after 2 s, drop limit 3%, maximum level
3.0, intensity 0, difference target 0, latest time the end of the shift. It sees what VICIdial sees: its own
drop percentage counts every dropped answer (machines too, without AMD) against the people agents spoke to,
today only, and only after 50 calls.

It is a ``pacing.api.Pacer``, so the call-centre simulator drives it like the daemon's own pacers; it keeps
VICIdial's cadences by the snapshot's clock (samples every 1 s, a new level every 15 s, dials every 2.5 s).
"""

from __future__ import annotations

from collections import deque

from pacing.api import CallOutcome, LiveOutcome, Snapshot


class VicidialAdapt:
    def __init__(
        self,
        *,
        method: str = "TAPERED",
        drop_limit: float = 0.03,
        max_level: float = 3.0,
        intensity: float = 0.0,
        diff_target: float = 0.0,
        shift_start_hhmm: int = 900,
        latest_hhmm: int = 1700,
    ) -> None:
        if method not in ("TAPERED", "HARD_LIMIT", "AVERAGE"):
            raise ValueError("method is TAPERED, HARD_LIMIT or AVERAGE")
        self.method, self.drop_limit, self.max_level = method, drop_limit, max_level
        self.intensity, self.diff_target = intensity, diff_target
        self.start_hhmm, self.latest_hhmm = shift_start_hhmm, latest_hhmm
        self.level = 1.0
        self._samples: deque[tuple[int, int, int]] = deque(maxlen=15)  # (ready, waiting, all agents)
        self._next_sample = 0.0
        self._next_adapt = 15.0
        self._next_dial = 0.0
        self._dials: deque[float] = deque()  # dial times, last minute
        self._drops: deque[float] = deque()  # drop times, last minute
        self.calls_today = 0
        self.drops_today = 0
        self.human_today = 0

    def _hhmm(self, now: float) -> int:
        minutes = (self.start_hhmm // 100) * 60 + self.start_hhmm % 100 + int(now // 60)
        return (minutes // 60) * 100 + minutes % 60

    def dials(self, snapshot: Snapshot) -> int:
        now = snapshot.now
        if now >= self._next_sample:
            self._next_sample = now + 1.0
            everyone = snapshot.agents_active + snapshot.agents_paused
            self._samples.append((snapshot.agents_ready, snapshot.calls_waiting, everyone))
        if now >= self._next_adapt:
            self._next_adapt = now + 15.0
            self._adapt(now)
        if now < self._next_dial:
            return 0
        self._next_dial = now + 2.5
        agents = snapshot.agents_active  # READY, QUEUE, INCALL, DONE; never the paused
        goal = round(self.level * agents)
        existing = len(snapshot.calls_dialing) + snapshot.calls_waiting + len(snapshot.agents_talking)
        count = max(0, min(goal - existing, snapshot.line_cap - snapshot.lines_in_use))
        for _ in range(count):
            self._dials.append(now)
        self.calls_today += count
        return count

    def _adapt(self, now: float) -> None:
        if not self._samples:
            return
        n = len(self._samples)
        ready = sum(s[0] for s in self._samples) / n
        waiting = sum(s[1] for s in self._samples) / n
        everyone = sum(s[2] for s in self._samples) / n
        difference = (ready - waiting) + self.diff_target
        error = difference / everyone if difference and everyone else 0.0
        k = self.intensity / 100
        error = error * (1 + k) if error >= 0 else error * (1 - k)
        level = min(self.max_level, max(1.0, self.level * (1 + error)))
        while self._dials and now - self._dials[0] > 60:
            self._dials.popleft()
        while self._drops and now - self._drops[0] > 60:
            self._drops.popleft()
        if len(self._dials) > 20 and len(self._drops) > 0.5 * len(self._dials):  # the burst brake
            level /= 2
        drop_rate = self.drops_today / self.human_today if self.human_today else 0.0
        if self.calls_today > 50 and drop_rate > self.drop_limit:  # the daily drop brake
            if self.method == "HARD_LIMIT":
                level = 1.0
            elif self.method == "AVERAGE":
                level /= 2
            else:
                hhmm = self._hhmm(now)
                level = 1.0 if hhmm >= self.latest_hhmm else level * min(1.0, (self.latest_hhmm - hhmm) / 1000)
        self.level = max(1.0, level)

    def observe_call(self, outcome: CallOutcome) -> None:
        pass

    def observe_live(self, live: LiveOutcome) -> None:
        if live.connected:
            self.human_today += live.person is True  # the agent's disposition flags a human answer
        else:
            self.drops_today += 1  # a DROP: whatever answered (VICIdial cannot tell either)
            self._drops.append(live.at)

    def observe_handle(self, talk_s: float, wrap_s: float) -> None:
        pass
