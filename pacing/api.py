"""The pacers' public API: what any dialer or simulator gives a pacer, and what it gets back. Standard types only.

A pacer is driven in three ways, all with the caller's clock (seconds as floats, any origin, never going back):

- ``dials(snapshot) -> int``: how many new calls to place now, given what a real dialer can observe
  (``Snapshot``). Call it often (every 250 ms and whenever something changes); it is cheap and has no side
  effect other than remembering the time.
- ``observe_call(outcome)``: each dialled call's resolution, once (``CallOutcome``): a person answered, a
  machine, no answer, busy, failed, and when (the age from dial).
- ``observe_live(live)``: each call a person answered, once it is settled (``LiveOutcome``): connected to an
  agent in time, or abandoned; and ``observe_handle(talk_s, wrap_s)`` when an agent finishes one.

A pacer never sees the truth a simulator knows (whether a ringing call will be answered, AMD mistakes); an
AMD false-positive rate it cannot observe is a setting (``PacingSettings.amd_false_positive_rate``).

    from pacing import PredictivePacer, PacingSettings, Snapshot

    pacer = PredictivePacer(PacingSettings(max_abandon_rate=0.03))
    n = pacer.dials(Snapshot(now=t, agents_ready=3, agents_talking=(40.0, 95.5), agents_wrapping=(),
                             calls_dialing=(1.5, 7.0), calls_waiting=0, line_cap=15))
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, Protocol


class CallResult(enum.StrEnum):
    HUMAN = "human"  # a person answered (as the dialer saw it: AMD said human, or no AMD and it reached an agent)
    MACHINE = "machine"  # an answering machine (AMD verdict, or an agent's disposition)
    NO_ANSWER = "no_answer"  # rang until the timeout
    BUSY = "busy"
    FAILED = "failed"  # invalid number, rejected, network failure


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a dialer can observe of one campaign at ``now``. Ages and elapsed times are in seconds."""

    now: float
    agents_ready: int  # logged in, not paused, waiting for a call (reserved agents count as not ready)
    agents_talking: tuple[float, ...]  # per agent on a call: seconds since the bridge
    agents_wrapping: tuple[float, ...]  # per agent in wrap-up: seconds since its call ended
    calls_dialing: tuple[float, ...]  # per call dialled and not answered yet: seconds since the dial
    calls_waiting: int  # answered by a person, not yet given an agent
    line_cap: int  # most concurrent calls allowed now (lines per agent x agents, carrier channels)
    agents_paused: int = 0
    lines_other: int = 0  # other lines in use (abandon messages playing, machines being handled)

    @property
    def lines_in_use(self) -> int:
        return len(self.calls_dialing) + self.calls_waiting + len(self.agents_talking) + self.lines_other

    @property
    def agents_active(self) -> int:
        return self.agents_ready + len(self.agents_talking) + len(self.agents_wrapping)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    at: float  # when it was known
    result: CallResult
    age: float  # seconds from the dial to the answer (human, machine) or to the end (others)


@dataclass(frozen=True, slots=True)
class LiveOutcome:
    """An answered call the dialer routed to agents, settled: ``connected`` to an agent within the deadline, or
    abandoned (the message played, the line hung up).

    ``person``: True or False once an agent has heard it (connected: the disposition says whether it was a person
    or an answering machine); None for an abandoned call, which nobody heard. Without AMD every answer is
    routed, so most abandoned calls are machines; the pacer estimates which were people from ``answer_age``
    (people answer sooner than voicemail picks up), learnt from the connected calls."""

    at: float
    connected: bool
    answer_age: float = 0.0  # seconds from the dial to the answer
    person: bool | None = None
    day: int = 0  # the campaign's calendar day (e.g. a date's ordinal): the UK rate is per day


@dataclass(frozen=True, slots=True)
class PacingSettings:
    max_abandon_rate: float = 0.03  # the regulatory ceiling (US: 30 days; UK: per day)
    #: The share of the ceiling to aim at: randomness in a shift must not push a campaign over.
    aim: float = 0.8
    #: Share of people AMD calls a machine (hung up on: abandoned, and invisible to the dialer). 0 without AMD.
    amd_false_positive_rate: float = 0.0
    lines_per_agent: float = 3.0
    #: Whose window the guard keeps under the ceiling: the FCC's 30 days, Ofcom's day, or both.
    abandon_rule: Literal["us_fcc", "uk_ofcom", "both"] = "both"


class Pacer(Protocol):
    def dials(self, snapshot: Snapshot) -> int: ...

    def observe_call(self, outcome: CallOutcome) -> None: ...

    def observe_live(self, live: LiveOutcome) -> None: ...

    def observe_handle(self, talk_s: float, wrap_s: float) -> None: ...
