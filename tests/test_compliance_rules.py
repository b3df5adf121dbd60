"""Compliance logic without I/O: calling windows, local zones, attempt rules, e-mail caps, key sets, decisions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crm.compliance.compact_sets import KeySet, phone_key, text_key
from crm.compliance.decision import (
    EmailCampaign,
    EmailTarget,
    PhoneCampaign,
    PhoneTarget,
    decide_email,
    decide_phone,
)
from crm.compliance.local_time import LocalZones, local_zones, zones_of_number
from crm.compliance.rules import AttemptHistory, AttemptRules, EmailCaps, EmailsSent, check_attempts, check_email_caps
from crm.compliance.suppression_index import SuppressionIndex
from crm.compliance.windows import CallingWindow, WindowError, check_window

DEFAULT = CallingWindow.default()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("zones", "now", "allowed"),
    [
        # New York is UTC-5 in winter: 08:00 local is 13:00 UTC, 21:00 local is 02:00 UTC the next day.
        (["America/New_York"], "2026-11-24T12:59", False),
        (["America/New_York"], "2026-11-24T13:00", True),
        (["America/New_York"], "2026-11-25T01:59", True),  # 20:59 local
        (["America/New_York"], "2026-11-25T02:00", False),  # 21:00 local: end is exclusive
        # Summer time: UTC-4, so 08:00 local is 12:00 UTC.
        (["America/New_York"], "2026-07-14T12:00", True),
        (["America/New_York"], "2026-07-14T11:59", False),
        # The morning of the spring change (Sunday 8 March 2026 is a weekend; Monday 9th is the first EDT weekday).
        (["America/New_York"], "2026-03-09T12:00", True),
        (["America/New_York"], "2026-03-06T12:30", False),  # Friday before: still EST, 07:30 local
        # London leaves summer time on 25 October 2026: 08:00 local is 07:00 UTC before, 08:00 UTC after.
        (["Europe/London"], "2026-10-23T07:00", True),
        (["Europe/London"], "2026-10-26T07:30", False),
        (["Europe/London"], "2026-10-26T08:00", True),
        # Half-hour and 45-minute offsets: India UTC+5:30, Newfoundland UTC-3:30, Nepal UTC+5:45.
        (["Asia/Kolkata"], "2026-11-24T02:29", False),  # 07:59 local
        (["Asia/Kolkata"], "2026-11-24T02:30", True),  # 08:00 local
        (["America/St_Johns"], "2026-11-24T11:29", False),  # 07:59 local
        (["America/St_Johns"], "2026-11-24T11:30", True),
        (["Asia/Kathmandu"], "2026-11-24T02:15", True),  # 08:00 local
        (["Asia/Kathmandu"], "2026-11-24T02:14", False),
        # Weekend in the callee's zone while it is still Friday in UTC.
        (["Pacific/Auckland"], "2026-11-27T20:00", False),  # Saturday 09:00 in Auckland
        # A number spanning zones: allowed only when open in all of them.
        (["America/New_York", "America/Chicago"], "2026-11-24T13:30", False),  # 07:30 in Chicago
        (["America/New_York", "America/Chicago"], "2026-11-24T14:00", True),
        (["America/New_York", "America/Los_Angeles"], "2026-11-25T01:59", True),  # 20:59 NY, 17:59 LA
        (["America/New_York", "America/Los_Angeles"], "2026-11-24T15:59", False),  # 07:59 in LA
    ],
)
def test_default_window(zones: list[str], now: str, allowed: bool) -> None:
    assert check_window(DEFAULT, zones, utc(now)).allowed is allowed


def test_holidays_close_the_whole_local_day() -> None:
    window = CallingWindow.from_json({"holidays": ["2026-12-25"]})
    assert not check_window(window, ["America/New_York"], utc("2026-12-25T15:00")).allowed
    # 24 December 22:00 in Los Angeles is already the 25th in UTC: the local date decides.
    assert not check_window(window, ["America/Los_Angeles"], utc("2026-12-25T06:00")).allowed
    assert check_window(window, ["America/Los_Angeles"], utc("2026-12-24T20:00")).allowed


@pytest.mark.parametrize(
    ("window", "zones", "now", "expected"),
    [
        (DEFAULT.to_json(), ["America/New_York"], "2026-11-24T03:00", "2026-11-24T13:00"),
        (DEFAULT.to_json(), ["America/New_York"], "2026-11-28T15:00", "2026-11-30T13:00"),  # Saturday -> Monday
        ({"holidays": ["2026-12-25"]}, ["Europe/London"], "2026-12-24T22:00", "2026-12-28T08:00"),  # Fri holiday
        (DEFAULT.to_json(), ["America/New_York", "America/Los_Angeles"], "2026-11-24T12:00", "2026-11-24T16:00"),
        ({"mon": [["09:00", "12:00"], ["13:00", "17:30"]]}, ["Europe/London"], "2026-11-23T12:10",
         "2026-11-23T13:00"),  # lunch break
        (DEFAULT.to_json(), ["America/New_York"], "2026-03-07T03:00", "2026-03-09T12:00"),  # over the DST change
    ],
)  # fmt: skip
def test_next_opening(window: dict[str, Any], zones: list[str], now: str, expected: str) -> None:
    check = check_window(CallingWindow.from_json(window), zones, utc(now))
    assert not check.allowed
    assert check.next_open is not None
    assert check.next_open.astimezone(UTC) == utc(expected)


def test_zones_that_never_open_together_say_so() -> None:
    narrow = CallingWindow.from_json({day: [["09:00", "10:00"]] for day in ("mon", "tue", "wed", "thu", "fri")})
    check = check_window(narrow, ["America/Los_Angeles", "Asia/Tokyo"], utc("2026-11-24T12:00"))
    assert not check.allowed
    assert check.next_open is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mon": [["9:00", "17:00"]]}, "calling_window.mon[0][0]: expected a time of day"),
        ({"mon": [["17:00", "09:00"]]}, "calling_window.mon[0]: ends (09:00) before it starts (17:00)"),
        ({"mon": [["09:00", "12:00"], ["11:00", "13:00"]]}, "calling_window.mon: intervals overlap"),
        ({"monday": []}, "unknown keys ['monday']"),
        ({"mon": "09:00-17:00"}, "calling_window.mon: expected a list"),
        ({"holidays": ["25/12/2026"]}, "calling_window.holidays[0]: expected YYYY-MM-DD"),
        ({"sat": [["24:00", "24:00"]]}, "cannot start at 24:00"),
        ({"sun": [["08:00", "25:00"]]}, "calling_window.sun[0][1]"),
    ],
)
def test_window_json_errors_name_the_part(data: dict[str, Any], message: str) -> None:
    with pytest.raises(WindowError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        CallingWindow.from_json(data)


def test_window_json_round_trip_and_days_left_out_are_closed() -> None:
    window = CallingWindow.from_json({"sat": [["10:00", "14:00"]], "holidays": ["2026-12-26"]})
    assert window.days[0] == ()
    assert window.days[5] == ((600, 840),)
    assert CallingWindow.from_json(window.to_json()) == window
    assert window.holidays == frozenset({date(2026, 12, 26)})
    assert CallingWindow.from_json({"sun": [["00:00", "24:00"]]}).is_open(datetime(2026, 11, 29, 23, 59))


@pytest.mark.parametrize(
    ("kwargs", "zones", "source"),
    [
        ({"contact_zone": "Europe/Paris", "office_zone": "Europe/London", "phone_e164": "+12125550100"},
         ("Europe/Paris",), "contact"),
        ({"office_zone": "Europe/London", "phone_e164": "+12125550100"}, ("Europe/London",), "account_office"),
        ({"office_country": "IN", "phone_e164": "+12125550100"}, ("Asia/Kolkata",), "account_country"),
        ({"phone_e164": "+12125550100"}, ("America/New_York",), "phone_number"),
        ({"phone_e164": "+447912345678"}, ("Europe/Guernsey", "Europe/Isle_of_Man", "Europe/Jersey", "Europe/London"),
         "phone_number"),  # a mobile: every zone of +44
        ({"contact_country": "FR"}, ("Europe/Paris",), "contact_country"),
        ({"fallback_zone": "UTC"}, ("UTC",), "campaign_fallback"),
        ({}, (), "unknown"),
    ],
)  # fmt: skip
def test_local_zone_sources_in_order(kwargs: dict[str, str], zones: tuple[str, ...], source: str) -> None:
    assert local_zones(**kwargs) == LocalZones(zones, source)


def test_numbers_spanning_zones() -> None:
    assert len(zones_of_number("+18005550100")) > 10  # toll free: anywhere in the NANP
    assert set(zones_of_number("+17095551234")) == {"America/Halifax", "America/St_Johns"}
    assert len(local_zones(office_country="US").zones) > 5


NOW = utc("2026-11-24T15:00")


@pytest.mark.parametrize(
    ("rules", "history", "codes"),
    [
        (AttemptRules(), AttemptHistory(), []),
        (AttemptRules(max_total=3), AttemptHistory(total=3, last_at=NOW - timedelta(days=2)), ["max_attempts"]),
        (AttemptRules(max_per_day=2), AttemptHistory(total=2, today=2, last_at=NOW - timedelta(hours=6)),
         ["max_attempts_today"]),
        (AttemptRules(retry_minutes={"busy": 15}), AttemptHistory(1, 1, NOW - timedelta(minutes=10), "busy"),
         ["retry_delay"]),
        (AttemptRules(retry_minutes={"busy": 15}), AttemptHistory(1, 1, NOW - timedelta(minutes=15), "busy"), []),
        (AttemptRules(default_retry_minutes=60), AttemptHistory(1, 1, NOW - timedelta(minutes=59), "no_answer"),
         ["retry_delay"]),
        (AttemptRules(abandon_lockout_hours=72, default_retry_minutes=0),
         AttemptHistory(1, 0, NOW - timedelta(hours=71), "abandoned", NOW - timedelta(hours=71)), ["abandon_lockout"]),
        (AttemptRules(abandon_lockout_hours=72, default_retry_minutes=0),
         AttemptHistory(1, 0, NOW - timedelta(hours=72), "abandoned", NOW - timedelta(hours=72)), []),
        (AttemptRules(abandon_lockout_hours=0, default_retry_minutes=0),
         AttemptHistory(1, 0, NOW - timedelta(hours=1), "abandoned", NOW - timedelta(hours=1)), []),
        (AttemptRules(max_total=1, max_per_day=1), AttemptHistory(1, 1, NOW - timedelta(minutes=1), "busy"),
         ["max_attempts", "max_attempts_today", "retry_delay"]),
    ],
)  # fmt: skip
def test_attempt_rules(rules: AttemptRules, history: AttemptHistory, codes: list[str]) -> None:
    reasons = check_attempts(rules, history, NOW, NOW + timedelta(hours=9))
    assert [reason.code for reason in reasons] == codes


def test_attempt_reasons_say_when_they_lift() -> None:
    history = AttemptHistory(1, 1, NOW - timedelta(minutes=10), "busy", None)
    (reason,) = check_attempts(AttemptRules(retry_minutes={"busy": 30}), history, NOW, None)
    assert reason.until == NOW + timedelta(minutes=20)


@pytest.mark.parametrize(
    ("caps", "sent", "codes"),
    [
        (EmailCaps(1, 3, 8), EmailsSent(0, 0, 0), []),
        (EmailCaps(1, 3, 8), EmailsSent(1, 1, 1, NOW, NOW, NOW), ["email_cap_day"]),
        (EmailCaps(2, 3, 8), EmailsSent(1, 3, 5, NOW, NOW, NOW), ["email_cap_week"]),
        (EmailCaps(None, None, 8), EmailsSent(5, 7, 8, NOW, NOW, NOW), ["email_cap_month"]),
        (EmailCaps(None, None, None), EmailsSent(50, 50, 50), []),
    ],
)
def test_email_frequency_caps(caps: EmailCaps, sent: EmailsSent, codes: list[str]) -> None:
    assert [reason.code for reason in check_email_caps(caps, sent)] == codes


def test_key_sets_with_overlays_and_expiry() -> None:
    keys = KeySet.from_entries([(5, 0), (1, 0), (9, 2_000), (7, 1_000)])
    assert [keys.contains(k, 1_500) for k in (1, 5, 7, 9, 3)] == [True, True, False, True, False]
    keys.add(3)
    keys.remove(5)
    keys.add(7, 3_000)
    assert [keys.contains(k, 1_500) for k in (3, 5, 7)] == [True, False, True]
    keys.add(5)
    assert keys.contains(5, 1_500)
    assert keys.nbytes == 1024 * 12, "the smallest table: 1,024 slots of 8 + 4 bytes"
    twice = KeySet.from_entries([(4, 100), (4, 0), (6, 100), (6, 200)])
    assert twice.contains(4, 10**9), "a permanent entry wins over an expiring one"
    assert twice.contains(6, 150)
    assert not twice.contains(6, 250)


def test_keys() -> None:
    assert phone_key("+442079460958") == 442079460958
    assert text_key("ann@acme.com") == text_key("ann@acme.com") != text_key("bob@acme.com")
    assert -(2**63) <= text_key("x") < 2**63


def _index(**entries: list[tuple[str, int | None]]) -> SuppressionIndex:
    index = SuppressionIndex()
    for channel, values in entries.items():
        for value, campaign_id in values:
            index.apply({"op": "add", "channel": channel, "campaign_id": campaign_id, "value": value})
    return index


MONDAY_NOON_NY = utc("2026-11-23T17:00")
NY = local_zones(phone_e164="+12125550100")


def test_phone_decision_lists_every_reason() -> None:
    index = _index(phone=[("+12125550100", None), ("+12125550100", 7)], domain=[("acme.com", None)])
    campaign = PhoneCampaign(7, consent_required=True, attempts=AttemptRules(max_total=2))
    target = PhoneTarget(1, phone_key("+12125550100"), NY, domain_keys=(text_key("acme.com"),),
                         history=AttemptHistory(total=2, last_at=MONDAY_NOON_NY - timedelta(days=1)))  # fmt: skip
    decision = decide_phone(campaign, target, index, MONDAY_NOON_NY, live_numbers={phone_key("+12125550100")})
    assert not decision.allowed
    assert [r.code for r in decision.reasons] == [
        "suppressed_phone_global", "suppressed_phone_campaign", "line_busy", "suppressed_domain_global",
        "consent_required", "max_attempts",
    ]  # fmt: skip
    assert decision.next_possible is None  # a suppression does not lift by itself


def test_phone_decision_allows_and_says_when_otherwise() -> None:
    index = _index(phone=[("+12125550199", None), ("+12125550100", 8)])  # another number; another campaign
    campaign = PhoneCampaign(7)
    target = PhoneTarget(1, phone_key("+12125550100"), NY, consent="granted")
    assert decide_phone(campaign, target, index, MONDAY_NOON_NY).allowed
    early = utc("2026-11-23T12:00")  # 07:00 in New York
    decision = decide_phone(campaign, target, index, early)
    assert [r.code for r in decision.reasons] == ["outside_calling_window"]
    assert decision.next_possible == utc("2026-11-23T13:00")
    unknown = PhoneTarget(2, None, LocalZones((), "unknown"), phone_invalid_reason="too short")
    codes = [r.code for r in decide_phone(campaign, unknown, index, MONDAY_NOON_NY).reasons]
    assert codes == ["no_valid_phone", "local_time_unknown"]


def test_withdrawn_consent_blocks_even_when_not_required() -> None:
    target = PhoneTarget(1, phone_key("+12125550100"), NY, consent="withdrawn")
    reasons = decide_phone(PhoneCampaign(7), target, SuppressionIndex(), MONDAY_NOON_NY).reasons
    assert [r.code for r in reasons] == ["consent_withdrawn"]


def test_email_decision() -> None:
    index = _index(email=[("ann@acme.com", None)], domain=[("globex.com", 3)])
    campaign = EmailCampaign(3, caps=EmailCaps(1, 3, 8))
    ann = EmailTarget(1, text_key("ann@acme.com"), sent=EmailsSent(1, 1, 1, NOW, NOW, NOW))
    assert [r.code for r in decide_email(campaign, ann, index, NOW).reasons] == ["suppressed_email_global",
                                                                               "email_cap_day"]  # fmt: skip
    cara = EmailTarget(2, text_key("cara@globex.com"), domain_keys=(text_key("globex.com"),))
    assert [r.code for r in decide_email(campaign, cara, index, NOW).reasons] == ["suppressed_domain_campaign"]
    assert decide_email(EmailCampaign(4), cara, index, NOW).allowed
    nobody = EmailTarget(3, None, "has no @")
    assert [r.code for r in decide_email(campaign, nobody, index, NOW).reasons] == ["no_valid_email"]
