"""The limits one message must pass: its provider account, its sender profile, its recipient's domain. Pure.

Limiters are shared: every campaign sending through one provider account books that account's limiter, every
campaign of one sender profile that profile's, so two campaigns together never exceed what either may send.
Recipient-domain limits (``{"gmail.com": 50}`` per second) protect reputation at the big mailbox providers.
"""

from __future__ import annotations

from collections.abc import Mapping

from pacing.gcra import Gcra, Limits

#: Bursts let a limiter catch up on a short stall (a slow answer, a commit) without breaking the 100 ms share:
#: at most this fraction of 100 ms's share goes early.
CATCH_UP_SHARE = 0.25


def burst(rate_per_s: float) -> int:
    return max(1, int(rate_per_s * 0.1 * CATCH_UP_SHARE))


class RateBook:
    def __init__(self) -> None:
        self._limiters: dict[str, Gcra] = {}

    def limiter(self, key: str, rate_per_s: float) -> Gcra:
        """The shared limiter for ``key`` (``provider:<account>``, ``sender:<id>``, ``domain:<name>``), with its
        rate brought up to date."""
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = Gcra(rate_per_s, burst(rate_per_s))
        elif abs(limiter.rate_per_s - rate_per_s) > 1e-9:
            limiter.set_rate(rate_per_s, burst(rate_per_s))
        return limiter


class MessageLimits:
    """For one campaign: the fixed limits plus the recipient's domain's, combined per message."""

    def __init__(self, book: RateBook, fixed: list[Gcra], domain_rates: Mapping[str, float]) -> None:
        self._book = book
        self._fixed = Limits(fixed)
        self._domain_rates = {domain.lower(): rate for domain, rate in domain_rates.items()}
        self._by_domain: dict[str, Limits] = {}

    def reserve(self, to_email: str, now: float) -> float:
        """Book the message's slot on every limit it must pass; the moment it may go."""
        if not self._domain_rates:
            return self._fixed.reserve(now)
        domain = to_email.rsplit("@", 1)[-1].lower()
        rate = self._domain_rates.get(domain)
        if rate is None:
            return self._fixed.reserve(now)
        limits = self._by_domain.get(domain)
        if limits is None:
            domain_limiter = self._book.limiter(f"domain:{domain}", rate)
            limits = self._by_domain[domain] = Limits([*self._fixed.limits, domain_limiter])
        return limits.reserve(now)
