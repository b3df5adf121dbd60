"""Pacers, their models and the abandon ledger (pure, parameter tables), and the call-centre simulator that
judges them (short shifts)."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from pacing.abandon import AbandonLedger
from pacing.api import LiveOutcome, PacingSettings, Snapshot
from pacing.estimates import TAU, AnswerModel, HandleModel, PersonModel, _kaplan_meier_weights
from pacing.pacers import PredictivePacer, PreviewPacer, ProgressivePacer, _expected_running_max
from sim.callcentre import HUMAN, SCENARIOS, Lead, Shift
from sim.oracle import oracle_shift
from sim.vicidial import VicidialAdapt


def snap(ready: int = 0, talking: tuple[float, ...] = (), wrapping: tuple[float, ...] = (),
         dialing: tuple[float, ...] = (), waiting: int = 0, cap: int = 60, now: float = 100.0) -> Snapshot:  # fmt: skip
    return Snapshot(now=now, agents_ready=ready, agents_talking=talking, agents_wrapping=wrapping,
                    calls_dialing=dialing, calls_waiting=waiting, line_cap=cap)  # fmt: skip


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (snap(ready=3), 3),
        (snap(ready=3, dialing=(1.0, 2.0)), 1),  # one call in flight per ready agent
        (snap(ready=3, dialing=(1.0,), waiting=1), 1),
        (snap(ready=2, dialing=(1.0, 2.0, 3.0)), 0),
        (snap(ready=5, talking=(10.0,) * 3, cap=6), 3),  # the line cap (conversations hold lines too)
        (snap(ready=0, talking=(10.0,)), 0),
    ],
)
def test_progressive(snapshot: Snapshot, expected: int) -> None:
    assert ProgressivePacer().dials(snapshot) == expected
    assert PreviewPacer().dials(snapshot) == 0, "preview never dials by itself"


@pytest.mark.parametrize(
    ("snapshot", "low", "high"),
    [
        (snap(ready=0), 0, 0),  # nobody to take a call
        (snap(ready=10, talking=(5.0,) * 10, cap=10), 0, 0),  # every line in use
        (snap(ready=10), 11, 60),  # idle agents, a low answer rate: several calls per agent
        (snap(ready=1), 1, 8),
        (snap(ready=0, talking=(1.0,) * 20), 0, 3),  # everyone just started talking: hardly a dial
    ],
)
def test_predictive_bounds(snapshot: Snapshot, low: int, high: int) -> None:
    assert low <= warm(PredictivePacer()).dials(snapshot) <= high


def warm(pacer: PredictivePacer) -> PredictivePacer:
    """A pacer with a day of people behind it (a fresh one dials progressively until it may risk an abandon)."""
    for _ in range(300):
        pacer.observe_live(LiveOutcome(0.0, connected=True, answer_age=9.0, person=True))
    return pacer


def test_predictive_dials_more_for_more_idle_agents_and_less_for_more_calls_ringing() -> None:
    pacer = warm(PredictivePacer())
    by_ready = [pacer.dials(snap(ready=r, talking=(60.0,) * (20 - r))) for r in range(0, 21, 4)]
    assert by_ready == sorted(by_ready)
    assert by_ready[-1] > by_ready[0]
    by_ringing = [pacer.dials(snap(ready=10, dialing=(3.0,) * n)) for n in (0, 10, 30, 50)]
    assert by_ringing == sorted(by_ringing, reverse=True)
    assert by_ringing[-1] < by_ringing[0]
    # Agents near the end of long calls count as soon free: more dials than for agents who just started.
    assert pacer.dials(snap(talking=(400.0,) * 10)) >= pacer.dials(snap(talking=(1.0,) * 10))


def test_the_controller_follows_the_measured_rate() -> None:
    pacer = PredictivePacer()
    for _ in range(200):
        pacer.observe_live(LiveOutcome(0.0, connected=True, person=True))
    assert pacer.scale == 1.0, "anti-windup: while the guard (not the target) holds the dials back, no rise"
    pacer.target_bound = True
    for _ in range(200):
        pacer.observe_live(LiveOutcome(0.0, connected=True, person=True))
    assert pacer.scale > 1.0, "nobody abandoned while the target held the dials back: the target rises"
    up = pacer.scale
    for _ in range(5):
        pacer.observe_live(LiveOutcome(0.0, connected=False, answer_age=9.0))
    assert pacer.scale < up, "abandons bring it down"


def pacer_with_a_day(connected: int, abandoned: int, false_positive_rate: float = 0.0) -> PredictivePacer:
    pacer = PredictivePacer(PacingSettings(amd_false_positive_rate=false_positive_rate))
    for _ in range(connected):
        pacer.observe_live(LiveOutcome(0.0, connected=True, answer_age=5.0, person=True, day=5))
    for _ in range(abandoned):
        pacer.observe_live(LiveOutcome(0.0, connected=False, answer_age=5.0, day=5))
    return pacer


@pytest.mark.parametrize(
    ("connected", "abandoned", "false_positive_rate", "snapshot", "mode"),
    [
        (200, 2, 0.0, snap(ready=4), "predictive"),
        (200, 5, 0.0, snap(ready=4), "predictive"),  # 5 + what may still come stays under 95% of 3% of 205
        (200, 6, 0.0, snap(ready=4), "progressive"),  # ... 6 does not
        (0, 0, 0.0, snap(ready=4), "predictive"),  # a first call may be risked where an abandon is all but impossible
        (10, 0, 0.0, snap(ready=1, dialing=(2.0,) * 10), "progressive"),  # ten answers due for one agent
        (200, 2, 0.0, snap(ready=1, dialing=(2.0,) * 30), "progressive"),  # the calls ringing would spend the day
        (500, 0, 0.025, snap(ready=4), "progressive"),  # AMD's false positives alone spend the aim (3% x 0.8)
        (500, 0, 0.01, snap(ready=4), "predictive"),
    ],
)
def test_the_guard(connected: int, abandoned: int, false_positive_rate: float, snapshot: Snapshot, mode: str) -> None:
    pacer = pacer_with_a_day(connected, abandoned, false_positive_rate)
    count = pacer.dials(snapshot)
    assert pacer.mode == mode
    if mode == "progressive":
        assert count == ProgressivePacer().dials(snapshot)
    else:
        assert count > ProgressivePacer().dials(snapshot)


def test_the_guard_dials_less_as_the_day_fills_up() -> None:
    counts = [pacer_with_a_day(200, abandoned).dials(snap(ready=4)) for abandoned in range(7)]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] > counts[5] > counts[6] == 4, "fewer risks near the ceiling; past it, one call per agent"
    # With nobody behind it, the pacer risks only what is all but certain to find an agent.
    fresh = PredictivePacer()
    assert fresh.dials(snap(ready=4)) > 4
    assert fresh.dials(snap(ready=0, dialing=(2.0,) * 3)) == 0


@pytest.mark.parametrize(
    ("days", "false_positive_rate", "us", "uk"),
    [
        ({10: (97, 3)}, 0.0, 0.03, 0.03),
        ({10: (97, 3), 9: (100, 0)}, 0.0, 0.015, 0.03),  # the US window spans both days
        ({10: (100, 0), -25: (0, 50)}, 0.0, 0.0, 0.0),  # 35 days ago: outside the 30-day window
        ({10: (98, 0)}, 0.02, 0.02, 0.02),  # 2 people in 100 hung up on by AMD, unseen
    ],
)
def test_abandon_ledger(days: dict[int, tuple[int, int]], false_positive_rate: float, us: float, uk: float) -> None:
    ledger = AbandonLedger(false_positive_rate, days_kept=60)
    for day, (connected, abandoned) in sorted(days.items()):
        for _ in range(connected):
            ledger.record(day, connected=True)
        for _ in range(abandoned):
            ledger.record(day, connected=False)
    assert ledger.us_rate(10) == pytest.approx(us)
    assert ledger.uk_rate(10) == pytest.approx(uk)


def test_answer_model_learns_ages_and_shares() -> None:
    model = AnswerModel(window=1000, prior_calls=0)
    for _ in range(100):
        model.observe(True, 10.2)  # people answer at 10 s
        model.observe(False, 25.0)  # the rest ring out at 25 s
    model.refresh()
    assert model.eventually[0] == pytest.approx(0.5)
    row = model.rows[model.bucket(0.0)]
    assert row[TAU.index(10.0)] == 0.0  # not yet at 10 s from the dial (the answer comes at 10.2)
    assert row[TAU.index(12.0)] == pytest.approx(0.5)
    assert model.rows[model.bucket(11.0)][0] == 0.0, "past the answer age, only the ring-outs are left"
    assert model.eventually[model.bucket(11.0)] == 0.0


def test_handle_model_predicts_free_agents() -> None:
    model = HandleModel(window=100, prior_calls=0)
    for _ in range(50):
        model.observe(60.0, 10.0)
    model.refresh()
    assert model.talking_row(55.0)[TAU.index(15.0)] == 1.0  # 55 s into 60 s of talk + 10 of wrap: free by 70
    assert model.talking_row(55.0)[TAU.index(10.0)] == 0.0
    assert model.wrapping_row(5.0)[TAU.index(5.0)] == 1.0
    assert model.wrapping_row(5.0)[TAU.index(4.0)] == 0.0


@pytest.mark.parametrize(
    ("ended", "censored", "weights"),
    [
        ([1.0, 2.0, 3.0], [], [1 / 3] * 3),  # nothing censored: the plain empirical distribution
        ([1.0, 2.0, 3.0], [1.5], [1 / 4, 3 / 8, 3 / 8]),  # the call known to outlast 1.5 s hands its share on
        ([1.0, 2.0, 3.0], [5.0], [1 / 4] * 3),  # ... and one outlasting them all keeps its quarter beyond
        ([2.0, 2.0], [1.0], [1 / 2, 1 / 2]),  # ties end together; censored before any end: no mass lost
        ([], [4.0], []),
    ],
)
def test_kaplan_meier_weights(ended: list[float], censored: list[float], weights: list[float]) -> None:
    assert _kaplan_meier_weights(ended, censored) == pytest.approx(weights)


def test_handle_model_counts_the_conversations_still_going_on() -> None:
    model = HandleModel(window=100, prior_calls=0)
    for _ in range(50):
        model.observe(10.0, 0.0)  # only the short calls have ended so far ...
    model.refresh()
    assert model.talking_row(0.0)[TAU.index(15.0)] == 1.0
    model.refresh(ongoing=[40.0] * 50, now=100.0)  # ... while as many are still going after 40 s
    assert model.talking_row(0.0)[TAU.index(15.0)] == pytest.approx(0.5), "half the agents who just started"
    assert not model.refresh_due(110.0)
    assert model.refresh_due(100.0 + HandleModel.REFRESH_S), "the censored calls age: rebuilt on the clock"


@pytest.mark.parametrize(
    ("means", "variances", "expected"),
    [
        ([0.0], [1.0], 1 / math.sqrt(2 * math.pi)),  # E[max(0, X)], X standard normal
        ([-1.0, 2.0, 1.0], [0.0, 0.0, 0.0], 2.0),  # no noise: the largest mean
        ([-3.0, -2.0], [0.0, 0.0], 0.0),  # never positive
    ],
)
def test_expected_running_max_exact_cases(means: list[float], variances: list[float], expected: float) -> None:
    assert _expected_running_max(means, variances) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("drift", "steps"), [(0.0, 10), (-0.3, 13), (-1.0, 13), (0.2, 6), (0.5, 13)])
def test_expected_running_max_matches_a_monte_carlo_walk(drift: float, steps: int) -> None:
    """Abandons are the running maximum of (answers - free agents): Clark's approximation against simulation,
    and above the largest single-point expectation (what a pointwise model would use). Clark's moment matching
    errs high where the walk drifts down (the pacer's usual regime: the cautious side), by at most a quarter."""
    rng = random.Random(7)  # noqa: S311 (a simulation, not a secret)
    paths, total = 20_000, 0.0
    for _ in range(paths):
        walk = best = 0.0
        for _ in range(steps):
            walk += rng.gauss(drift, 1.0)
            best = max(best, walk)
        total += best
    means = [drift * (k + 1) for k in range(steps)]
    variances = [float(k + 1) for k in range(steps)]
    estimate = _expected_running_max(means, variances)
    simulated = total / paths
    assert 0.97 * simulated <= estimate <= 1.25 * simulated
    pointwise = max(_expected_running_max([m], [v]) for m, v in zip(means, variances, strict=True))
    assert estimate > pointwise


def test_person_model_tells_people_from_voicemail_by_answer_age() -> None:
    model = PersonModel()
    for _ in range(50):
        model.observe(8.0, True)
        model.observe(22.0, False)
    assert model.person(8.5) > 0.9
    assert model.person(22.5) < 0.1


def test_vicidial_replica_adapts_and_brakes() -> None:
    replica = VicidialAdapt(method="HARD_LIMIT")
    idle = snap(ready=8, talking=(30.0,) * 2)
    for second in range(16):
        replica.dials(dataclasses.replace(idle, now=float(second)))
    assert replica.level > 1.0, "idle agents raise the level"
    raised = replica.level
    replica.calls_today, replica.human_today, replica.drops_today = 100, 50, 10  # a 20% drop rate today
    for second in range(16, 32):
        replica.dials(dataclasses.replace(idle, now=float(second)))
    assert replica.level == 1.0 < raised, "over the drop limit today: back to one line per agent"
    assert replica.dials(dataclasses.replace(idle, now=40.0)) == 8  # goal 10 agents x 1.0, 2 conversations


def _short(name: str, hours: float = 0.5, **changes: object) -> object:
    return dataclasses.replace(SCENARIOS[name], shift_hours=hours, **changes)  # type: ignore[arg-type]


def test_leads_are_common_random_numbers() -> None:
    assert vars_of(Lead(3, 17)) == vars_of(Lead(3, 17))
    assert vars_of(Lead(3, 17)) != vars_of(Lead(4, 17))
    lead = Lead(3, 17)
    classes = [lead.outcome(p, 0.4, 25.0) for p in (0.0, 0.5, 0.92)]
    assert classes.count(HUMAN) <= 2, "monotone coupling: a lead turns human only as the answer rate rises"


def vars_of(lead: Lead) -> tuple[float, ...]:
    return tuple(getattr(lead, name) for name in Lead.__slots__)


def test_a_short_shift_scores_as_the_rules_count() -> None:
    scenario = _short("S2")
    progressive = Shift(scenario, 2, ProgressivePacer(), "progressive").run()  # type: ignore[arg-type]
    again = Shift(scenario, 2, ProgressivePacer(), "progressive").run()  # type: ignore[arg-type]
    assert (progressive.talk_s, progressive.dials) == (again.talk_s, again.dials), "a seed replays exactly"
    assert progressive.abandoned == 0, "progressive without AMD abandons nobody"
    assert progressive.login_s == 20 * 1800
    predictive = Shift(scenario, 2, PredictivePacer(), "predictive").run()  # type: ignore[arg-type]
    assert predictive.talk_s > progressive.talk_s
    assert predictive.people == predictive.connected + predictive.abandoned
    oracle = oracle_shift(scenario, 2)  # type: ignore[arg-type]
    assert oracle.abandoned == 0
    assert oracle.talk_s > predictive.talk_s


def test_amd_false_positives_are_abandons_the_dialer_never_sees() -> None:
    scenario = _short("S2", amd=True, amd_false_positive=0.05)
    result = Shift(scenario, 4, ProgressivePacer(), "progressive").run()  # type: ignore[arg-type]
    assert result.false_positives > 0
    assert result.abandoned >= result.false_positives
    assert result.dropped_seen == result.abandoned - result.false_positives


def test_breaks_take_agents_away() -> None:
    scenario = _short("S4", hours=8.0)
    result = Shift(scenario, 1, ProgressivePacer(), "progressive").run()  # type: ignore[arg-type]
    assert result.login_s == pytest.approx(20 * 8 * 3600 - 20 * 3600, rel=0.02)  # an hour of breaks each
