"""Preview, progressive and predictive pacers (the API is in ``pacing.api``). Pure; the clock is the caller's.

The predictive pacer looks a few seconds ahead. For each point tau of a short grid it compares
- the people expected to answer by then: calls now ringing (each by its age) plus the new dials, from the
  campaign's recent answer-age distribution (``AnswerModel``), with those already waiting; and
- the agents expected to be free by then: ready now, plus those whose call and wrap-up should end by then,
  each by its elapsed time (``HandleModel``).
Within the look-ahead an agent takes at most one call (a conversation outlasts it), so the callers left without
an agent are the running maximum over the grid of (answers - free agents), floored at zero (a reflected walk);
its expectation comes from Clark's moment matching on the normal approximation of both counts, which errs a
little high (cautious) where the pointwise largest excess errs low. The pacer places the most dials whose
expected abandons stay under a target share of the expected answers. The target is the ceiling times ``aim``,
less the share AMD false positives take, times a calibration ``scale`` that an integral controller moves with
every person settled (connected: up a little; abandoned: down), so the measured rate settles at the aim whatever
the model's bias. A guard keeps each window the rule measures (today for Ofcom, 30 days for the FCC; AMD false
positives estimated) under 95% of the ceiling once the people in flight have answered, counting the abandons
expected among them plus 1.5 standard deviations: it caps the dials near the ceiling, and when even no new dial
passes it (or AMD alone would spend the budget) the pacer dials progressively, which abandons nobody through
pacing.
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
#: The guard counts the abandons expected among the calls in flight plus this many standard deviations
#: (Poisson): the window's rate must stay under the ceiling even if more of them than expected happen.
IN_FLIGHT_SIGMAS = 1.5
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

    def _windows(self) -> list[tuple[float, float]]:
        """(people, abandons) so far in each window the guard keeps under the ceiling: the FCC's 30 days, Ofcom's
        day, or both. People include those AMD hung up on (estimated); abandons include them too."""
        fp = self.settings.amd_false_positive_rate
        firsts = {"us_fcc": (self.day - 29,), "uk_ofcom": (self.day,)}.get(self.settings.abandon_rule,
                                                                         (self.day - 29, self.day))  # fmt: skip
        out = []
        for first in firsts:
            connected, abandoned = self.ledger.counts(first, self.day)
            people = (connected + abandoned) / (1 - fp)
            out.append((people, abandoned + people * fp))
        return out

    def dials(self, snapshot: Snapshot) -> int:
        room = snapshot.line_cap - snapshot.lines_in_use
        if room <= 0 or snapshot.agents_active == 0:
            return 0
        if self.answers.refresh_due():
            self.answers.refresh()
        if self.handles.refresh_due(snapshot.now):
            self.handles.refresh(snapshot.agents_talking, snapshot.now)
        base = self._base_target()
        self.target = base * self.scale if base > 0 else 0.0
        count = self._most_dials(snapshot, room) if base > 0 else None
        if count is None:  # the guard trips (or AMD's false positives alone spend the budget)
            self.mode, self.target_bound = "progressive", False
            return progressive_dials(snapshot)
        self.mode = "predictive"
        self.target_bound = count < room
        return count

    def _most_dials(self, snapshot: Snapshot, room: int) -> int | None:
        """The most new dials the target and the guard allow; None if the guard allows none (dial progressively)."""
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
        guard, fp = GUARD * self.settings.max_abandon_rate, self.settings.amd_false_positive_rate
        windows = self._windows()

        def expected_abandons(d: int) -> float:
            return _expected_running_max([mean + d * p for mean, _, p, _ in base],
                                         [var + d * p_var for _, var, _, p_var in base])  # fmt: skip

        def guarded(d: int, abandons: float) -> bool:
            # Each window's rate once the people now in flight have answered stays under the guard even if a
            # few more of them than expected are abandoned (model error, bursts).
            people = total + d * new_total
            risk = abandons / self.scale + IN_FLIGHT_SIGMAS * math.sqrt(abandons / self.scale)
            return all(abandoned + fp * people + risk <= guard * (so_far + people) for so_far, abandoned in windows)

        def acceptable(d: int) -> bool:
            abandons = expected_abandons(d)
            return abandons <= target * (total + d * new_total) and guarded(d, abandons)

        if not guarded(0, expected_abandons(0)):
            return None
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


_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2 * math.pi)


def _expected_running_max(means: list[float], variances: list[float]) -> float:
    """E[max(0, X_1, ..., X_K)] for a Gaussian walk X (independent increments), by Clark's moment matching."""
    m_max, v_max, cov = 0.0, 0.0, 0.0  # the running max so far (as a Gaussian) and its covariance with X_k
    for mean, var in zip(means, variances, strict=True):
        spread2 = v_max + var - 2 * cov
        if spread2 <= 1e-12:
            if mean > m_max:
                m_max, v_max, cov = mean, var, var
            continue
        spread = math.sqrt(spread2)
        alpha = (m_max - mean) / spread
        if alpha > 6.0:  # X_k all but never tops the max so far (the usual case: fewer answers than agents)
            continue
        upper = 0.5 * (1 + math.erf(alpha / _SQRT2))
        lower = 1 - upper
        density = math.exp(-alpha * alpha / 2) / _SQRT2PI
        first = m_max * upper + mean * lower + spread * density
        second = (m_max * m_max + v_max) * upper + (mean * mean + var) * lower + (m_max + mean) * spread * density
        cov = cov * upper + var * lower
        m_max, v_max = first, max(0.0, second - first * first)
    return max(0.0, m_max)
