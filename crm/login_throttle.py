"""Throttling of failed logins per account and per client address: pure, clock passed in.

A key may fail ``limit`` times within ``window_s``; the next attempt is refused until the oldest failure
leaves the window. A success clears the account's record (not the address's: one valid account must not
let an address keep guessing others).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Keys tracked at most; beyond that the stalest are forgotten so a spray of addresses cannot exhaust memory.
MAX_KEYS = 100_000


@dataclass
class FailureWindow:
    limit: int
    window_s: float
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        failures = self._prune(key, now)
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window_s - now)

    def record_failure(self, key: str, now: float) -> None:
        failures = self._prune(key, now)
        if failures is None:
            if len(self._failures) >= MAX_KEYS:
                del self._failures[next(iter(self._failures))]
            failures = self._failures[key] = deque(maxlen=self.limit)
        failures.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

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

    def retry_after(self, account: str, address: str, now: float) -> float:
        return max(self.per_account.retry_after(account, now), self.per_address.retry_after(address, now))

    def record_failure(self, account: str, address: str, now: float) -> None:
        self.per_account.record_failure(account, now)
        self.per_address.record_failure(address, now)

    def record_success(self, account: str) -> None:
        self.per_account.clear(account)
