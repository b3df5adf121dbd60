"""Failed sign-in throttling: pure logic, clock passed in."""

from __future__ import annotations

import pytest

from crm.login_throttle import FailureWindow, LoginThrottle


@pytest.mark.parametrize(
    ("limit", "window", "failures_at", "now", "expected_wait"),
    [
        (3, 60.0, [], 0.0, 0.0),
        (3, 60.0, [0.0, 1.0], 2.0, 0.0),  # under the limit
        (3, 60.0, [0.0, 1.0, 2.0], 3.0, 57.0),  # at the limit: wait for the oldest to leave the window
        (3, 60.0, [0.0, 1.0, 2.0], 60.0, 0.0),  # the oldest has left
        (3, 60.0, [0.0, 50.0, 55.0], 59.0, 1.0),
        (1, 10.0, [5.0], 5.0, 10.0),
    ],
)
def test_failure_window(limit: int, window: float, failures_at: list[float], now: float, expected_wait: float) -> None:
    """A key may fail `limit` times per window; then it waits until the oldest failure ages out."""
    fw = FailureWindow(limit, window)
    for at in failures_at:
        fw.record_failure("k", at)
    assert fw.retry_after("k", now) == pytest.approx(expected_wait)


def test_attempts_count_before_the_password_is_checked() -> None:
    """Concurrent guesses cannot all slip through while bcrypt runs: each attempt counts at once."""
    throttle = LoginThrottle.create(account_limit=3, address_limit=100, window_s=60)
    waits = [throttle.attempt("admin", f"10.0.0.{i}", 1.0) for i in range(10)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(wait == pytest.approx(60.0) for wait in waits[3:])


def test_success_is_forgiven_and_clears_the_account_but_not_the_address() -> None:
    """A right password takes back its own attempt; other failures from the address still count."""
    throttle = LoginThrottle.create(account_limit=2, address_limit=3, window_s=100)
    assert throttle.attempt("user0", "10.0.0.1", 0.0) == 0
    assert throttle.attempt("user1", "10.0.0.1", 1.0) == 0
    assert throttle.attempt("user0", "10.0.0.1", 2.0) == 0
    throttle.succeeded("user0", "10.0.0.1", 2.0)
    assert throttle.per_account.retry_after("user0", 3.0) == 0
    assert throttle.attempt("user2", "10.0.0.1", 3.0) == 0
    assert throttle.attempt("user3", "10.0.0.1", 4.0) == pytest.approx(96.0)
    assert throttle.attempt("someone", "10.0.0.2", 4.0) == 0


def test_many_successes_from_one_office_never_throttle_it() -> None:
    """A shift of agents signing in from one NAT address is not mistaken for guessing."""
    throttle = LoginThrottle.create(account_limit=5, address_limit=20, window_s=900)
    for i in range(200):
        at = float(i)
        assert throttle.attempt(f"agent{i}", "203.0.113.7", at) == 0
        throttle.succeeded(f"agent{i}", "203.0.113.7", at)
    assert len(throttle.per_address) == 0


def test_memory_is_bounded_and_expired_keys_are_swept() -> None:
    """At capacity, keys whose failures have all expired are swept first, then the stalest is evicted."""
    fw = FailureWindow(5, 10.0, max_keys=50)
    for i in range(50):
        fw.record_failure(f"old{i}", 0.0)
    fw.record_failure("new", 11.0)
    assert len(fw) == 1
    for i in range(60):
        fw.record_failure(f"fresh{i}", 12.0)
    assert len(fw) == 50
