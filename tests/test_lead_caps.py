"""Account lead caps: the three modes as parameter tables of what happens to an account's contacts."""

from __future__ import annotations

import pytest

from dialer.lead_caps import AccountCaps

A = 7


def _run(caps: AccountCaps, steps: list[str]) -> list[bool]:
    """Apply each step to account A; record allows(A) after each."""
    seen = []
    for step in steps:
        if step == "queue":
            caps.queue(A)
        elif step == "unqueue":
            caps.unqueue(A)
        elif step == "dial":
            caps.dial(A)
        elif step == "connect":
            caps.connect(A)
        elif step == "end":
            caps.end(A, was_connected=False)
        elif step == "end_connected":
            caps.end(A, was_connected=True)
        elif step == "dispose":
            caps.dispose(A, positive=False)
        elif step == "qualify":
            caps.dispose(A, positive=True)
        seen.append(caps.allows(A))
    return seen


T, F = True, False


@pytest.mark.parametrize(
    ("mode", "cap", "steps", "expected"),
    [
        ("queue_size", 2, ["queue", "queue", "dial", "end", "unqueue"], [T, F, F, T, T]),
        ("queue_size", 1, ["queue", "dial", "connect", "end_connected"], [F, F, F, T]),
        ("connected_calls", 1, ["queue", "dial", "connect", "end_connected"], [T, F, F, T]),
        ("connected_calls", 2, ["dial", "dial", "end"], [T, F, T]),
        # Between the hangup and the disposition the conversation may still be the lead: it still counts.
        ("positive_dispositions", 1, ["dial", "connect", "end_connected", "qualify"], [F, F, F, F]),
        ("positive_dispositions", 1, ["dial", "connect", "end_connected", "dispose"], [F, F, F, T]),
        (
            "positive_dispositions",
            2,
            ["dial", "connect", "end_connected", "qualify", "dial", "end"],
            [T, T, T, T, F, T],
        ),
        (None, None, ["queue", "dial", "connect", "qualify"], [T, T, T, T]),
        ("queue_size", 1, ["unqueue", "end", "queue"], [T, T, F]),  # repeated reports never go below zero
    ],
)
def test_modes(mode: str | None, cap: int | None, steps: list[str], expected: list[bool]) -> None:
    caps = AccountCaps(mode, cap)  # type: ignore[arg-type]
    assert _run(caps, steps) == expected
    assert caps.allows(None), "a contact without an account is never capped"


def test_rebuild_and_report() -> None:
    caps = AccountCaps("positive_dispositions", 2)
    caps.rebuild(in_flight={1: 1}, connected={1: 1}, positive={1: 1, 2: 2, 3: 1}, awaiting={})
    assert caps.at_cap() == [1, 2]
    assert caps.remaining(3) == 1
    assert AccountCaps(None, None).at_cap() == []


@pytest.mark.parametrize(("mode", "cap"), [("queue_size", None), (None, 3), ("queue_size", 0)])
def test_bad_settings(mode: str | None, cap: int | None) -> None:
    with pytest.raises(ValueError, match="a cap needs"):
        AccountCaps(mode, cap)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "cap", "steps", "dialable"),
    [
        ("queue_size", 1, ["queue"], True),  # the queued contact itself is not in its own way
        ("queue_size", 2, ["queue", "queue"], True),
        ("queue_size", 1, ["queue", "queue"], False),  # queued past the cap (a refill raced): not both
        ("queue_size", 1, ["queue", "dial", "queue"], False),
        ("positive_dispositions", 1, ["queue", "queue", "dial", "connect", "end_connected", "qualify"], False),
        ("positive_dispositions", 2, ["queue", "queue", "dial", "connect", "end_connected", "qualify"], True),
        ("connected_calls", 1, ["queue", "queue", "dial", "connect"], False),
        ("connected_calls", 1, ["queue", "queue", "dial", "connect", "end_connected"], True),
        (None, None, ["queue", "queue"], True),
    ],
)
def test_a_queued_contact_is_checked_again_before_its_dial(
    mode: str | None, cap: int | None, steps: list[str], dialable: bool
) -> None:
    """Two of an account's contacts in the hopper; the first qualifies (or connects): the second may not be
    dialled, although it was allowed when it was queued."""
    caps = AccountCaps(mode, cap)  # type: ignore[arg-type]
    _run(caps, steps)
    assert caps.allows_queued(A) is dialable
