"""The one decision per channel: may this contact be reached now by this campaign, and if not, every reason why.

Pure and clock-injected: the facts (``PhoneTarget``, ``EmailTarget``) are gathered by the caller (the API's
explanation from PostgreSQL, the dialer's hopper in batches), the suppressions come from the in-memory index.
Every rule is evaluated, never short-circuited, so the answer lists all that blocks and when each lifts; the
contact can be reached again at ``next_possible`` (None while a permanent reason holds).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crm.compliance.local_time import LocalZones
from crm.compliance.rules import (
    AttemptHistory,
    AttemptRules,
    EmailCaps,
    EmailsSent,
    Reason,
    check_attempts,
    check_email_caps,
)
from crm.compliance.suppression_index import SuppressionIndex
from crm.compliance.windows import CallingWindow, check_window, zone

CONSENT_STATES = ("granted", "withdrawn", "unknown")
#: A busy line lifts when its call ends; the hopper looks again after this long.
RECHECK_BUSY = timedelta(minutes=1)


def local_day_start(zones: tuple[str, ...], now: datetime) -> datetime:
    """The earliest local midnight today among the zones: "today" as long as any candidate zone says."""
    return min(_midnight(now.astimezone(zone(name)), 0) for name in zones)


def next_local_midnight(zones: tuple[str, ...], now: datetime) -> datetime:
    """The latest next local midnight among the zones: a daily limit lifts when it is tomorrow everywhere."""
    return max(_midnight(now.astimezone(zone(name)), 1) for name in zones)


def _midnight(local: datetime, days_ahead: int) -> datetime:
    return datetime.combine(local.date() + timedelta(days=days_ahead), datetime.min.time(), tzinfo=local.tzinfo)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...] = ()
    #: when every blocking reason has lifted, if all of them lift
    next_possible: datetime | None = None

    @classmethod
    def of(cls, reasons: list[Reason], now: datetime) -> Decision:
        if not reasons:
            return cls(True, (), now)
        lifts = [reason.until for reason in reasons]
        until = None if any(moment is None for moment in lifts) else max(m for m in lifts if m is not None)
        return cls(False, tuple(reasons), until)


@dataclass(frozen=True, slots=True)
class PhoneCampaign:
    campaign_id: int
    window: CallingWindow = field(default_factory=CallingWindow.default)
    consent_required: bool = False
    attempts: AttemptRules = field(default_factory=AttemptRules)
    #: US 47 CFR 64.1200(a)(6): never engage two lines of a multi-line business at once
    one_call_per_account: bool = True


@dataclass(frozen=True, slots=True)
class PhoneTarget:
    contact_id: int
    phone_key: int | None  # compact_sets.phone_key of the E.164 number
    zones: LocalZones
    phone_invalid_reason: str | None = None
    domain_keys: tuple[int, ...] = ()  # account's and e-mail's domains and registrable domains (text_key)
    consent: str = "unknown"
    history: AttemptHistory = field(default_factory=AttemptHistory)
    #: set by the dialer when the account's lead cap is reached (mode and numbers, for the reason)
    lead_cap_reached: str | None = None
    account_id: int | None = None


@dataclass(frozen=True, slots=True)
class EmailCampaign:
    campaign_id: int
    consent_required: bool = False
    caps: EmailCaps = field(default_factory=EmailCaps)


@dataclass(frozen=True, slots=True)
class EmailTarget:
    contact_id: int
    email_key: int | None  # compact_sets.text_key of the lower-case address
    email_invalid_reason: str | None = None
    domain_keys: tuple[int, ...] = ()  # account domain, registrable domain, the address's domain
    consent: str = "unknown"
    sent: EmailsSent = field(default_factory=EmailsSent)


def _suppressed(
    reasons: list[Reason], index: SuppressionIndex, channel: str, key: int, campaign: int, now: float
) -> None:
    for scope in index.scopes(channel, key, campaign, now):
        what = {"phone": "the number is on the", "email": "the address is on the", "domain": "the company is on the"}
        reasons.append(Reason(f"suppressed_{channel}_{scope}", f"{what[channel]} {scope} do-not-contact list"))


def _domains(reasons: list[Reason], index: SuppressionIndex, keys: tuple[int, ...], campaign: int, now: float) -> None:
    seen = set()
    for key in keys:
        for scope in index.scopes("domain", key, campaign, now):
            if scope not in seen:
                seen.add(scope)
                reasons.append(
                    Reason(f"suppressed_domain_{scope}", f"the company is on the {scope} do-not-contact list")
                )


def _consent(reasons: list[Reason], consent: str, required: bool, channel: str) -> None:
    if consent == "withdrawn":
        reasons.append(Reason("consent_withdrawn", f"the contact withdrew consent to {channel} contact"))
    elif required and consent != "granted":
        reasons.append(Reason("consent_required", f"the campaign requires {channel} consent; it is {consent}"))


def decide_phone(
    campaign: PhoneCampaign,
    target: PhoneTarget,
    index: SuppressionIndex,
    now: datetime,
    live_numbers: Container[int] = (),
    live_accounts: Container[int] = (),
) -> Decision:
    """``live_numbers``: phone keys with a call in progress (never two calls to one line at a time);
    ``live_accounts``: accounts with a call in progress (the multi-line rule, when the campaign applies it)."""
    reasons: list[Reason] = []
    epoch = now.timestamp()
    key = target.phone_key
    if key is None:
        why = f": {target.phone_invalid_reason}" if target.phone_invalid_reason else ""
        reasons.append(Reason("no_valid_phone", f"the contact has no valid phone number{why}"))
    else:
        _suppressed(reasons, index, "phone", key, campaign.campaign_id, epoch)
        if key in live_numbers:
            reasons.append(Reason("line_busy", "a call to this number is in progress", now + RECHECK_BUSY))
    if campaign.one_call_per_account and target.account_id is not None and target.account_id in live_accounts:
        reasons.append(
            Reason("account_line_busy", "a call to another line of this account is in progress", now + RECHECK_BUSY)
        )
    _domains(reasons, index, target.domain_keys, campaign.campaign_id, epoch)
    _consent(reasons, target.consent, campaign.consent_required, "phone")

    zones = target.zones.zones
    if not zones:
        reasons.append(Reason("local_time_unknown", "no time zone for the contact, the account or the number"))
    else:
        window = check_window(campaign.window, zones, now)
        if not window.allowed:
            shown = ", ".join(window.closed_in[:3]) + (" ..." if len(window.closed_in) > 3 else "")
            reasons.append(Reason("outside_calling_window", f"outside the calling window in {shown}", window.next_open))
    daily_limit_reached = target.history.today >= campaign.attempts.max_per_day
    next_day = next_local_midnight(zones, now) if daily_limit_reached and zones else None
    reasons.extend(check_attempts(campaign.attempts, target.history, now, next_day))
    if target.lead_cap_reached:
        reasons.append(Reason("account_lead_cap", target.lead_cap_reached))
    return Decision.of(reasons, now)


def decide_email(campaign: EmailCampaign, target: EmailTarget, index: SuppressionIndex, now: datetime) -> Decision:
    reasons: list[Reason] = []
    epoch = now.timestamp()
    if target.email_key is None:
        why = f": {target.email_invalid_reason}" if target.email_invalid_reason else ""
        reasons.append(Reason("no_valid_email", f"the contact has no valid e-mail address{why}"))
    else:
        _suppressed(reasons, index, "email", target.email_key, campaign.campaign_id, epoch)
    _domains(reasons, index, target.domain_keys, campaign.campaign_id, epoch)
    _consent(reasons, target.consent, campaign.consent_required, "e-mail")
    reasons.extend(check_email_caps(campaign.caps, target.sent))
    return Decision.of(reasons, now)
