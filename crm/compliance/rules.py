"""Attempt rules (phone) and frequency caps (e-mail) as pure functions of what happened and the clock.

Each check returns the reasons that block, empty when the rule allows; a reason carries the moment the rule
stops blocking where there is one, so the hopper can schedule and a person can read when.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

#: Outcomes an attempt ends with, for retry delays.
OUTCOMES = ("no_answer", "busy", "machine", "failed", "abandoned", "dropped", "answered")


class Reason(NamedTuple):
    """Why a contact is not reached now: a stable code, a sentence, and when it stops applying (if it does)."""

    code: str
    message: str
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AttemptRules:
    max_total: int = 5
    max_per_day: int = 3
    #: minimum minutes between attempts after each outcome; outcomes not listed use default_retry_minutes
    retry_minutes: Mapping[str, int] = field(default_factory=dict)
    default_retry_minutes: int = 240
    #: no new call for this long after an abandoned one (Ofcom: 72 h); 0 = no lock
    abandon_lockout_hours: int = 0


@dataclass(frozen=True, slots=True)
class AttemptHistory:
    total: int = 0
    #: attempts since the start of the contact's local day
    today: int = 0
    last_at: datetime | None = None
    last_outcome: str | None = None
    last_abandoned_at: datetime | None = None


def check_attempts(
    rules: AttemptRules, history: AttemptHistory, now: datetime, next_local_day: datetime | None
) -> list[Reason]:
    """``next_local_day``: the start of the contact's next local day (when a daily limit lifts)."""
    reasons = []
    if history.total >= rules.max_total:
        reasons.append(Reason("max_attempts", f"{history.total} attempts made, the campaign allows {rules.max_total}"))
    if history.today >= rules.max_per_day:
        reasons.append(
            Reason(
                "max_attempts_today",
                f"{history.today} attempts today, the campaign allows {rules.max_per_day} a day",
                next_local_day,
            )
        )
    if history.last_at is not None:
        minutes = rules.retry_minutes.get(history.last_outcome or "", rules.default_retry_minutes)
        retry_at = history.last_at + timedelta(minutes=minutes)
        if now < retry_at:
            reasons.append(
                Reason(
                    "retry_delay",
                    f"last attempt ended {history.last_outcome or 'without an outcome'}; retry after {minutes} min",
                    retry_at,
                )
            )
    if rules.abandon_lockout_hours and history.last_abandoned_at is not None:
        lifted = history.last_abandoned_at + timedelta(hours=rules.abandon_lockout_hours)
        if now < lifted:
            reasons.append(
                Reason(
                    "abandon_lockout",
                    f"a call was abandoned; no repeat call within {rules.abandon_lockout_hours} h",
                    lifted,
                )
            )
    return reasons


@dataclass(frozen=True, slots=True)
class EmailCaps:
    """At most this many messages to one contact across campaigns per rolling day, week and month (None: no cap)."""

    per_day: int | None = 1
    per_week: int | None = 3
    per_month: int | None = 8


@dataclass(frozen=True, slots=True)
class EmailsSent:
    """Messages sent to the contact in the last 24 hours, 7 days and 30 days, and the oldest in each window."""

    day: int = 0
    week: int = 0
    month: int = 0
    oldest_in_day: datetime | None = None
    oldest_in_week: datetime | None = None
    oldest_in_month: datetime | None = None


def check_email_caps(caps: EmailCaps, sent: EmailsSent) -> list[Reason]:
    reasons = []
    for name, limit, count, oldest, span in (
        ("day", caps.per_day, sent.day, sent.oldest_in_day, timedelta(days=1)),
        ("week", caps.per_week, sent.week, sent.oldest_in_week, timedelta(days=7)),
        ("month", caps.per_month, sent.month, sent.oldest_in_month, timedelta(days=30)),
    ):
        if limit is not None and count >= limit:
            until = oldest + span if oldest is not None else None
            reasons.append(
                Reason(f"email_cap_{name}", f"{count} e-mails in the last {name}, at most {limit} a {name}", until)
            )
    return reasons
