"""Preview, progressive and predictive pacers (the API is in ``pacing.api``). Pure; the clock is the caller's.

The predictive pacer looks a few seconds ahead. For each point tau of a short grid it compares
- the people expected to answer by then: calls now ringing (each by its age) plus the new dials, from the
  campaign's recent answer-age distribution (``AnswerModel``), with those already waiting; and
- the agents expected to be free by then: ready now, plus those whose call and wrap-up should end by then,
  each by its elapsed time (``HandleModel``).
Within the look-ahead an agent takes at most one call (a conversation outlasts it), so callers left without
an agent at some tau are abandoned; their expected number is the largest expected excess over the grid
(normal approximation of both counts). The pacer places the most dials whose expected abandons stay under a
target share of the expected answers. The target is the ceiling times ``aim``, less the share AMD false
positives take, times a calibration ``scale`` that an integral controller moves with every person settled
(connected: up a little; abandoned: down), so the measured rate settles at the aim whatever the model's bias.
A guard keeps the measured rate of the binding window (today for Ofcom, 30 days for the FCC; AMD false
positives estimated) under the ceiling even if the abandons still in flight happen: past it, and whenever AMD
alone would spend the budget, the pacer dials progressively, which abandons nobody through pacing.
"""

from __future__ import annotations

import math

from pacing.abandon import AbandonLedger
from pacing.api import CallOutcome, CallResult, LiveOutcome, PacingSettings, Snapshot
from pacing.estimates import TAU, AnswerModel, HandleModel, PersonModel

#: How fast the calibration follows the measured rate: each person settled moves log(scale) by
#: RATE * (aim - abandoned?1:0), an integral controller on (aim x people - abandons).
RATE = 0.15
SCALE_RANGE = (0.02, 10.0)
#: Abandons that may still be in flight when the guard trips: the day's rate must stay under the ceiling
#: even if they all happen.
IN_FLIGHT_ABANDONS = 2.0
#: ... and under this share of it: which abandoned calls were people is an estimate, and a burst after a jump
#: in the answer rate (a fresh list) can land several abandons before the guard's progressive dialling bites.
GUARD = 0.95


class PreviewPacer:
    """Never dials by itself: an agent accepts a previewed contact and the dialer places that one call."""

    def dials(self, snapshot: Snapshot) -> int:
        return 0

    def observe_call(self, outcome: CallOutcome) -> None:
        pass

    def observe_live(self, live: LiveOutcome) -> None:
        pass

    def observe_handle(self, talk_s: float, wrap_s: float) -> None:
        pass


class ProgressivePacer(PreviewPacer):
    """One call in flight per ready agent: nobody is abandoned for want of an agent."""

    def dials(self, snapshot: Snapshot) -> int:
        return progressive_dials(snapshot)


def progressive_dials(snapshot: Snapshot) -> int:
    wanted = snapshot.agents_ready - len(snapshot.calls_dialing) - snapshot.calls_waiting
    return max(0, min(wanted, snapshot.line_cap - snapshot.lines_in_use))


class PredictivePacer:
    def __init__(
        self,
        settings: PacingSettings | None = None,
        *,
        answers: AnswerModel | None = None,
        handles: HandleModel | None = None,
        ledger: AbandonLedger | None = None,
    ) -> None:
        self.settings = settings or PacingSettings()
        self.answers = answers or AnswerModel()
        self.handles = handles or HandleModel()
        self.people = PersonModel()
        self.ledger = ledger or AbandonLedger(self.settings.amd_false_positive_rate)
        self.day = 0
        self.scale = 1.0
        self.target_bound = False  # the last decision was held back by the target (not lines, not the guard)
        self.target = self._base_target()
        self.mode = "predictive"  # or "progressive" when the budget is spent (shown to supervisors)

    # -- outcomes --------------------------------------------------------------------------------------------

    def observe_call(self, outcome: CallOutcome) -> None:
        self.answers.observe(outcome.result is CallResult.HUMAN, outcome.age)

    def observe_live(self, live: LiveOutcome) -> None:
        self.day = live.day
        if live.person is not None:
            self.people.observe(live.answer_age, live.person)
            if not live.person:
                return  # an answering machine an agent heard: not a person, in no rate
            weight = 1.0
        else:
            weight = self.people.person(live.answer_age)
        self.ledger.record(live.day, connected=live.connected, weight=weight)
        error = self._base_target() - (0.0 if live.connected else weight)
        if error > 0 and not self.target_bound:
            return  # anti-windup: raise the target only while it is what holds the dials back
        low, high = SCALE_RANGE
        self.scale = min(high, max(low, self.scale * math.exp(RATE * error)))

    def observe_handle(self, talk_s: float, wrap_s: float) -> None:
        self.handles.observe(talk_s, wrap_s)

    # -- the decision ----------------------------------------------------------------------------------------

    def _base_target(self) -> float:
        s = self.settings
        return s.max_abandon_rate * s.aim - s.amd_false_positive_rate

    def _steer(self) -> float:
        """The pacing target for now: 0 when the guard trips."""
        base = self._base_target()
        if base <= 0:
            return 0.0  # AMD's false positives alone spend the budget
        ceiling = self.settings.max_abandon_rate
        fp = self.settings.amd_false_positive_rate
        windows = {"us_fcc": (self.day - 29,), "uk_ofcom": (self.day,)}.get(self.settings.abandon_rule,
                                                                          (self.day - 29, self.day))  # fmt: skip
        for first in windows:  # the FCC's 30 days, Ofcom's day, or both
            connected, abandoned = self.ledger.counts(first, self.day)
            people = (connected + abandoned) / (1 - fp)
            if abandoned + people * fp + IN_FLIGHT_ABANDONS > GUARD * ceiling * (people + IN_FLIGHT_ABANDONS):
                return 0.0
        return base * self.scale

    def dials(self, snapshot: Snapshot) -> int:
        room = snapshot.line_cap - snapshot.lines_in_use
        if room <= 0 or snapshot.agents_active == 0:
            return 0
        if self.answers.refresh_due():
            self.answers.refresh()
        if self.handles.refresh_due():
            self.handles.refresh()
        self.target = self._steer()
        if self.target <= 0:
            self.mode, self.target_bound = "progressive", False
            return progressive_dials(snapshot)
        self.mode = "predictive"
        count = self._most_dials(snapshot, room)
        self.target_bound = count < room
        return count

    def _most_dials(self, snapshot: Snapshot, room: int) -> int:
        # People expected to answer by each tau, from the calls ringing now (and those already waiting): sums of
        # table rows, column by column (zip and sum run in C; this is the hot path of a busy campaign).
        answers, handles = self.answers, self.handles
        last = len(answers.rows) - 1
        buckets = [min(int(age), last) for age in snapshot.calls_dialing]  # 1-second age buckets
        waiting = float(snapshot.calls_waiting)
        if buckets:
            answer_mean = [waiting + sum(column) for column in zip(*[answers.rows[b] for b in buckets], strict=True)]
            answer_var = [sum(column) for column in zip(*[answers.row_vars[b] for b in buckets], strict=True)]
        else:
            answer_mean, answer_var = [waiting] * len(TAU), [0.0] * len(TAU)
        total = waiting + sum(answers.eventually[b] for b in buckets)
        # Agents expected to be free by each tau.
        rows, variances = handles.free_rows(snapshot.agents_talking, snapshot.agents_wrapping)
        ready = float(snapshot.agents_ready)
        if rows:
            free_mean = [ready + sum(column) for column in zip(*rows, strict=True)]
            free_var = [sum(column) for column in zip(*variances, strict=True)]
        else:
            free_mean, free_var = [ready] * len(TAU), [0.0] * len(TAU)
        new, new_total = answers.rows[0], answers.eventually[0]
        base = [(answer_mean[k] - free_mean[k], answer_var[k] + free_var[k], new[k], new[k] * (1 - new[k]))
                for k in range(len(TAU))]  # fmt: skip
        target = self.target

        def acceptable(d: int) -> bool:
            worst = 0.0
            for mean, var, p, p_var in base:
                excess = _expected_excess(mean + d * p, math.sqrt(var + d * p_var))
                if excess > worst:
                    worst = excess
            return worst <= target * (total + d * new_total)

        if not acceptable(0):
            return 0
        low, high = 0, room  # the largest acceptable d, by bisection (acceptability falls as d grows)
        while low < high:
            middle = (low + high + 1) // 2
            if acceptable(middle):
                low = middle
            else:
                high = middle - 1
        return low


def _expected_excess(mean: float, sd: float) -> float:
    """E[max(X, 0)] for X normal(mean, sd)."""
    if sd <= 1e-9:
        return max(mean, 0.0)
    z = mean / sd
    return sd * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) + mean * 0.5 * (1 + math.erf(z / math.sqrt(2)))
