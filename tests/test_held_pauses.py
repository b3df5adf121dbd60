"""When a ready agent's pause is held, and which held pauses may be taken (dialer.held_pauses)."""

from __future__ import annotations

import pytest

from dialer.held_pauses import may_go, must_wait


@pytest.mark.parametrize(
    ("in_flight", "free_others", "waits"),
    [
        (0, 0, False),  # nothing dialled: pause at once
        (1, 0, True),  # the only agent, a call ringing: held
        (1, 1, False),  # another agent free covers the call
        (2, 1, True),  # two calls, one other agent: one call would have nobody
        (3, 5, False),
        (5, 5, False),
        (6, 5, True),
    ],
)
def test_must_wait(in_flight: int, free_others: int, waits: bool) -> None:
    assert must_wait(in_flight, free_others) is waits


@pytest.mark.parametrize(
    ("in_flight", "free", "held", "going"),
    [
        (0, 0, ["a"], ["a"]),  # the calls are over: the pause is taken
        (1, 0, ["a"], []),  # still needed
        (1, 1, ["a"], ["a"]),  # another agent became free
        (2, 0, ["a", "b", "c"], ["a"]),  # two calls keep the last two to ask
        (2, 1, ["a", "b", "c"], ["a", "b"]),
        (5, 0, ["a", "b"], []),  # more calls than agents (cannot happen when progressive; nobody leaves)
        (0, 3, [], []),
    ],
)
def test_may_go_in_the_order_asked(in_flight: int, free: int, held: list[str], going: list[str]) -> None:
    assert may_go(in_flight, free, held) == going
