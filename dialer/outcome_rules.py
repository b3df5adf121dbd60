"""What a finished attempt means for its contact: the dialer's own outcome codes, and the member's next step. Pure.

An attempt nobody dispositioned (no answer, busy, a machine, an abandon, a failure) gets a system outcome from
the carrier's facts; an agent's disposition brings its catalogue flags. Either way the campaign member moves on
by the same rule: done (final or positive), waiting for its callback, exhausted (out of attempts), or scheduled
again after the outcome's retry delay (the campaign's default when the outcome names none).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: Outcomes the dialer records itself; every catalogue resolves them (the default catalogue's rows otherwise).
SYSTEM_CODES = ("no_answer", "busy", "machine", "abandoned", "failed", "invalid_number")

_INVALID_CAUSES = frozenset({"not_found", "unallocated_number", "invalid_number_format", "no_route_destination"})
_INVALID_SIP = frozenset({"404", "410", "484", "604"})
_NO_ANSWER_CAUSES = frozenset({"timeout", "no_answer", "originator_cancel", "normal_clearing"})


@dataclass(frozen=True, slots=True)
class Flags:
    """A disposition's meaning (a row of ``dispositions``)."""

    id: int
    code: str
    label: str = ""
    is_positive: bool = False
    is_dnc: bool = False
    is_callback: bool = False
    is_final: bool = False
    is_system: bool = False
    retry_after_minutes: int | None = None
    hotkey: str | None = None


@dataclass(frozen=True, slots=True)
class MemberStep:
    status: str  # audience_member_status: completed, callback, exhausted, scheduled
    next_attempt_at: datetime | None


def system_outcome(
    *, answered: bool, machine: bool, abandoned: bool, hangup_cause: str | None, sip_cause: str | None
) -> str:
    """The dialer's code for an attempt that reached no agent."""
    if abandoned:
        return "abandoned"
    if machine:
        return "machine"
    if answered:  # a person who hung up before an agent came, within the deadline: try again later
        return "no_answer"
    if hangup_cause == "user_busy" or sip_cause == "486":
        return "busy"
    if hangup_cause in _INVALID_CAUSES or sip_cause in _INVALID_SIP:
        return "invalid_number"
    if hangup_cause in _NO_ANSWER_CAUSES or sip_cause in ("480", "487", "408"):
        return "no_answer"
    return "failed"


def member_step(
    flags: Flags,
    *,
    attempts: int,
    max_attempts: int,
    default_retry_minutes: int,
    now: datetime,
    callback_due: datetime | None = None,
) -> MemberStep:
    """Where the member goes after an attempt with this outcome (``attempts``: made so far, this one included)."""
    if flags.is_final or flags.is_positive or flags.is_dnc:
        return MemberStep("completed", None)
    if flags.is_callback and callback_due is not None:
        return MemberStep("callback", callback_due)
    if attempts >= max_attempts:
        return MemberStep("exhausted", None)
    minutes = flags.retry_after_minutes if flags.retry_after_minutes is not None else default_retry_minutes
    return MemberStep("scheduled", now + timedelta(minutes=minutes))
