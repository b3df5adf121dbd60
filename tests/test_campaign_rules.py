"""Campaign lifecycle and pre-start checklist, qualification forms and call scripts: pure, parameter tables."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from crm.campaigns.forms import AnswerError, FormDefinition, FormField, validate_answers
from crm.campaigns.lifecycle import (
    TRANSITIONS,
    CampaignAction,
    CampaignStatus,
    LifecycleError,
    Readiness,
    blocking_failures,
    checklist,
    next_status,
)
from crm.campaigns.scripts import ScriptError, check, render

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "action"), list(itertools.product(CampaignStatus, CampaignAction)))
def test_lifecycle(status: CampaignStatus, action: CampaignAction) -> None:
    if (status, action) in TRANSITIONS:
        assert next_status(status, action) is TRANSITIONS[(status, action)]
    else:
        with pytest.raises(LifecycleError, match=f"a {status.value} campaign cannot {action.value}"):
            next_status(status, action)


READY = Readiness(
    dial_mode="predictive", audience_rules=1, audience_size=5000, script_id=1, qualification_form_id=2,
    form_fields=4, disposition_catalogue_id=1, agent_dispositions=8, positive_dispositions=1,
    caller_id="+15550100001", caller_id_pool=0, telephony_connection_ok=True, calling_window_ok=True,
    ring_timeout_secs=25, amd_mode="premium", amd_machine_action="hangup", machine_message=None,
    abandon_message="This is Acme calling; to opt out press 9.",
)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({}, []),
        ({"audience_rules": 0, "audience_size": 0}, ["audience"]),
        ({"audience_size": 0}, ["audience"]),
        ({"script_id": None, "qualification_form_id": None}, ["script", "form"]),
        ({"form_fields": 0}, ["form"]),
        ({"positive_dispositions": 0}, ["dispositions"]),
        ({"caller_id": None}, ["caller_id"]),
        ({"caller_id": None, "caller_id_pool": 12}, []),  # local presence from the pool
        ({"telephony_connection_ok": False, "calling_window_ok": False}, ["telephony", "calling_window"]),
        ({"abandon_message": "  "}, ["abandon_message"]),
        ({"abandon_message": "", "dial_mode": "preview"}, []),  # preview never abandons
        ({"amd_machine_action": "leave_message"}, ["machine_message"]),
        ({"amd_machine_action": "leave_message", "machine_message": "Hi, it's Acme..."}, []),
        ({"ends_at": datetime(2026, 11, 1, tzinfo=UTC)}, ["schedule"]),
        ({"amd_mode": "disabled"}, []),  # a warning, not a blocker
        ({"abandon_rule": "uk_ofcom"}, ["amd_under_ofcom"]),  # AMD outlasts Ofcom's 2 s from the answer
        ({"abandon_rule": "uk_ofcom", "amd_mode": "disabled"}, []),
        ({"abandon_rule": "uk_ofcom", "dial_mode": "preview"}, []),
    ],
)
def test_checklist(changes: dict[str, Any], failing: list[str]) -> None:
    items = checklist(dataclasses.replace(READY, **changes), NOW)
    assert [item.key for item in blocking_failures(items)] == failing
    assert all(item.message for item in items)
    warning = next(item for item in items if item.key == "amd_with_predictive")
    assert warning.ok is (changes.get("amd_mode", "premium") != "disabled")


FIELDS = FormDefinition.model_validate({"fields": [
    {"key": "budget", "label": "Budget", "type": "integer", "required": True, "min": 0, "max": 10_000_000},
    {"key": "timeline", "label": "Timeline", "type": "select", "required": True,
     "options": [{"value": "q1", "label": "Q1"}, {"value": "q2", "label": "Q2"}]},
    {"key": "products", "label": "Products", "type": "multiselect",
     "options": [{"value": "crm", "label": "CRM"}, {"value": "erp", "label": "ERP"}]},
    {"key": "decision_maker", "label": "Decision maker?", "type": "boolean"},
    {"key": "meeting", "label": "Meeting date", "type": "date"},
    {"key": "email", "label": "E-mail", "type": "email"},
    {"key": "direct_line", "label": "Direct line", "type": "phone"},
    {"key": "notes", "label": "Notes", "type": "textarea", "max_length": 50},
]}).fields  # fmt: skip


@pytest.mark.parametrize(
    ("answers", "expected", "errors"),
    [
        ({"budget": 5000, "timeline": "q1"}, {"budget": 5000, "timeline": "q1"}, []),
        ({"budget": 5000.0, "timeline": "q2", "products": ["erp", "crm", "erp"], "decision_maker": True,
          "meeting": "2026-12-01", "email": " Ann@Example.COM ", "direct_line": "+1 (212) 555-0100",
          "notes": "  keen  "},
         {"budget": 5000, "timeline": "q2", "products": ["crm", "erp"], "decision_maker": True,
          "meeting": "2026-12-01", "email": "Ann@example.com", "direct_line": "+12125550100", "notes": "keen"}, []),
        ({}, None, ["budget: required", "timeline: required"]),
        ({"budget": "5000", "timeline": "q3"}, None, ["budget: must be a number", "timeline: not one of the options"]),
        ({"budget": 5.5, "timeline": "q1"}, None, ["budget: must be a whole number"]),
        ({"budget": -1, "timeline": "q1"}, None, ["budget: at least 0"]),
        ({"budget": True, "timeline": "q1"}, None, ["budget: must be a number"]),
        ({"budget": 1, "timeline": "q1", "hacked": 1}, None, ["hacked: not a field of this form"]),
        ({"budget": 1, "timeline": "q1", "meeting": "tomorrow"}, None, ["meeting: must be a date, YYYY-MM-DD"]),
        ({"budget": 1, "timeline": "q1", "notes": "x" * 51}, None, ["notes: at most 50 characters"]),
        ({"budget": 1, "timeline": "q1", "products": "crm"}, None, ["products: must be a list of the options"]),
        ({"budget": 1, "timeline": "q1", "email": "nobody"}, None, ["email: not an e-mail address: has no @"]),
    ],
)  # fmt: skip
def test_answers(answers: dict[str, Any], expected: dict[str, Any] | None, errors: list[str]) -> None:
    if expected is not None:
        assert validate_answers(FIELDS, answers) == expected
        return
    with pytest.raises(AnswerError) as failed:
        validate_answers(FIELDS, answers)
    assert [f"{e['field']}: {e['message']}" for e in failed.value.errors] == errors


def test_required_fields_only_for_a_positive_disposition() -> None:
    assert validate_answers(FIELDS, {}, require=False) == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([{"key": "a", "label": "A", "type": "select"}], "needs options"),
        ([{"key": "a", "label": "A", "type": "text", "options": [{"value": "x", "label": "X"}]}], "only select"),
        ([{"key": "a", "label": "A", "type": "integer", "min": 5, "max": 1}], "min is above max"),
        ([{"key": "a", "label": "A", "type": "text"}, {"key": "a", "label": "B", "type": "text"}], "repeat"),
        ([{"key": "Bad Key", "label": "A", "type": "text"}], "pattern"),
        ([{"key": "a", "label": "A", "type": "regex"}], "literal_error"),
        ([{"key": "a", "label": "A", "type": "select", "options": [{"value": "x", "label": "X"},
                                                                    {"value": "x", "label": "Y"}]}], "repeat"),
    ],
)  # fmt: skip
def test_bad_form_definitions(fields: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FormDefinition.model_validate({"fields": fields})


@pytest.mark.parametrize(
    ("body", "used", "error"),
    [
        ("Hi {{contact.first_name}}, this is {{agent.first_name}} from Acme.", ["contact.first_name",
                                                                                 "agent.first_name"], None),
        ('Hello {{ contact.first_name | "there" }}!', ["contact.first_name"], None),
        ("Your budget was {{answers.budget}}", ["answers.budget"], None),
        ("{{contact.shoe_size}}", None, "contact.shoe_size: no such field"),
        ("{{answers.nope}}", None, "answers.nope: no such field"),
        ("{{user.password}}", None, "user.password: unknown"),
        ("{{contact.first_name", [], None),  # not a merge field at all: plain text
        ("{{ oops }}", None, "is not a merge field"),
    ],
)  # fmt: skip
def test_script_merge_fields(body: str, used: list[str] | None, error: str | None) -> None:
    if error is not None:
        with pytest.raises(ScriptError, match=error):
            check(body, ["budget"])
        return
    assert check(body, ["budget"]) == used


def test_render_fills_and_falls_back() -> None:
    body = 'Hi {{contact.first_name | "there"}}, {{account.name}} - {{agent.name}}'
    assert render(body, {"contact": {"first_name": "Ann"}, "account": {"name": "Acme"}}) == "Hi Ann, Acme - "
    assert render(body, {"contact": {"first_name": ""}}) == "Hi there,  - "


def test_a_field_model_is_strict() -> None:
    with pytest.raises(ValidationError):
        FormField.model_validate({"key": "a", "label": "A", "type": "integer", "min": float("nan")})
