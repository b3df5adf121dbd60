"""Agents logged in to campaigns on this node: their state machine, their parked softphone leg, their console.

An agent's console (a websocket) may come and go; the session stays, so a reconnect resumes it. Frames for the
console go through ``send``, which never blocks: a console that does not read is cut off rather than allowed to
hold the dialer up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dialer.agent_state import Agent, AgentState

#: Frames queued for a console that is not reading; past this it is disconnected (it resumes on reconnect).
MAX_QUEUED_FRAMES = 1000


@dataclass
class Console:
    """One websocket's outgoing side."""

    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUED_FRAMES:
            self.close()
            return
        self.queue.put_nowait(frame)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


@dataclass
class AgentSession:
    user_id: int
    campaign_id: int
    session_id: int  # agent_sessions.id
    agent: Agent
    sip_username: str | None = None
    leg: str | None = None  # the parked softphone leg (call_control_id), answered
    console: Console | None = None
    call: Any = None  # the runner's Call on this agent (reserved, on a call, or wrapping up)
    offer: Any = None  # preview mode: the hopper entry offered to this agent
    owed: list[int] = field(default_factory=list)  # attempts waiting for this agent's disposition
    disconnected_at: float | None = None
    wrap_started: float | None = None
    on_change: Callable[[AgentSession], None] | None = None
    disposing: asyncio.Lock = field(default_factory=asyncio.Lock)
    leaving: bool = False  # logged out: whatever still holds this session must let it go

    @property
    def routable(self) -> bool:
        """Ready, with a live softphone and nothing owed: a call may be bridged to it."""
        return self.agent.state is AgentState.READY and self.leg is not None and self.call is None and not self.owed

    def send(self, frame: dict[str, Any]) -> None:
        if self.console is not None:
            self.console.send(frame)
