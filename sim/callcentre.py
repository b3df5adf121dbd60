"""A discrete-event call centre for judging pacers (reference/pacing.md s4). Drives the daemon's own pacers.

One run is one shift of one scenario with one seed. What happens to a lead is fixed by (seed, lead) - common
random numbers - so two pacers dialling the same list meet the same people, machines and silences, and differ
only by when they dial. A lead's class is decided at dial time by comparing its own uniform draw with the
answer rates then (monotone coupling, for the drifting scenario). Leads are dialled strictly in list order.

Time is continuous (a heap of events); the pacer is polled every ``tick_s`` with a ``pacing.api.Snapshot``
and told every outcome a real dialer would see. The simulator keeps the truth the pacer never sees (who was a
person, AMD mistakes, greeting ends) and scores the shift with it: talk occupancy, idle waits, and the abandon
rate as the FCC and Ofcom define it (pacing.md s4.6).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pacing.api import CallOutcome, CallResult, LiveOutcome, Pacer, Snapshot

FAIL, BUSY, HUMAN, MACHINE, NO_ANSWER = range(5)
Schedule = tuple[tuple[float, float], ...]  # (hour into the shift, value) points, linear between; a repeated hour steps


def at(schedule: Schedule, hour: float) -> float:
    points = schedule
    if hour <= points[0][0]:
        return points[0][1]
    for (h0, v0), (h1, v1) in zip(points, points[1:], strict=False):
        if h0 <= hour < h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0)
    return points[-1][1]


@dataclass(frozen=True)
class Scenario:
    name: str
    agents: int
    p_human: Schedule
    p_machine: float = 0.40
    lines_per_agent: float = 3.0
    amd: bool = False
    amd_false_positive: float = 0.02
    amd_false_negative: float = 0.15
    talk_factor: Schedule = ((0.0, 1.0),)
    breaks: bool = False
    shift_hours: float = 8.0
    ring_timeout_s: float = 25.0


#: pacing.md s4.4 (shift 09:00-17:00; hours below are into the shift).
SCENARIOS = {
    "S1": Scenario("S1", 5, ((0.0, 0.06),), p_machine=0.45),
    "S2": Scenario("S2", 20, ((0.0, 0.10),)),
    "S3": Scenario("S3", 100, ((0.0, 0.12),)),
    "S4": Scenario("S4", 20, ((0.0, 0.14), (3.5, 0.05), (4.5, 0.05), (4.5, 0.11), (6.0, 0.08), (6.0, 0.16),
                              (8.0, 0.16)), talk_factor=((0.0, 1.0), (5.0, 1.0), (5.0, 1.2)), breaks=True),
}  # fmt: skip


class Lead:
    """Everything that will happen when this lead is dialled, drawn once per (seed, lead)."""

    __slots__ = ("fn_handle", "greeting", "machine_handle", "pdd", "ring_human", "ring_machine", "talk", "u_class",
                 "u_fn", "u_fp")  # fmt: skip

    def __init__(self, seed: int, index: int) -> None:
        rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - simulation
        self.u_class = rng.random()
        self.pdd = rng.lognormvariate(math.log(2.5), 0.4)
        self.ring_human = rng.lognormvariate(math.log(9.0), 0.45)
        self.ring_machine = max(8.0, rng.gauss(22.0, 4.0))
        self.greeting = rng.lognormvariate(math.log(1.0), 0.4)
        component = rng.random()
        median, sigma = (25.0, 0.5) if component < 0.40 else (110.0, 0.6) if component < 0.95 else (330.0, 0.4)
        self.talk = rng.lognormvariate(math.log(median), sigma)
        self.u_fp = rng.random()
        self.u_fn = rng.random()
        self.fn_handle = rng.lognormvariate(math.log(6.0), 0.4)
        self.machine_handle = rng.uniform(6.0, 10.0)

    def outcome(self, p_human: float, p_machine: float, timeout: float) -> int:
        u = self.u_class
        if u < 0.05:
            return FAIL
        if u < 0.08:
            return BUSY
        if u < 0.08 + p_human:
            return HUMAN if self.pdd + self.ring_human <= timeout else NO_ANSWER
        if u < 0.08 + p_human + p_machine:
            return MACHINE if self.pdd + self.ring_machine <= timeout else NO_ANSWER
        return NO_ANSWER


def wrap_time(seed: int, agent: int, call: int, talk: float) -> float:
    rng = random.Random((seed * 7919 + agent) * 1_000_003 + call)  # noqa: S311 - simulation
    return rng.lognormvariate(math.log(12.0), 0.6) + (30.0 if talk > 300 else 0.0)


@dataclass
class Result:
    scenario: str
    policy: str
    seed: int
    talk_s: float = 0.0
    handle_s: float = 0.0
    login_s: float = 0.0
    dials: int = 0
    people: int = 0  # answered by a person (truth)
    connected: int = 0  # people connected to an agent in time
    abandoned: int = 0  # people not connected within 2 s of the greeting's end (drops, late, AMD false positives)
    false_positives: int = 0
    uk_late: int = 0  # connected in time by the US clock, but more than 2 s after the answer (Ofcom's clock)
    dropped_seen: int = 0  # abandons the dialer saw (its own count, machines included)
    idle_waits: list[float] = field(default_factory=list)
    hourly_people: list[int] = field(default_factory=list)
    hourly_abandoned: list[int] = field(default_factory=list)
    lines_time: float = 0.0  # integral of lines in use

    @property
    def talk_min_per_agent_hour(self) -> float:
        return 60 * self.talk_s / self.login_s if self.login_s else 0.0

    @property
    def us_rate(self) -> float:
        return self.abandoned / self.people if self.people else 0.0

    @property
    def uk_rate(self) -> float:
        """Ofcom's A / (L + A), its 2 s counted from the answer (pacing.md s4.3, conservative): with AMD, a person
        is heard only after the greeting and the detector's silence, so some calls the US counts as connected in
        time are abandoned here."""
        settled = self.connected + self.abandoned
        return (self.abandoned + self.uk_late) / settled if settled else 0.0

    @property
    def max_hourly_rate(self) -> float:
        rates = [a / p for a, p in zip(self.hourly_abandoned, self.hourly_people, strict=True) if p >= 20]
        return max(rates, default=0.0)

    def idle_p90(self) -> float:
        waits = sorted(self.idle_waits)
        return waits[int(0.9 * (len(waits) - 1))] if waits else 0.0


# Agent states
READY, TALKING, WRAPPING, PAUSED = range(4)


class _Call:
    __slots__ = ("agent", "answered_at", "deadline", "dial_at", "is_person", "lead", "outcome", "state")

    def __init__(self, lead: Lead, dial_at: float, outcome: int) -> None:
        self.lead, self.dial_at, self.outcome = lead, dial_at, outcome
        self.state = "dialing"  # dialing, waiting, connecting, talking, message, done
        self.agent = -1
        self.answered_at = 0.0
        self.deadline = 0.0  # the latest a bridge may complete (truth for people: greeting end + 2 s)
        self.is_person = outcome == HUMAN


class Shift:
    """One shift: ``run()`` returns its ``Result``."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        pacer: Pacer,
        policy: str,
        *,
        tick_s: float = 0.25,
        bridge_s: float = 0.3,
        deadline_s: float = 2.0,
        message_s: float = 6.0,
        after_greeting_silence_s: float = 0.8,
    ) -> None:
        self.sc, self.seed, self.pacer, self.tick_s = scenario, seed, pacer, tick_s
        self.bridge_s, self.deadline_s, self.message_s = bridge_s, deadline_s, message_s
        self.silence_s = after_greeting_silence_s
        self.end = scenario.shift_hours * 3600
        self.rng = random.Random(seed * 31 + 7)  # noqa: S311 - latencies
        self.events: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.next_lead = 0
        n = scenario.agents
        self.state = [READY] * n
        self.since = [0.0] * n
        self.calls_done = [0] * n
        self.ready: OrderedDict[int, float] = OrderedDict((j, 0.0) for j in range(n))  # longest idle first
        self.paused_s = 0.0
        self.break_due: list[deque[tuple[float, float]]] = [deque(self._breaks(j)) for j in range(n)]
        self.dialing: set[_Call] = set()
        self.waiting: deque[_Call] = deque()
        self.lines_other = 0
        self.talking_calls = 0
        self.result = Result(scenario.name, policy, seed)
        hours = math.ceil(scenario.shift_hours)
        self.result.hourly_people, self.result.hourly_abandoned = [0] * hours, [0] * hours
        self._lines_at = 0.0

    def _breaks(self, agent: int) -> list[tuple[float, float]]:
        if not self.sc.breaks:
            return []
        group = agent % 5  # at most a fifth of the team away at once
        return [(3600 * 1.0 + group * 900, 900.0), (3600 * 3.0 + group * 1800, 1800.0),
                (3600 * 6.0 + group * 900, 900.0)]  # fmt: skip

    # -- event plumbing --------------------------------------------------------------------------------------

    def _at(self, t: float, kind: int, ref: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, ref))

    def run(self) -> Result:
        self._at(0.0, _TICK, None)
        handlers: dict[int, Callable[[Any], None]] = {
            _TICK: self._tick, _RESOLVE: self._resolve, _ANSWER: self._answer, _ROUTABLE: self._routable,
            _DROP: self._drop, _CONNECT: self._connect, _HANGUP: self._hangup, _FREE: self._agent_free,
            _LINE_FREE: self._line_free, _BREAK_END: self._break_end,
        }  # fmt: skip
        while self.events:
            t, _, kind, ref = heapq.heappop(self.events)
            self._account_lines(t)
            self.now = t
            handlers[kind](ref)
        self._account_lines(self.end)
        for j in range(self.sc.agents):  # the shift ends: close open pauses
            if self.state[j] == PAUSED:
                self.paused_s += max(0.0, self.end - self.since[j])
        self.result.login_s = self.sc.agents * self.end - self.paused_s
        return self.result

    def _account_lines(self, t: float) -> None:
        t = min(t, self.end)
        if t > self._lines_at:
            lines = len(self.dialing) + len(self.waiting) + self.talking_calls + self.lines_other
            self.result.lines_time += lines * (t - self._lines_at)
            self._lines_at = t

    # -- the pacer -------------------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        now, state, since = self.now, self.state, self.since
        talking = tuple(now - since[j] for j in range(self.sc.agents) if state[j] == TALKING)
        wrapping = tuple(now - since[j] for j in range(self.sc.agents) if state[j] == WRAPPING)
        paused = sum(1 for s in state if s == PAUSED)
        active = self.sc.agents - paused
        return Snapshot(
            now=now, agents_ready=len(self.ready), agents_talking=talking, agents_wrapping=wrapping,
            calls_dialing=tuple(now - c.dial_at for c in self.dialing), calls_waiting=len(self.waiting),
            line_cap=int(self.sc.lines_per_agent * active), agents_paused=paused, lines_other=self.lines_other,
        )  # fmt: skip

    def _tick(self, _ref: Any) -> None:
        if self.now >= self.end:
            return
        if self.sc.breaks:  # idle agents whose break is due go now
            for agent in [a for a in self.ready if self.break_due[a] and self.break_due[a][0][0] <= self.now]:
                del self.ready[agent]
                _, length = self.break_due[agent].popleft()
                self.state[agent], self.since[agent] = PAUSED, self.now
                self._at(self.now + length, _BREAK_END, (agent, 0.0, 0.0))
        count = self.pacer.dials(self.snapshot())
        for _ in range(count):
            self._dial()
        self._at(self.now + self.tick_s, _TICK, None)

    def _dial(self) -> None:
        lead = Lead(self.seed, self.next_lead)
        self.next_lead += 1
        hour = self.now / 3600
        sc = self.sc
        outcome = lead.outcome(at(sc.p_human, hour), sc.p_machine, sc.ring_timeout_s)
        call = _Call(lead, self.now, outcome)
        self.dialing.add(call)
        self.result.dials += 1
        latency = self.rng.lognormvariate(math.log(0.3), 0.3)  # decision to dial: the API round trip
        start = self.now + latency
        if outcome == FAIL:
            self._at(start + lead.pdd + 0.5, _RESOLVE, call)
        elif outcome == BUSY:
            self._at(start + lead.pdd + 4.0, _RESOLVE, call)
        elif outcome == NO_ANSWER:
            self._at(start + sc.ring_timeout_s, _RESOLVE, call)
        else:
            ring = lead.ring_human if outcome == HUMAN else lead.ring_machine
            self._at(start + lead.pdd + ring, _ANSWER, call)

    def _resolve(self, call: _Call) -> None:
        """Failed, busy or unanswered: the line is free and the pacer learns it."""
        self.dialing.discard(call)
        result = {FAIL: CallResult.FAILED, BUSY: CallResult.BUSY}.get(call.outcome, CallResult.NO_ANSWER)
        self.pacer.observe_call(CallOutcome(self.now, result, self.now - call.dial_at))

    # -- answers ---------------------------------------------------------------------------------------------

    def _answer(self, call: _Call) -> None:
        call.answered_at = self.now
        lead = call.lead
        if call.is_person:
            self.result.people += 1
            self._hour(self.result.hourly_people)
            greeting_end = self.now + lead.greeting
            call.deadline = greeting_end + self.deadline_s
            if self.sc.amd:
                verdict_at = greeting_end + self.silence_s
                if lead.u_fp < self.sc.amd_false_positive:  # AMD calls a person a machine: hung up on
                    self._at(verdict_at, _HANGUP, call)
                    return
                self._at(verdict_at, _ROUTABLE, call)
            else:
                self._routable(call)
        elif self.sc.amd:
            verdict_at = self.now + 3.5
            if lead.u_fn < self.sc.amd_false_negative:  # a machine AMD calls a person: goes to an agent
                call.deadline = verdict_at + (self.deadline_s - self.silence_s)
                self._at(verdict_at, _ROUTABLE, call)
            else:
                self._at(verdict_at, _HANGUP, call)
        else:  # no AMD: the dialer cannot tell, so the machine goes to an agent like anyone
            call.deadline = self.now + self.deadline_s
            self._routable(call)

    def _routable(self, call: _Call) -> None:
        """The dialer now knows someone (it thinks a person) is on the line: an agent within the deadline."""
        self.dialing.discard(call)
        self.pacer.observe_call(CallOutcome(self.now, CallResult.HUMAN, self.now - call.dial_at))
        # The dialer's own drop timer: 2 s from the answer without AMD (it cannot see the greeting end, and the
        # end is after the answer), from the greeting's end with AMD (the human verdict comes
        # after_greeting_silence after it). Never later than the truth, so no bridge is ever late.
        if self.sc.amd:
            call.deadline = self.now + self.deadline_s - self.silence_s
        else:
            call.deadline = call.answered_at + self.deadline_s
        call.state = "waiting"
        if self.ready:
            self._assign(call)
        else:
            self.waiting.append(call)
            self._at(call.deadline - self.bridge_s, _DROP, call)

    def _assign(self, call: _Call) -> None:
        agent, ready_since = self.ready.popitem(last=False)
        self.result.idle_waits.append(self.now - ready_since)
        self.state[agent], self.since[agent] = TALKING, self.now
        call.agent, call.state = agent, "connecting"
        self.talking_calls += 1
        self._at(self.now + self.bridge_s, _CONNECT, call)

    def _drop(self, call: _Call) -> None:
        if call.state != "waiting":
            return
        self.waiting.remove(call)
        call.state = "message"
        self.result.dropped_seen += 1
        if call.is_person:
            self._abandoned()
        self.pacer.observe_live(LiveOutcome(self.now, connected=False, answer_age=call.answered_at - call.dial_at))
        self.lines_other += 1
        self._at(self.now + self.message_s, _LINE_FREE, call)

    def _abandoned(self) -> None:
        self.result.abandoned += 1
        self._hour(self.result.hourly_abandoned)

    def _hour(self, counts: list[int]) -> None:
        hour = int(self.now // 3600)
        if 0 <= hour < len(counts):
            counts[hour] += 1

    def _hangup(self, call: _Call) -> None:
        """AMD said machine: we hang up (a person, if AMD was wrong: abandoned)."""
        self.dialing.discard(call)
        if call.is_person:
            self.result.false_positives += 1
            self._abandoned()
        self.pacer.observe_call(CallOutcome(self.now, CallResult.MACHINE, self.now - call.dial_at))

    def _connect(self, call: _Call) -> None:
        call.state = "talking"
        agent = call.agent
        self.pacer.observe_live(
            LiveOutcome(self.now, connected=True, answer_age=call.answered_at - call.dial_at, person=call.is_person)
        )  # the agent hears which it is
        if call.is_person:
            self.result.connected += 1
            self.result.uk_late += self.now > call.answered_at + self.deadline_s
            talk = call.lead.talk * at(self.sc.talk_factor, self.now / 3600)
            self.result.talk_s += max(0.0, min(self.now + talk, self.end) - self.now)
        else:  # a machine reached an agent, who hangs up after listening a few seconds
            talk = call.lead.fn_handle if self.sc.amd else call.lead.machine_handle
        self._at(self.now + talk, _FREE, (agent, call, talk))

    def _line_free(self, _call: _Call) -> None:
        self.lines_other -= 1

    # -- agents ----------------------------------------------------------------------------------------------

    def _agent_free(self, ref: Any) -> None:
        """The call ended: the line is free, the agent wraps up."""
        agent, call, talk = ref
        self.talking_calls -= 1
        call.state = "done"
        k = self.calls_done[agent] = self.calls_done[agent] + 1
        wrap = wrap_time(self.seed, agent, k, talk) if call.is_person else 3.0
        self.result.handle_s += talk + wrap
        self.state[agent], self.since[agent] = WRAPPING, self.now
        self._at(self.now + wrap, _BREAK_END, (agent, talk, wrap))

    def _break_end(self, ref: Any) -> None:
        """End of a wrap-up (or a break): the agent is ready, or goes on a break that is due."""
        agent, talk, wrap = ref
        if self.state[agent] == WRAPPING:
            self.pacer.observe_handle(talk, wrap)
        elif self.state[agent] == PAUSED:
            self.paused_s += max(0.0, min(self.now, self.end) - self.since[agent])
        due = self.break_due[agent]
        if due and due[0][0] <= self.now and self.now < self.end:
            _, length = due.popleft()
            self.state[agent], self.since[agent] = PAUSED, self.now
            self._at(self.now + length, _BREAK_END, (agent, 0.0, 0.0))
            return
        self.state[agent], self.since[agent] = READY, self.now
        self.ready[agent] = self.now
        while self.waiting and self.ready:
            call = self.waiting.popleft()
            self._assign(call)


_TICK, _RESOLVE, _ANSWER, _ROUTABLE, _DROP, _CONNECT, _HANGUP, _FREE, _LINE_FREE, _BREAK_END = range(10)


def run_shift(scenario: Scenario, seed: int, make_pacer: Callable[[Scenario], Pacer], policy: str) -> Result:
    return Shift(scenario, seed, make_pacer(scenario), policy).run()
