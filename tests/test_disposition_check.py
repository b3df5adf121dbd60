"""An agent's disposition checked before anything is written: parameter tables, the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crm.campaigns.forms import FormField
from dialer.disposition_check import check_disposition
from dialer.errors import Refused
from dialer.outcome_rules import Flags

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
OUTCOMES = {
    "qualified": Flags(1, "qualified", is_positive=True, is_final=True),
    "callback": Flags(2, "callback", is_callback=True),
    "not_interested": Flags(3, "not_interested", is_final=True),
}
FORM = [
    FormField.model_validate({"key": "budget", "label": "Budget", "type": "integer", "required": True, "min": 1}),
    FormField.model_validate({"key": "notes", "label": "Notes", "type": "text"}),
]


@pytest.mark.parametrize(
    ("code", "answers", "due", "refused", "clean"),
    [
        (
            "qualified",
            {"budget": 1200, "notes": "  decides in Q1 "},
            None,
            None,
            {"budget": 1200, "notes": "decides in Q1"},
        ),
        ("qualified", {"budget": "1200"}, None, "invalid_answers", None),  # a number, not text
        ("qualified", {}, None, "invalid_answers", None),  # a lead needs the required fields
        ("qualified", {"budget": 0}, None, "invalid_answers", None),
        ("qualified", {"budget": 5, "colour": "red"}, None, "invalid_answers", None),  # not a field
        ("not_interested", {}, None, None, {}),  # other outcomes may leave required fields out
        ("not_interested", {"budget": "lots"}, None, "invalid_answers", None),  # but what is given is typed
        ("callback", {}, None, "callback_required", None),
        ("callback", {}, NOW + timedelta(hours=2), None, {}),
        ("callback", {}, NOW - timedelta(minutes=1), "bad_callback", None),
        ("callback", {}, NOW + timedelta(days=400), "bad_callback", None),
        ("no_answer", {}, None, "unknown_disposition", None),  # the dialer's own outcome, not the agent's
        ("qualified_plus", {}, None, "unknown_disposition", None),
    ],
)
def test_check_disposition(
    code: str, answers: dict[str, Any], due: datetime | None, refused: str | None, clean: dict[str, Any] | None
) -> None:
    if refused is not None:
        with pytest.raises(Refused) as error:
            check_disposition(OUTCOMES, FORM, code, answers, due, NOW)
        assert error.value.code == refused
        return
    flags, cleaned, callback_due = check_disposition(OUTCOMES, FORM, code, answers, due, NOW)
    assert (flags.code, cleaned) == (code, clean)
    assert callback_due == (due if flags.is_callback else None)


def test_a_callback_time_on_an_outcome_without_one_is_ignored() -> None:
    flags, _, due = check_disposition(OUTCOMES, FORM, "not_interested", {}, NOW + timedelta(hours=1), NOW)
    assert (flags.code, due) == ("not_interested", None)
