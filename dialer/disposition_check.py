"""An agent's disposition, checked before anything is written. Pure; the clock is passed in.

The code must be one of the campaign's agent outcomes (the dialer's own are not the agent's to give); the form's
answers are typed and cleaned, and a positive outcome (a lead) needs every required field; an outcome that
schedules a callback needs its time, in the future and within a year.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from crm.campaigns.forms import AnswerError, FormField, validate_answers
from dialer.errors import Refused
from dialer.outcome_rules import Flags

CALLBACK_HORIZON = timedelta(days=366)


def check_disposition(
    dispositions: Mapping[str, Flags],
    form: list[FormField],
    code: str,
    answers: Mapping[str, Any],
    callback_due: datetime | None,
    now: datetime,
) -> tuple[Flags, dict[str, Any], datetime | None]:
    """(the outcome, the cleaned answers, the callback's time if the outcome schedules one), or Refused."""
    flags = dispositions.get(code)
    if flags is None:
        raise Refused("unknown_disposition", f"{code!r} is not a disposition of this campaign")
    try:
        clean = validate_answers(form, dict(answers), require=flags.is_positive)
    except AnswerError as exc:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
        raise Refused("invalid_answers", detail, exc.errors) from None
    if not flags.is_callback:
        return flags, clean, None
    if callback_due is None:
        raise Refused("callback_required", f"{code!r} needs a callback time")
    if not now < callback_due < now + CALLBACK_HORIZON:
        raise Refused("bad_callback", "a callback is due in the future, within a year")
    return flags, clean, callback_due
