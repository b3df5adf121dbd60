"""A call as the runner tracks it, from the dial to its end, and what agents ask of it. Plain data."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from dialer.agent_sessions import AgentSession
from dialer.hopper import Entry
from dialer.leg_state import Leg


@dataclass(eq=False)
class Call:
    attempt_id: int
    entry: Entry
    dialed: float  # monotonic, at the dial
    ccid: str | None = None
    state: str = "dialing"  # dialing, waiting, reserved, bridged, abandoning, machine, ended
    agent: AgentSession | None = None
    preview: bool = False
    answered: float | None = None  # monotonic, when we learnt of the answer
    answered_at: datetime | None = None
    human_seen: float | None = None  # perf_counter at the human answer's webhook (the routing latency's start)
    queued: bool = False  # waited for an agent (its time to the bridge is a queue wait, not routing latency)
    bridged: float | None = None
    ended: float | None = None
    customer_gone: bool = False
    connected: bool = False
    abandoned: bool = False
    machine: bool = False
    timer: asyncio.TimerHandle | None = None
    leg: Leg | None = None
    finished: bool = False


@dataclass(frozen=True)
class Callback:
    due_at: datetime
    personal: bool = True
    notes: str = ""
