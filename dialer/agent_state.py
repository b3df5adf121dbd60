"""An agent's state in a campaign: an enum, a transition table, and what is pending. Pure; the clock is passed in.

    offline --login--> paused(logged_in) --ready--> ready --reserve--> reserved --connect--> on_call
    on_call --hangup--> wrap_up --dispose--> ready (or paused, if a pause was asked for meanwhile)
    wrap_up --wrap_timeout--> paused(wrap_timeout): the disposition is still owed, and no call comes first

A pause asked for while reserved, on a call or wrapping up is remembered and taken when the call is done
(``pending_pause``); a reservation released (the customer hung up before the bridge) returns the agent. A ready
agent's pause may be held too (``hold_pause``: the dialer decides when, see ``CampaignRunner.pause_must_wait``);
the agent stays ready meanwhile, and asking for ready again cancels it. The
dialer routes only to ``ready`` agents, longest idle first (``ready_since``). Names match the database enum
``agent_state``. An event the table does not allow raises ``IllegalTransition`` and changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AgentState(enum.StrEnum):
    OFFLINE = "offline"
    READY = "ready"
    RESERVED = "reserved"  # a customer's call is being bridged to this agent
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class AgentEvent(enum.StrEnum):
    LOGIN = "login"
    READY = "ready"
    PAUSE = "pause"  # the agent's own, or a supervisor's force-pause
    RESERVE = "reserve"  # the dialer picked this agent for an answered call
    RELEASE = "release"  # ... and the call went before the bridge
    CONNECT = "connect"  # bridged
    HANGUP = "hangup"  # the customer's leg ended
    DISPOSE = "dispose"  # the disposition is saved
    WRAP_TIMEOUT = "wrap_timeout"
    LOGOUT = "logout"
    FORCE_LOGOUT = "force_logout"  # a supervisor, or the session's end after a lost connection


S, E = AgentState, AgentEvent
#: (state, event) -> next state; None: "back to work", i.e. ready, or paused if a pause is pending.
TRANSITIONS: dict[tuple[AgentState, AgentEvent], AgentState | None] = {
    (S.OFFLINE, E.LOGIN): S.PAUSED,
    (S.PAUSED, E.READY): S.READY,
    (S.PAUSED, E.PAUSE): S.PAUSED,  # a new reason
    (S.PAUSED, E.DISPOSE): S.PAUSED,  # the disposition owed after a wrap-up timeout
    (S.PAUSED, E.LOGOUT): S.OFFLINE,
    (S.READY, E.PAUSE): S.PAUSED,
    (S.READY, E.READY): S.READY,
    (S.READY, E.RESERVE): S.RESERVED,
    (S.READY, E.LOGOUT): S.OFFLINE,
    (S.RESERVED, E.CONNECT): S.ON_CALL,
    (S.RESERVED, E.RELEASE): None,
    (S.RESERVED, E.PAUSE): S.RESERVED,  # pending
    (S.ON_CALL, E.HANGUP): S.WRAP_UP,
    (S.ON_CALL, E.PAUSE): S.ON_CALL,  # pending
    (S.WRAP_UP, E.DISPOSE): None,
    (S.WRAP_UP, E.WRAP_TIMEOUT): S.PAUSED,
    (S.WRAP_UP, E.PAUSE): S.WRAP_UP,  # pending
    (S.WRAP_UP, E.READY): S.WRAP_UP,  # cancels a pending pause; ready once disposed
}
for _state in AgentState:
    if _state is not S.OFFLINE:
        TRANSITIONS[(_state, E.FORCE_LOGOUT)] = S.OFFLINE


class IllegalTransition(ValueError):
    def __init__(self, state: AgentState, event: AgentEvent, why: str = "") -> None:
        super().__init__(f"cannot {event.value} while {state.value.replace('_', ' ')}{why}")
        self.state, self.event = state, event


@dataclass(frozen=True)
class Change:
    before: AgentState
    after: AgentState
    reason: str | None
    at: float


@dataclass
class Agent:
    user_id: int
    state: AgentState = AgentState.OFFLINE
    since: float = 0.0
    ready_since: float | None = None  # when it last became ready: longest idle is served first
    pause_reason: str | None = None
    pending_pause: str | None = None  # asked for during a call: taken when the call is done
    pause_held_since: float | None = None  # a ready agent's pause, held while calls dialled count on the agent
    owes_disposition: bool = False  # its last call ended and has no disposition yet: no new call, no logout

    def apply(self, event: AgentEvent, now: float, reason: str | None = None) -> Change:
        if (self.state, event) not in TRANSITIONS:
            raise IllegalTransition(self.state, event)
        if self.owes_disposition and event in (E.READY, E.LOGOUT) and self.state is S.PAUSED:
            raise IllegalTransition(self.state, event, ": the last call has no disposition yet")
        target = TRANSITIONS[(self.state, event)]
        before = self.state
        if event is E.PAUSE and self.state in (S.RESERVED, S.ON_CALL, S.WRAP_UP):
            self.pending_pause = reason or "break"
            return Change(before, before, self.pending_pause, now)
        if event is E.READY and self.state is S.WRAP_UP:
            self.pending_pause = None
            return Change(before, before, None, now)
        if event is E.HANGUP:
            self.owes_disposition = True
        elif event in (E.DISPOSE, E.FORCE_LOGOUT):
            self.owes_disposition = False
        if target is None:  # back to work
            target = S.PAUSED if self.pending_pause else S.READY
            reason = self.pending_pause
        elif event is E.LOGIN:
            reason = "logged_in"
        elif event is E.WRAP_TIMEOUT:
            reason = "wrap_timeout"
        elif target is S.PAUSED:
            reason = reason or ("break" if event is E.PAUSE else self.pause_reason)
        self._enter(target, now, reason)
        return Change(before, target, reason, now)

    @property
    def pause_held(self) -> bool:
        """A pause the dialer holds (cleared by every change of state, so only ever true while ready)."""
        return self.pause_held_since is not None

    def hold_pause(self, now: float, reason: str | None = None) -> Change:
        """A ready agent asked for a pause the dialer cannot give yet: ready still (a call already dialled may
        need them), the pause pending; ``apply(PAUSE)`` takes it, ``apply(READY)`` cancels it."""
        if self.state is not S.READY:
            raise IllegalTransition(self.state, E.PAUSE, ": only a ready agent's pause is held")
        self.pending_pause = reason or "break"
        if self.pause_held_since is None:
            self.pause_held_since = now
        return Change(S.READY, S.READY, self.pending_pause, now)

    def _enter(self, state: AgentState, now: float, reason: str | None) -> None:
        if state is not self.state:
            self.since = now
        self.state = state
        # Paused: why; offline: why it was forced (a supervisor, a lost connection), for the console to say.
        self.pause_reason = reason if state in (S.PAUSED, S.OFFLINE) else None
        if state is S.READY:
            if self.ready_since is None:
                self.ready_since = now
        else:
            self.ready_since = None
        if state in (S.READY, S.PAUSED, S.OFFLINE):
            self.pending_pause = None
        self.pause_held_since = None

    def wrap_timed_out(self, now: float, wrap_up_s: float) -> bool:
        return self.state is S.WRAP_UP and now - self.since >= wrap_up_s
