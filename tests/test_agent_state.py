"""The agent state machine, exhaustively: every state against every event."""

from __future__ import annotations

import itertools

import pytest

from dialer.agent_state import Agent, AgentEvent, AgentState, IllegalTransition

S, E = AgentState, AgentEvent
#: The expected next state for every (state, event); absent = illegal. Pending pauses are covered below.
EXPECTED = {
    (S.OFFLINE, E.LOGIN): S.PAUSED,
    (S.PAUSED, E.READY): S.READY, (S.PAUSED, E.PAUSE): S.PAUSED, (S.PAUSED, E.DISPOSE): S.PAUSED,
    (S.PAUSED, E.LOGOUT): S.OFFLINE, (S.PAUSED, E.FORCE_LOGOUT): S.OFFLINE,
    (S.READY, E.PAUSE): S.PAUSED, (S.READY, E.READY): S.READY, (S.READY, E.RESERVE): S.RESERVED,
    (S.READY, E.LOGOUT): S.OFFLINE, (S.READY, E.FORCE_LOGOUT): S.OFFLINE,
    (S.RESERVED, E.CONNECT): S.ON_CALL, (S.RESERVED, E.RELEASE): S.READY, (S.RESERVED, E.PAUSE): S.RESERVED,
    (S.RESERVED, E.FORCE_LOGOUT): S.OFFLINE,
    (S.ON_CALL, E.HANGUP): S.WRAP_UP, (S.ON_CALL, E.PAUSE): S.ON_CALL, (S.ON_CALL, E.FORCE_LOGOUT): S.OFFLINE,
    (S.WRAP_UP, E.DISPOSE): S.READY, (S.WRAP_UP, E.WRAP_TIMEOUT): S.PAUSED, (S.WRAP_UP, E.PAUSE): S.WRAP_UP,
    (S.WRAP_UP, E.READY): S.WRAP_UP, (S.WRAP_UP, E.FORCE_LOGOUT): S.OFFLINE,
}  # fmt: skip


@pytest.mark.parametrize(("state", "event"), list(itertools.product(AgentState, AgentEvent)))
def test_every_state_and_event(state: AgentState, event: AgentEvent) -> None:
    agent = Agent(7, state=state, since=1.0, pause_reason="lunch" if state is S.PAUSED else None)
    expected = EXPECTED.get((state, event))
    if expected is None:
        with pytest.raises(IllegalTransition, match=f"cannot {event.value}"):
            agent.apply(event, 5.0)
        assert (agent.state, agent.since) == (state, 1.0), "an illegal event changes nothing"
        return
    change = agent.apply(event, 5.0)
    assert (change.before, change.after, agent.state) == (state, expected, expected)
    assert agent.since == (5.0 if expected is not state else 1.0)
    assert (agent.pause_reason is not None) == (expected is S.PAUSED)


def test_a_shift() -> None:
    agent = Agent(7)
    assert agent.apply(E.LOGIN, 0.0).reason == "logged_in"
    agent.apply(E.READY, 10.0)
    assert agent.ready_since == 10.0
    agent.apply(E.READY, 12.0)
    assert agent.ready_since == 10.0, "ready again keeps its place in the queue"
    agent.apply(E.RESERVE, 20.0)
    assert agent.ready_since is None
    agent.apply(E.RELEASE, 20.5)  # the customer hung up before the bridge
    assert (agent.state, agent.ready_since) == (S.READY, 20.5)
    agent.apply(E.RESERVE, 30.0)
    agent.apply(E.CONNECT, 30.3)
    agent.apply(E.PAUSE, 60.0, "coffee")  # asked for during the call
    assert (agent.state, agent.pending_pause) == (S.ON_CALL, "coffee")
    agent.apply(E.HANGUP, 90.0)
    assert not agent.wrap_timed_out(100.0, 30.0)
    assert agent.wrap_timed_out(120.0, 30.0)
    change = agent.apply(E.DISPOSE, 101.0)
    assert (change.after, change.reason, agent.pause_reason) == (S.PAUSED, "coffee", "coffee")
    agent.apply(E.READY, 200.0)
    agent.apply(E.RESERVE, 210.0)
    agent.apply(E.CONNECT, 210.3)
    agent.apply(E.HANGUP, 300.0)
    agent.apply(E.PAUSE, 301.0, "lunch")
    agent.apply(E.READY, 302.0)  # changed their mind: no pause after all
    assert agent.apply(E.DISPOSE, 303.0).after is S.READY
    agent.apply(E.RESERVE, 310.0)
    agent.apply(E.CONNECT, 310.3)
    agent.apply(E.HANGUP, 400.0)
    timeout = agent.apply(E.WRAP_TIMEOUT, 430.0)
    assert (timeout.after, timeout.reason) == (S.PAUSED, "wrap_timeout")
    with pytest.raises(IllegalTransition, match="no disposition yet"):
        agent.apply(E.READY, 430.5)  # no new call before the last one is dispositioned
    with pytest.raises(IllegalTransition, match="no disposition yet"):
        agent.apply(E.LOGOUT, 430.6)
    assert agent.apply(E.DISPOSE, 431.0).after is S.PAUSED, "the owed disposition is still taken"
    assert agent.apply(E.READY, 432.0).after is S.READY
    agent.apply(E.PAUSE, 433.0)
    assert agent.apply(E.LOGOUT, 500.0).after is S.OFFLINE


def test_a_held_pause() -> None:
    """A ready agent's pause held by the dialer: still ready (and in its place in the queue) until the dialer
    takes it, cancelled by asking for ready, or kept through a call and taken when the call is done."""
    agent = Agent(7, state=S.READY, since=1.0, ready_since=1.0)
    change = agent.hold_pause(5.0, "coffee")
    assert (change.before, change.after, change.reason) == (S.READY, S.READY, "coffee")
    assert (agent.state, agent.pending_pause, agent.pause_held_since, agent.ready_since) == (
        S.READY,
        "coffee",
        5.0,
        1.0,
    )
    agent.hold_pause(6.0, "lunch")  # asked again: the new reason, still held since the first ask
    assert (agent.pending_pause, agent.pause_held_since) == ("lunch", 5.0)
    agent.apply(E.READY, 7.0)  # cancelled
    assert (agent.state, agent.pending_pause, agent.pause_held_since, agent.ready_since) == (S.READY, None, None, 1.0)

    agent.hold_pause(8.0, "coffee")
    agent.apply(E.PAUSE, 9.0, agent.pending_pause)  # taken by the dialer
    assert (agent.state, agent.pause_reason, agent.pending_pause, agent.pause_held_since) == (
        S.PAUSED, "coffee", None, None)  # fmt: skip

    agent.apply(E.READY, 10.0)
    agent.hold_pause(11.0, "coffee")
    agent.apply(E.RESERVE, 12.0)  # one of the calls it waited for reached it
    assert (agent.state, agent.pending_pause, agent.pause_held_since) == (S.RESERVED, "coffee", None)
    agent.apply(E.CONNECT, 12.2)
    agent.apply(E.HANGUP, 40.0)
    change = agent.apply(E.DISPOSE, 45.0)
    assert (change.after, change.reason) == (S.PAUSED, "coffee")


@pytest.mark.parametrize("state", [s for s in AgentState if s is not S.READY])
def test_only_a_ready_agents_pause_is_held(state: AgentState) -> None:
    agent = Agent(7, state=state, since=1.0)
    with pytest.raises(IllegalTransition, match="only a ready agent"):
        agent.hold_pause(5.0, "coffee")
    assert (agent.state, agent.pending_pause) == (state, None)
