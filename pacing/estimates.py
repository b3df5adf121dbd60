"""What a campaign's recent calls say about the next few seconds. Pure, standard library only.

``AnswerModel``: from the last calls' resolutions, the chance that a call still ringing at age ``a`` is answered
by a person within ``tau`` seconds. ``HandleModel``: from the last conversations, the chance that an agent
talking for ``e`` seconds (or wrapping up for ``w``) is free within ``tau``. Both are empirical (no assumed
distribution), start from a few prior pseudo-observations so the first minutes are sane, and forget old calls
(a sliding window), which is how they follow a list whose answer rate changes during the day.

Tables are rebuilt from the window every few seconds of new data, so a lookup is a list index.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable

#: The look-ahead grid, seconds: where expected answers and free agents are compared.
TAU = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0)
AGE_STEP_S = 1.0
MAX_AGE_S = 60.0  # ring timeouts are at most this (plus post-dial delay)
TALK_STEP_S = 5.0
MAX_TALK_S = 3600.0
WRAP_STEP_S = 1.0
MAX_WRAP_S = 300.0
#: Tables are rebuilt after this many new observations (a busy campaign makes several a second).
REFRESH_EVERY = 25


def _lognormal_quantiles(median: float, sigma: float, count: int) -> list[float]:
    """``count`` evenly spaced quantiles of a log-normal: deterministic prior pseudo-observations."""
    out = []
    for i in range(count):
        p = (i + 0.5) / count
        z = math.sqrt(2) * _erfinv(2 * p - 1)
        out.append(median * math.exp(sigma * z))
    return out


def _erfinv(y: float) -> float:
    # Winitzki's approximation refined by two Newton steps: plenty for prior quantiles.
    a = 0.147
    ln = math.log(1 - y * y)
    first = 2 / (math.pi * a) + ln / 2
    x = math.copysign(math.sqrt(math.sqrt(first * first - ln / a) - first), y)
    for _ in range(2):
        x -= (math.erf(x) - y) / (2 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


class AnswerModel:
    """P(a person answers within tau | still ringing at age a), from the last ``window`` calls."""

    def __init__(self, window: int = 800, *, prior_human_share: float = 0.08, prior_calls: int = 200) -> None:
        self._calls: deque[tuple[bool, float]] = deque(maxlen=window)  # (a person answered, age at resolution)
        humans = round(prior_calls * prior_human_share)
        for age in _lognormal_quantiles(11.5, 0.4, humans):
            self._calls.append((True, age))
        for age in _lognormal_quantiles(20.0, 0.3, prior_calls - humans):
            self._calls.append((False, age))
        self._since_refresh = 0
        self.rows: list[tuple[float, ...]] = []  # by age bucket: P(answer within TAU[k])
        self.row_vars: list[tuple[float, ...]] = []  # p(1 - p) of each
        self.eventually: list[float] = []  # by age bucket: P(answer at all)
        self.refresh()

    def observe(self, human: bool, age: float) -> None:
        self._calls.append((human, max(0.0, age)))
        self._since_refresh += 1

    def refresh_due(self) -> bool:
        return self._since_refresh >= REFRESH_EVERY

    def refresh(self) -> None:
        self._since_refresh = 0
        ages = sorted(age for _, age in self._calls)
        humans = sorted(age for human, age in self._calls if human)
        total = len(ages)
        rows: list[tuple[float, ...]] = []
        eventually: list[float] = []
        for bucket in range(int(MAX_AGE_S / AGE_STEP_S) + 1):
            start = bucket * AGE_STEP_S
            alive = total - bisect.bisect_left(ages, start)
            if alive < 5:  # too few calls get this old to say: as likely as the oldest bucket that could
                rows.append(rows[-1] if rows else tuple(0.0 for _ in TAU))
                eventually.append(eventually[-1] if eventually else 0.0)
                continue
            first = bisect.bisect_left(humans, start)
            rows.append(tuple((bisect.bisect_left(humans, start + tau) - first) / alive for tau in TAU))
            eventually.append((len(humans) - first) / alive)
        self.rows, self.eventually = rows, eventually
        self.row_vars = [tuple(p * (1 - p) for p in row) for row in rows]

    def bucket(self, age: float) -> int:
        return min(int(age / AGE_STEP_S), len(self.rows) - 1)

    @property
    def human_share(self) -> float:
        return sum(1 for human, _ in self._calls if human) / len(self._calls)


class HandleModel:
    """P(an agent is free within tau | talking for e s, or wrapping up for w s), from the last conversations.

    Conversations still going on are counted too, as lower bounds (right-censored, Kaplan-Meier weights): early in
    a shift only the short calls have ended, and a model of the ended ones alone would expect every agent to be
    free soon, so the dialer would over-dial just when the long calls hold everybody.
    """

    #: Rebuilt at least this often (seconds of the caller's clock) while calls go on, for the censored ones.
    REFRESH_S = 30.0

    def __init__(self, window: int = 400, *, prior_calls: int = 60) -> None:
        self._calls: deque[tuple[float, float]] = deque(maxlen=window)  # (talk, wrap)
        talks = _lognormal_quantiles(90.0, 0.7, prior_calls)
        wraps = _lognormal_quantiles(12.0, 0.6, prior_calls)
        for talk, wrap in zip(talks, reversed(wraps), strict=True):
            self._calls.append((talk, wrap))
        self._since_refresh = 0
        self._refreshed_at: float | None = None
        self.talking: list[tuple[float, ...]] = []  # by talk-elapsed bucket
        self.wrapping: list[tuple[float, ...]] = []  # by wrap-elapsed bucket
        self.talking_vars: list[tuple[float, ...]] = []  # q(1 - q) of each
        self.wrapping_vars: list[tuple[float, ...]] = []
        self.refresh()

    def observe(self, talk_s: float, wrap_s: float) -> None:
        self._calls.append((max(0.0, talk_s), max(0.0, wrap_s)))
        self._since_refresh += 1

    def refresh_due(self, now: float | None = None) -> bool:
        if self._since_refresh >= 4 * REFRESH_EVERY:  # conversations change their length slowly
            return True
        return now is not None and (self._refreshed_at is None or now - self._refreshed_at >= self.REFRESH_S)

    def refresh(self, ongoing: Iterable[float] = (), now: float | None = None) -> None:
        """Rebuild the tables from the ended conversations and ``ongoing``: the talk so far of those going on."""
        self._since_refresh, self._refreshed_at = 0, now
        calls = sorted(self._calls)  # by talk
        talks = [talk for talk, _ in calls]
        weights = _kaplan_meier_weights(talks, sorted(ongoing))
        self.talking = self._table(((talk + wrap) for talk, wrap in calls), talks, TALK_STEP_S, MAX_TALK_S, weights)
        wraps = sorted(wrap for _, wrap in self._calls)
        self.wrapping = self._table(wraps, wraps, WRAP_STEP_S, MAX_WRAP_S)
        self.talking_vars = _variances(self.talking)
        self.wrapping_vars = _variances(self.wrapping)

    @staticmethod
    def _table(
        ends: Iterable[float], starts: list[float], step: float, limit: float, weights: list[float] | None = None
    ) -> list[tuple[float, ...]]:
        """Row b: among samples whose phase outlasts b*step, the (weighted) share whose ``end`` comes within tau
        of it. ``starts`` are sorted; ``weights`` go with them (all 1 when not given)."""
        ends = list(ends)
        tails = [0.0] * (len(starts) + 1)  # tails[i]: the weight of samples i and after
        if weights is None:
            weights = [1.0] * len(starts)
        else:  # the mass of censored durations longer than every ended one is at risk at every elapsed time
            tails[-1] = max(0.0, 1.0 - sum(weights))
        for i in range(len(starts) - 1, -1, -1):
            tails[i] = tails[i + 1] + weights[i]
        rows: list[tuple[float, ...]] = []
        for bucket in range(int(limit / step) + 1):
            elapsed = bucket * step
            first = bisect.bisect_right(starts, elapsed)
            at_risk = tails[first]
            if len(starts) - first < 5 or at_risk <= 0:  # past what the data says: a little chance per second
                rows.append(rows[-1] if rows and any(rows[-1]) else tuple(min(1.0, tau / 120) for tau in TAU))
                continue
            counts = [0.0] * len(TAU)
            for i in range(first, len(starts)):
                index = bisect.bisect_left(TAU, ends[i] - elapsed)
                if index < len(TAU):
                    counts[index] += weights[i]
            running, row = 0.0, []
            for count in counts:
                running += count
                row.append(min(1.0, running / at_risk))
            rows.append(tuple(row))
        return rows

    def free_rows(
        self, talking: tuple[float, ...], wrapping: tuple[float, ...]
    ) -> tuple[list[tuple[float, ...]], list[tuple[float, ...]]]:
        """For each agent talking or wrapping up, its row of P(free within TAU[k]) and of their variances."""
        last_t, last_w = len(self.talking) - 1, len(self.wrapping) - 1
        t_buckets = [min(int(e / TALK_STEP_S), last_t) for e in talking]
        w_buckets = [min(int(e / WRAP_STEP_S), last_w) for e in wrapping]
        rows = [self.talking[b] for b in t_buckets] + [self.wrapping[b] for b in w_buckets]
        variances = [self.talking_vars[b] for b in t_buckets] + [self.wrapping_vars[b] for b in w_buckets]
        return rows, variances

    def talking_row(self, elapsed: float) -> tuple[float, ...]:
        return self.talking[min(int(elapsed / TALK_STEP_S), len(self.talking) - 1)]

    def wrapping_row(self, elapsed: float) -> tuple[float, ...]:
        return self.wrapping[min(int(elapsed / WRAP_STEP_S), len(self.wrapping) - 1)]


class PersonModel:
    """P(the answer was a person | its answer age), from the calls agents heard (their dispositions say person or
    machine). People pick up after a few rings, voicemail after many: an abandoned call's age says how likely it
    was that a person heard the message."""

    STEP_S = 2.0

    def __init__(self, *, prior_person: float = 0.5, prior_weight: float = 2.0) -> None:
        buckets = int(MAX_AGE_S / self.STEP_S) + 1
        self._people = [prior_person * prior_weight] * buckets
        self._heard = [prior_weight] * buckets

    def observe(self, answer_age: float, person: bool) -> None:
        bucket = min(int(answer_age / self.STEP_S), len(self._heard) - 1)
        self._heard[bucket] += 1
        self._people[bucket] += person

    def person(self, answer_age: float) -> float:
        bucket = min(int(answer_age / self.STEP_S), len(self._heard) - 1)
        return self._people[bucket] / self._heard[bucket]


def _kaplan_meier_weights(ended: list[float], censored: list[float]) -> list[float]:
    """The Kaplan-Meier probability mass of each ended duration (``ended`` sorted), given durations known only to
    exceed ``censored`` (sorted): each censored one hands its share on to the longer ones. Without censoring,
    every weight is 1 / n."""
    n = len(ended) + len(censored)
    if not ended:
        return []
    survival, weights = 1.0, [0.0] * len(ended)
    c = 0  # censored durations below the current one leave the risk set
    i = 0
    while i < len(ended):
        while c < len(censored) and censored[c] < ended[i]:
            c += 1
        at_risk = n - i - c
        j = i
        while j < len(ended) and ended[j] == ended[i]:  # ties end together
            j += 1
        mass = survival * (j - i) / at_risk
        for k in range(i, j):
            weights[k] = mass / (j - i)
        survival -= mass
        i = j
    return weights


def _variances(rows: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """q(1 - q) of each row; rows past the data repeat one tuple, computed once."""
    done: dict[int, tuple[float, ...]] = {}
    out = []
    for row in rows:
        variance = done.get(id(row))
        if variance is None:
            variance = done[id(row)] = tuple(q * (1 - q) for q in row)
        out.append(variance)
    return out
