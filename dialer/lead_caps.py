"""Account lead caps, counted in memory per campaign (DESIGN s5). Pure; rebuilt from PostgreSQL at start.

Three modes, each "at most ``cap`` per account":
- ``queue_size``: the account's contacts in the hopper or in a call now;
- ``connected_calls``: live conversations with the account, counting calls in flight, which may connect;
- ``positive_dispositions``: qualified leads from the account, counting calls in flight and conversations
  awaiting their disposition, which may still qualify (so two calls cannot both become the lead that was left).

The hopper asks ``allows(account)`` before taking a contact, and reports what happens to it. Counts never go
below zero: a repeated report cannot open a cap for the account's other contacts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal

CapMode = Literal["queue_size", "connected_calls", "positive_dispositions"]


class AccountCaps:
    def __init__(self, mode: CapMode | None, cap: int | None) -> None:
        if (mode is None) != (cap is None) or (cap is not None and cap < 1):
            raise ValueError("a cap needs a mode and a positive number, or neither")
        self.mode, self.cap = mode, cap
        self.queued: Counter[int] = Counter()  # in the hopper, not dialled yet
        self.in_flight: Counter[int] = Counter()  # dialled, not ended (connected or not)
        self.connected: Counter[int] = Counter()  # live conversations
        self.positive: Counter[int] = Counter()  # qualified leads
        self.awaiting: Counter[int] = Counter()  # conversations over, disposition not saved yet

    def _used(self, account: int) -> int:
        if self.mode == "queue_size":
            return self.queued[account] + self.in_flight[account]
        if self.mode == "connected_calls":
            return self.in_flight[account]  # a connected call is still in flight
        return self.positive[account] + self.in_flight[account] + self.awaiting[account]

    def allows(self, account: int | None) -> bool:
        """May one more of this account's contacts enter the hopper? (No account, no cap.)"""
        if self.cap is None or account is None:
            return True
        return self._used(account) < self.cap

    def allows_queued(self, account: int | None) -> bool:
        """May this account's contact, already counted in the hopper, be dialled now? (The cap may have been
        reached since it was queued: another of the account's calls connected or qualified.)"""
        if self.cap is None or account is None:
            return True
        mine = 1 if self.mode == "queue_size" and self.queued[account] > 0 else 0
        return self._used(account) - mine < self.cap

    def remaining(self, account: int) -> int | None:
        return None if self.cap is None else max(0, self.cap - self._used(account))

    # -- what happens to a contact -----------------------------------------------------------------------------

    def queue(self, account: int | None) -> None:
        if account is not None:
            self.queued[account] += 1

    def unqueue(self, account: int | None) -> None:
        """Left the hopper without a call (expired, refused by a later check, campaign paused)."""
        _down(self.queued, account)

    def dial(self, account: int | None) -> None:
        _down(self.queued, account)
        if account is not None:
            self.in_flight[account] += 1

    def connect(self, account: int | None) -> None:
        if account is not None:
            self.connected[account] += 1

    def end(self, account: int | None, *, was_connected: bool) -> None:
        """The call is over; a conversation awaits its disposition (``dispose``)."""
        _down(self.in_flight, account)
        if was_connected:
            _down(self.connected, account)
            if account is not None:
                self.awaiting[account] += 1

    def dispose(self, account: int | None, *, positive: bool) -> None:
        """The conversation's disposition is saved (the usual order: hang up, wrap up, dispose)."""
        _down(self.awaiting, account)
        if positive and account is not None:
            self.positive[account] += 1

    # -- rebuild and report ------------------------------------------------------------------------------------

    def rebuild(self, *, in_flight: Mapping[int, int], connected: Mapping[int, int], positive: Mapping[int, int],
                awaiting: Mapping[int, int]) -> None:  # fmt: skip
        """After a restart: counts from PostgreSQL (live call attempts, positive dispositions, conversations
        without a disposition); the hopper is refilled afresh, so nothing is queued."""
        self.queued = Counter()
        self.in_flight, self.connected, self.positive = Counter(in_flight), Counter(connected), Counter(positive)
        self.awaiting = Counter(awaiting)

    def at_cap(self, accounts: Iterable[int] | None = None) -> list[int]:
        """Accounts that may take no more contacts now (for the supervisor's dashboard)."""
        if self.cap is None:
            return []
        pool = set(accounts) if accounts is not None else {*self.queued, *self.in_flight, *self.positive}
        return sorted(a for a in pool if not self.allows(a))


def _down(counter: Counter[int], account: int | None) -> None:
    if account is not None and counter[account] > 0:
        counter[account] -= 1
        if not counter[account]:
            del counter[account]
