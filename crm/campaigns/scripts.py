"""Call scripts with merge fields: ``{{contact.first_name}}``, ``{{account.name}}``, ``{{agent.name}}``,
``{{answers.budget}}``, with an optional fallback: ``{{contact.first_name | "there"}}``. Pure.

Only known fields may be named (a typo is an error when the script is saved, not a blank on an agent's screen).
Rendering escapes nothing: the console puts the result into the page as text, never as HTML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MERGE = re.compile(r"{{\s*([a-z]+)\.([a-z][a-z0-9_]{0,62})\s*(?:\|\s*\"([^\"{}]{0,200})\"\s*)?}}")
LOOSE = re.compile(r"{{[^{}]{0,300}}}")  # bounded, no backtracking across the text: linear on hostile input
FIELDS = {
    "contact": {"first_name", "last_name", "full_name", "title", "email", "phone", "city", "region", "country"},
    "account": {"name", "domain", "industry", "employees", "city", "country"},
    "agent": {"name", "first_name"},
    "campaign": {"name"},
}
MAX_SCRIPT = 50_000


class ScriptError(ValueError):
    pass


def check(body: str, answer_keys: Iterable[str] = ()) -> list[str]:
    """The merge fields the script uses; ScriptError names every one that is malformed or unknown.
    ``answers.<key>`` may name a field of the campaign's qualification form."""
    if len(body) > MAX_SCRIPT:
        raise ScriptError(f"a script is at most {MAX_SCRIPT} characters")
    answers = set(answer_keys)
    problems, used = [], []
    for loose in LOOSE.finditer(body):
        match = MERGE.fullmatch(loose.group(0))
        if match is None:
            problems.append(f"{loose.group(0)!r} is not a merge field like {{{{contact.first_name}}}}")
            continue
        scope, name = match.group(1), match.group(2)
        known = answers if scope == "answers" else FIELDS.get(scope)
        if known is None:
            problems.append(f"{scope}.{name}: unknown; use {', '.join(sorted([*FIELDS, 'answers']))}")
        elif name not in known and not (scope == "answers" and not answers):
            problems.append(f"{scope}.{name}: no such field")
        else:
            used.append(f"{scope}.{name}")
    if problems:
        raise ScriptError("; ".join(problems))
    return used


def render(body: str, values: Mapping[str, Mapping[str, Any]]) -> str:
    """The script with its merge fields filled from ``values`` (``{"contact": {...}, ...}``); a missing value
    becomes the field's fallback, or nothing."""

    def fill(match: re.Match[str]) -> str:
        value = values.get(match.group(1), {}).get(match.group(2))
        if value is None or value == "":
            return match.group(3) or ""
        return str(value)

    return MERGE.sub(fill, body)
