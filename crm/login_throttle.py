"""Throttling of failed sign-ins per account and per client address: pure, clock passed in.

A key may fail ``limit`` times within ``window_s``; the next attempt is refused until the oldest failure
leaves the window. An attempt is counted *before* its password is checked (bcrypt takes a quarter of a
second, and concurrent guesses must not all pass the check meanwhile) and forgiven if it succeeds. A
success clears the account's record, not the address's: one valid account must not let an address keep
guessing others.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Keys tracked at most; beyond that expired keys are swept and then the stalest forgotten, so a spray of
#: addresses cannot exhaust memory.
MAX_KEYS = 100_000


@dataclass
class FailureWindow:
    limit: int
    window_s: float
    max_keys: int = MAX_KEYS
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        failures = self._prune(key, now)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window_s - now)

    def record_failure(self, key: str, now: float) -> None:
        failures = self._prune(key, now)
        if failures is None:
            if len(self._failures) >= self.max_keys:
                self.sweep(now)
            if len(self._failures) >= self.max_keys:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[key] = deque(maxlen=self.limit)
        failures.append(now)

    def forgive(self, key: str, at: float) -> None:
        """Take back one failure recorded at ``at`` (the attempt turned out to be a success)."""
        failures = self._failures.get(key)
        if failures is not None and at in failures:
            failures.remove(at)
            if not failures:
                del self._failures[key]

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def sweep(self, now: float) -> None:
        """Drop every key whose failures have all left the window."""
        for key in [k for k, failures in self._failures.items() if failures[-1] + self.window_s <= now]:
            del self._failures[key]

    def _prune(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] + self.window_s <= now:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures


@dataclass
class LoginThrottle:
    per_account: FailureWindow
    per_address: FailureWindow

    @classmethod
    def create(cls, account_limit: int, address_limit: int, window_s: float) -> LoginThrottle:
        return cls(FailureWindow(account_limit, window_s), FailureWindow(address_limit, window_s))

    def attempt(self, account: str, address: str, now: float) -> float:
        """Count an attempt as failed until proven otherwise; return the wait (>0: refused, not counted)."""
        wait = max(self.per_account.retry_after(account, now), self.per_address.retry_after(address, now))
        if wait == 0:
            self.per_account.record_failure(account, now)
            self.per_address.record_failure(address, now)
        return wait

    def succeeded(self, account: str, address: str, at: float) -> None:
        """The attempt made at ``at`` was right: forgive it, and clear the account's failures."""
        self.per_address.forgive(address, at)
        self.per_account.clear(account)
