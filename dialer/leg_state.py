"""One call leg's state, driven by carrier webhooks that may arrive duplicated, late or out of order. Pure.

States advance along created -> initiated -> answered -> human | machine -> bridged -> ended. An event that
implies a later stage moves the leg there even if the events in between have not arrived yet (Telnyx does not
order deliveries); one that belongs to a stage already passed is stale and ignored; one that contradicts what
is known (a machine verdict on a leg already judged human) is illegal: recorded, never applied, never a crash.
``ended`` is final.

An agent's leg (its softphone's call, parked until we bridge customers to it) has its own, smaller table: it
goes initiated -> answered -> bridged, and back to answered each time a customer leaves (``unbridged``, told
by the dialer: the carrier sends no event for it), as many times as the agent takes calls. ``call.bridged``
names no peer, so a late one cannot be told from a new one: the leg counts bridges (events) and unbridges
(the dialer's reports) and is bridged while the first exceeds the second, whatever order they come in.

Facts (answer, greeting end, verdict, bridge, hangup) are kept with the carrier's times, whatever order they
arrive in, because abandon-rate accounting needs them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class LegState(enum.IntEnum):
    CREATED = 0  # dial sent, nothing heard yet
    INITIATED = 1
    ANSWERED = 2
    HUMAN = 3
    MACHINE = 4
    BRIDGED = 5
    ENDED = 6


class LegKind(enum.StrEnum):
    CUSTOMER = "customer"  # a call we dialled to a person or business
    AGENT = "agent"  # an agent's softphone (a SIP address at either end)

    @classmethod
    def of(cls, payload: dict[str, Any]) -> LegKind:
        ends = (payload.get("from"), payload.get("to"))
        sip_end = any(isinstance(end, str) and end.startswith("sip:") for end in ends)
        return cls.AGENT if sip_end or payload.get("calling_party_type") == "sip" else cls.CUSTOMER


class Handling(enum.StrEnum):
    """What became of an event; stored with it in ``call_events.handling``."""

    APPLIED = "applied"
    IGNORED = "ignored"  # stale, a duplicate in substance, or a type that changes no state
    ILLEGAL = "illegal_transition"
    UNMATCHED = "unmatched"  # no leg known for its call_control_id


HUMAN_RESULTS = frozenset({"human", "human_residence", "human_business", "not_sure", "silence"})
MACHINE_RESULTS = frozenset({"machine", "fax_detected", "screening"})
DETECTION_EVENTS = frozenset(
    {
        "call.machine.detection.ended",
        "call.machine.premium.detection.ended",
        "call.machine.premium.call_screening.detected",
    }
)
GREETING_EVENTS = frozenset({"call.machine.greeting.ended", "call.machine.premium.greeting.ended"})

S = LegState
_ANY_LIVE = frozenset(state for state in LegState if state is not S.ENDED)

#: (event, verdict) -> {from state: to state}. States not listed: stale (ignored) unless in _ILLEGAL.
_MOVES: dict[tuple[str, str | None], dict[LegState, LegState]] = {
    ("call.initiated", None): {S.CREATED: S.INITIATED},
    ("call.answered", None): {S.CREATED: S.ANSWERED, S.INITIATED: S.ANSWERED},
    ("verdict", "human"): {S.CREATED: S.HUMAN, S.INITIATED: S.HUMAN, S.ANSWERED: S.HUMAN},
    ("verdict", "machine"): {S.CREATED: S.MACHINE, S.INITIATED: S.MACHINE, S.ANSWERED: S.MACHINE},
    ("call.bridged", None): {state: S.BRIDGED for state in (S.CREATED, S.INITIATED, S.ANSWERED, S.HUMAN)},
    ("call.hangup", None): {state: S.ENDED for state in _ANY_LIVE},
}
#: An agent's leg: no verdicts; bridged again and again (each call.bridged event is a new bridge).
_AGENT_MOVES: dict[tuple[str, str | None], dict[LegState, LegState]] = {
    ("call.initiated", None): {S.CREATED: S.INITIATED},
    ("call.answered", None): {S.CREATED: S.ANSWERED, S.INITIATED: S.ANSWERED},
    ("call.bridged", None): {state: S.BRIDGED for state in (S.CREATED, S.INITIATED, S.ANSWERED, S.BRIDGED)},
    ("call.hangup", None): {state: S.ENDED for state in _ANY_LIVE},
}
#: Contradictions: recorded as illegal transitions.
_ILLEGAL: dict[tuple[str, str | None], frozenset[LegState]] = {
    ("verdict", "human"): frozenset({S.MACHINE}),
    ("verdict", "machine"): frozenset({S.HUMAN, S.BRIDGED}),
    ("call.bridged", None): frozenset({S.MACHINE}),
}


@dataclass
class Leg:
    call_control_id: str
    kind: LegKind = LegKind.CUSTOMER
    state: LegState = LegState.CREATED
    bridges: int = 0
    unbridges: int = 0  # agent legs: customers the dialer reported gone
    answered_at: datetime | None = None
    amd_result: str | None = None
    greeting_ended_at: datetime | None = None
    greeting_result: str | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    hangup_cause: str | None = None
    hangup_source: str | None = None
    sip_hangup_cause: str | None = None
    illegal: list[str] = field(default_factory=list)

    def apply(self, event_type: str, payload: dict[str, Any], occurred_at: datetime) -> Handling:
        """Apply one (already de-duplicated) event; say how it was handled."""
        key, verdict = _classify(event_type, payload)
        if event_type in GREETING_EVENTS and payload.get("result") == "beep_detected" and self.amd_result is None:
            # Premium AMD sends only the greeting's end when the beep comes before its verdict: a machine.
            key, verdict = ("verdict", "machine"), "machine"
            payload = {**payload, "result": "machine"}
        agent = self.kind is LegKind.AGENT
        if agent and verdict is not None:
            return Handling.IGNORED  # nobody runs AMD on an agent's softphone
        self._record_facts(event_type, verdict, payload, occurred_at)
        if key is None:
            # The end of a greeting changes no state but is a fact the abandon clock starts from.
            live = self.state is not LegState.ENDED
            return Handling.APPLIED if event_type in GREETING_EVENTS and live else Handling.IGNORED
        target = (_AGENT_MOVES if agent else _MOVES).get(key, {}).get(self.state)
        if target is not None:
            self.state = target
            if agent:
                self._settle_agent()
            return Handling.APPLIED
        if self.state in _ILLEGAL.get(key, frozenset()):
            self.illegal.append(f"{event_type} ({verdict or 'no verdict'}) while {self.state.name.lower()}")
            return Handling.ILLEGAL
        return Handling.IGNORED

    def unbridged(self) -> bool:
        """The dialer reports that a customer bridged to this agent leg left. True if the agent is now free (parked
        and answered); a report that overtakes its ``call.bridged`` is counted, so the late event frees nothing."""
        if self.kind is not LegKind.AGENT or self.state is LegState.ENDED:
            return False
        self.unbridges += 1
        self._settle_agent()
        return self.state is LegState.ANSWERED

    def _settle_agent(self) -> None:
        if self.state is LegState.ENDED:
            return
        if self.bridges > self.unbridges:
            self.state = LegState.BRIDGED
        elif self.state is LegState.BRIDGED or self.bridges:
            self.state = LegState.ANSWERED  # a bridge implies an answer

    def _record_facts(self, event_type: str, verdict: str | None, payload: dict[str, Any], at: datetime) -> None:
        # Facts are kept whatever the state: a late call.answered still tells when the callee answered.
        if event_type == "call.answered" or (verdict is not None and self.answered_at is None):
            self.answered_at = _earliest(self.answered_at, at)
        if verdict is not None and self.amd_result is None:
            self.amd_result = str(payload.get("result"))
        if event_type in GREETING_EVENTS:
            self.greeting_ended_at = _earliest(self.greeting_ended_at, at)
            self.greeting_result = "beep_detected" if verdict == "machine" else str(payload.get("result"))
        if event_type == "call.bridged":  # each delivery is a distinct event (duplicates never get here)
            self.bridged_at = _earliest(self.bridged_at, at)
            self.bridges += 1
        if event_type == "call.hangup" and self.ended_at is None:
            self.ended_at = at
            self.hangup_cause = _text(payload.get("hangup_cause"))
            self.hangup_source = _text(payload.get("hangup_source"))
            self.sip_hangup_cause = _text(payload.get("sip_hangup_cause"))


def _classify(event_type: str, payload: dict[str, Any]) -> tuple[tuple[str, str | None] | None, str | None]:
    """The transition key of an event, and an AMD verdict ("human" or "machine") if it carries one."""
    if event_type in DETECTION_EVENTS:
        result = payload.get("result")
        if result in MACHINE_RESULTS:
            return ("verdict", "machine"), "machine"
        if result in HUMAN_RESULTS:  # not_sure and silence are treated as human: never hang up on a person
            return ("verdict", "human"), "human"
        return None, None
    key = (event_type, None)
    return (key if key in _MOVES else None), None


def _earliest(known: datetime | None, at: datetime) -> datetime:
    return at if known is None or at < known else known


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
