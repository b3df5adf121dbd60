"""A campaign's lifecycle and the checklist it must pass before it starts. Pure.

    draft -> scheduled -> running <-> paused -> completed -> archived
    draft -> running (start now); scheduled -> draft (unschedule); draft | completed -> archived

Starting (now or at the scheduled time) needs every blocking item of ``checklist`` to pass; each failure
names the setting to fix.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class CampaignAction(enum.StrEnum):
    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    COMPLETE = "complete"
    ARCHIVE = "archive"


S, A = CampaignStatus, CampaignAction
TRANSITIONS: dict[tuple[CampaignStatus, CampaignAction], CampaignStatus] = {
    (S.DRAFT, A.SCHEDULE): S.SCHEDULED,
    (S.DRAFT, A.START): S.RUNNING,
    (S.DRAFT, A.ARCHIVE): S.ARCHIVED,
    (S.SCHEDULED, A.UNSCHEDULE): S.DRAFT,
    (S.SCHEDULED, A.START): S.RUNNING,  # the time came (or started early)
    (S.RUNNING, A.PAUSE): S.PAUSED,
    (S.RUNNING, A.COMPLETE): S.COMPLETED,
    (S.PAUSED, A.RESUME): S.RUNNING,
    (S.PAUSED, A.COMPLETE): S.COMPLETED,
    (S.COMPLETED, A.ARCHIVE): S.ARCHIVED,
}
#: Actions that need the checklist to pass.
CHECKED = frozenset({A.SCHEDULE, A.START, A.RESUME})
#: Statuses in which the settings may still change freely (a paused campaign only its dialling settings).
EDITABLE = frozenset({S.DRAFT, S.SCHEDULED, S.PAUSED})


class LifecycleError(ValueError):
    pass


def next_status(status: CampaignStatus, action: CampaignAction) -> CampaignStatus:
    target = TRANSITIONS.get((status, action))
    if target is None:
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s is status)
        raise LifecycleError(
            f"a {status.value} campaign cannot {action.value}"
            + (f" (it can: {', '.join(allowed)})" if allowed else " (nothing more can happen to it)")
        )
    return target


@dataclass(frozen=True)
class Readiness:
    """What the checklist looks at, loaded by the caller."""

    dial_mode: str
    audience_rules: int  # include rules
    audience_size: int  # contacts the rules select now
    script_id: int | None
    qualification_form_id: int | None
    form_fields: int
    disposition_catalogue_id: int | None
    agent_dispositions: int  # live, non-system dispositions in the catalogue
    positive_dispositions: int
    caller_id: str | None  # fixed caller id
    caller_id_pool: int  # active numbers in the pool (local presence)
    telephony_connection_ok: bool  # the campaign's (or the default) connection exists and is active
    calling_window_ok: bool  # the window opens at least once a week
    ring_timeout_secs: int
    amd_mode: str
    amd_machine_action: str
    machine_message: str | None
    abandon_message: str
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    abandon_rule: str = "us_fcc"


@dataclass(frozen=True)
class Item:
    key: str
    ok: bool
    message: str
    blocking: bool = True


def checklist(r: Readiness, now: datetime) -> list[Item]:
    """Every check, passed or not, in the order a manager would fix them."""
    predictive = r.dial_mode == "predictive"
    return [
        Item("audience", r.audience_rules > 0 and r.audience_size > 0,
             "the audience selects no contact: include a list, segment or domain set with members"
             if r.audience_rules else "the campaign has no audience: include a list, segment or domain set"),
        Item("script", r.script_id is not None, "choose the call script agents read"),
        Item("form", r.qualification_form_id is not None and r.form_fields > 0,
             "choose a qualification form with at least one field"),
        Item("dispositions", r.disposition_catalogue_id is not None and r.agent_dispositions > 0
             and r.positive_dispositions > 0,
             "choose a disposition catalogue with agent outcomes, at least one of them positive (a lead)"),
        Item("caller_id", r.caller_id is not None or r.caller_id_pool > 0,
             "set a caller id, or add active numbers to the caller-id pool for local presence"),
        Item("telephony", r.telephony_connection_ok, "the telephony connection is missing or inactive"),
        Item("calling_window", r.calling_window_ok, "the calling window never opens"),
        Item("ring_timeout", r.ring_timeout_secs >= 15, "ring at least 15 s before giving up (US and UK rules)"),
        Item("abandon_message", bool(r.abandon_message.strip()) or r.dial_mode == "preview",
             "write the message played when no agent is free within 2 s (identification and opt-out)"),
        Item("machine_message", r.amd_machine_action != "leave_message" or bool((r.machine_message or "").strip()),
             "write the voicemail message, or choose another action on machines"),
        Item("schedule", r.ends_at is None or r.ends_at > now, "the campaign's end is in the past"),
        # Ofcom counts from the answer and counts AMD's false positives: detection alone outlasts its 2 s.
        Item("amd_under_ofcom", r.abandon_rule != "uk_ofcom" or r.amd_mode == "disabled" or r.dial_mode == "preview",
             "switch AMD off under the UK rule: Ofcom's 2 s run from the answer and detection takes longer, so every "
             "call AMD hangs up on a person is an abandon"),
        Item("amd_with_predictive", not (predictive and r.amd_mode == "disabled"),
             "predictive dialling without AMD sends answering machines to agents", blocking=False),
    ]  # fmt: skip


def blocking_failures(items: list[Item]) -> list[Item]:
    return [item for item in items if item.blocking and not item.ok]
