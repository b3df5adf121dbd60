"""GCRA send scheduling and warmup caps (pure, parameter tables; the clock is the test's)."""

from __future__ import annotations

import pytest

from pacing.gcra import Gcra, Limits
from pacing.warmup import DailyCap, WarmupPlan


@pytest.mark.parametrize(
    ("rate", "burst", "arrivals", "taken"),
    [
        (10.0, 1, [0.0, 0.0, 0.05, 0.1, 0.1], [True, False, False, True, False]),  # one per 100 ms
        (10.0, 3, [0.0, 0.0, 0.0, 0.0, 0.1], [True, True, True, False, True]),  # a burst of 3, then the rate
        (1.0, 1, [5.0, 5.5, 6.0, 100.0, 100.0], [True, False, True, True, False]),  # idle time is not saved up
        (2.0, 2, [0.0, 0.2, 0.4, 0.6, 1.0], [True, True, False, True, True]),
    ],
)
def test_gcra_takes_what_the_rate_and_burst_allow(rate: float, burst: int, arrivals: list[float],
                                                  taken: list[bool]) -> None:  # fmt: skip
    limiter = Gcra(rate, burst)
    assert [limiter.take(t) for t in arrivals] == taken


@pytest.mark.parametrize(("rate", "latency_s"), [(200.0, 0.0), (200.0, 0.3), (833.0, 0.05), (50.0, 0.0)])
def test_reserved_slots_hold_the_rate_smoothly(rate: float, latency_s: float) -> None:
    """A steady backlog for 10 s: the mean rate within 1% and no 100 ms window above 1.5x its share (the issue's
    rate-adherence figures), whatever the send latency (slots are reserved, not waited for serially)."""
    limiter = Gcra(rate)
    now, sends = 0.0, []
    while now < 10.0:
        at = limiter.reserve(now)
        sends.append(at + latency_s)
        now = at  # the scheduler asks again as soon as a slot is taken
    sends = [t for t in sends if latency_s <= t < 10.0 + latency_s]
    assert len(sends) / 10.0 == pytest.approx(rate, rel=0.01)
    windows: dict[int, int] = {}
    for t in sends:
        windows[int((t - latency_s) * 10)] = windows.get(int((t - latency_s) * 10), 0) + 1
    assert max(windows.values()) <= 1.5 * rate / 10


def test_several_limits_book_the_latest_slot_on_each() -> None:
    provider, domain = Gcra(100.0), Gcra(2.0)  # the provider allows 100/s; this recipient domain 2/s
    to_domain = Limits([provider, domain])
    slots = [to_domain.reserve(0.0) for _ in range(4)]
    assert slots == pytest.approx([0.0, 0.5, 1.0, 1.5])
    # Other domains are not held back by this one: the provider had only four slots booked.
    assert provider.earliest(0.0) == pytest.approx(1.51)
    assert Limits([provider, Gcra(50.0)]).earliest(1.6) == pytest.approx(1.6)


def test_a_rate_change_applies_to_the_next_slot() -> None:
    limiter = Gcra(10.0)
    assert limiter.reserve(0.0) == 0.0
    limiter.set_rate(1.0)  # the provider answered 429: slow down
    assert limiter.reserve(0.0) == pytest.approx(0.1)
    assert limiter.reserve(0.0) == pytest.approx(1.1)
    with pytest.raises(ValueError, match="rate_per_s must be positive"):
        Gcra(0.0)


@pytest.mark.parametrize(
    ("day", "cap"),
    [(99, 50), (100, 50), (101, 100), (103, 400), (104, 800), (105, 1000), (106, None), (400, None)],
)
def test_a_warmup_plan_caps_each_day_until_it_is_over(day: int, cap: int | None) -> None:
    plan = WarmupPlan.doubling(100, start=50, target=1000)
    assert plan.daily_caps == (50, 100, 200, 400, 800, 1000)
    assert plan.cap(day) == cap


def test_the_daily_cap_holds_across_a_restart_and_resets_each_day() -> None:
    plan = WarmupPlan(10, (100, 200))
    cap = DailyCap(plan)
    assert cap.take(10, 60)
    assert not cap.take(10, 41), "all or nothing: 41 more would pass 100"
    assert cap.remaining(10) == 40
    restarted = DailyCap(plan)
    restarted.rebuild(10, 60)  # the ledger says 60 went today
    assert restarted.remaining(10) == 40
    assert restarted.take(10, 40)
    assert not restarted.take(10)
    assert restarted.remaining(11) == 200, "a new day, a new cap"
    assert restarted.remaining(12) is None, "warm: no cap from the plan"
    assert restarted.take(12, 10**6)
    with pytest.raises(ValueError, match="non-empty list of daily caps"):
        WarmupPlan(1, ())
