"""When a ready agent's pause must wait, and which held pauses may be taken now. Pure.

A campaign that promises every person an agent (progressive dialling, or a predictive one fallen back to it with
its abandon budget spent) dials no more calls than it has ready agents: each call in flight counts on one of
them. An agent who pauses while those calls ring could leave a person who answers with nobody - an abandoned
call, the very thing progressive dialling exists to avoid - and hanging up the ringing call instead is not
allowed before it has rung 15 seconds (47 CFR 64.1200(a)(6), Ofcom's "no cancel dials"). So the pause is held:
the agent stays ready, is given a call only when nobody else is free, and pauses as soon as the calls in flight
no longer need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def must_wait(calls_in_flight: int, free_others: int) -> bool:
    """Calls dialled or answered and waiting (``calls_in_flight``) against the ready agents who would be left
    (``free_others``): one agent short, and a person answering might find nobody."""
    return calls_in_flight > free_others


def may_go(calls_in_flight: int, free: int, held: Sequence[T]) -> list[T]:
    """Of the agents whose pause is held (in the order they asked), those who may pause now: as many of the last
    to ask stay as the calls in flight need beyond the ``free`` agents."""
    stay = max(0, calls_in_flight - free)
    return list(held[: max(0, len(held) - stay)])
