"""Failed-login throttling: pure logic, clock passed in."""

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


def test_success_clears_account_but_not_address() -> None:
    """Guessing many accounts from one address stays throttled even after one correct password."""
    throttle = LoginThrottle.create(account_limit=2, address_limit=3, window_s=100)
    for i in range(3):
        throttle.record_failure(f"user{i % 2}", "10.0.0.1", float(i))
    assert throttle.retry_after("user0", "10.0.0.1", 3.0) > 0
    throttle.record_success("user0")
    assert throttle.per_account.retry_after("user0", 3.0) == 0
    assert throttle.retry_after("user0", "10.0.0.1", 3.0) == pytest.approx(97.0)
    assert throttle.retry_after("someone", "10.0.0.2", 3.0) == 0


def test_keys_are_forgotten_when_their_window_passes() -> None:
    """Memory does not grow with old failures."""
    fw = FailureWindow(5, 10.0)
    for i in range(100):
        fw.record_failure(f"k{i}", 0.0)
    assert fw.retry_after("k1", 11.0) == 0
    assert "k1" not in fw._failures
