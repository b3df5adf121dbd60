"""The segment filter language: JSON in, parameterised SQL out, from a whitelist only.

A filter is a condition or a group::

    {"all": [cond_or_group, ...]}          AND
    {"any": [cond_or_group, ...]}          OR
    {"field": "contact.email", "op": "ends_with", "value": "@acme.com"}

Fields are named in :data:`FIELDS` (plus ``contact.custom.<key>`` and ``account.custom.<key>``); each
has a type that decides which operators and values it accepts. Field names and operators only ever select
SQL text written here; values and custom-field keys travel as bind parameters. Anything else is a
:class:`FilterError` naming the offending part (``filter.all[1].op``), which the API returns as 422.

The SQL is a boolean expression over ``contacts c LEFT JOIN accounts a ON a.id = c.account_id``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

MAX_DEPTH = 6
MAX_CONDITIONS = 100
MAX_LIST_VALUES = 1000
MAX_TEXT = 500

TEXT, NUMBER, TIME, LIST = "text", "number", "time", "list"

#: field -> (type, SQL expression). Expressions are constants of this module; nothing from the request.
FIELDS: dict[str, tuple[str, str]] = {
    "contact.first_name": (TEXT, "c.first_name"),
    "contact.last_name": (TEXT, "c.last_name"),
    "contact.job_title": (TEXT, "c.job_title"),
    "contact.email": (TEXT, "c.email"),
    "contact.phone": (TEXT, "c.phone_e164"),
    "contact.phone_line_type": (TEXT, "c.phone_line_type::text"),
    "contact.country": (TEXT, "c.country"),
    "contact.timezone": (TEXT, "c.timezone"),
    "contact.created_at": (TIME, "c.created_at"),
    "contact.updated_at": (TIME, "c.updated_at"),
    "account.name": (TEXT, "a.name"),
    "account.domain": (TEXT, "a.domain"),
    "account.registrable_domain": (TEXT, "a.registrable_domain"),
    "account.industry": (TEXT, "a.industry"),
    "account.country": (TEXT, "a.office_country"),
    "account.employee_count": (NUMBER, "a.employee_count"),
    "account.created_at": (TIME, "a.created_at"),
    "list": (LIST, ""),
    "activity.last_called_at": (TIME, "(SELECT max(ca.created_at) FROM call_attempts ca WHERE ca.contact_id = c.id)"),
    "activity.call_attempts": (NUMBER, "(SELECT count(*) FROM call_attempts ca WHERE ca.contact_id = c.id)"),
    "activity.last_emailed_at": (
        TIME,
        "(SELECT max(em.sent_at) FROM email_messages em WHERE em.contact_id = c.id)",
    ),
}

_CUSTOM = re.compile(r"^(contact|account)\.custom\.([A-Za-z][A-Za-z0-9_]{0,62})$")

OPERATORS: dict[str, frozenset[str]] = {
    TEXT: frozenset({"equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "in", "not_in",
                     "is_empty", "is_not_empty"}),
    NUMBER: frozenset({"equals", "not_equals", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_empty",
                       "is_not_empty"}),
    TIME: frozenset({"before", "after", "between", "is_empty", "is_not_empty"}),
    LIST: frozenset({"in", "not_in"}),
}  # fmt: skip


class FilterError(ValueError):
    """The filter is not valid; ``path`` names the offending part."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass
class Compiled:
    sql: str
    params: list[Any] = field(default_factory=list)


@dataclass
class _Compiler:
    first_param: int
    params: list[Any] = field(default_factory=list)
    conditions: int = 0

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return f"${self.first_param + len(self.params) - 1}"

    def node(self, node: Any, path: str, depth: int) -> str:
        if not isinstance(node, Mapping):
            raise FilterError(path, "must be an object: a condition or an all/any group")
        if depth > MAX_DEPTH:
            raise FilterError(path, f"groups nest deeper than {MAX_DEPTH}")
        keys = set(node)
        for joiner, word in (("all", " AND "), ("any", " OR ")):
            if keys == {joiner}:
                children = node[joiner]
                if not isinstance(children, list) or not children:
                    raise FilterError(f"{path}.{joiner}", "must be a non-empty list")
                parts = [self.node(child, f"{path}.{joiner}[{i}]", depth + 1) for i, child in enumerate(children)]
                return "(" + word.join(parts) + ")"
        if "field" in keys:
            unknown = keys - {"field", "op", "value"}
            if unknown:
                raise FilterError(path, f"unknown keys {sorted(unknown)}")
            return self.condition(node, path)
        raise FilterError(path, 'must be {"all": [...]}, {"any": [...]} or {"field", "op", "value"}')

    def condition(self, node: Mapping[str, Any], path: str) -> str:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(path, f"more than {MAX_CONDITIONS} conditions")
        name, op = node.get("field"), node.get("op")
        if not isinstance(name, str):
            raise FilterError(f"{path}.field", "must be a string")
        kind, expression = self._field(name, f"{path}.field")
        if not isinstance(op, str) or op not in OPERATORS[kind]:
            allowed = ", ".join(sorted(OPERATORS[kind]))
            raise FilterError(f"{path}.op", f"{op!r} is not an operator for {name} (use one of: {allowed})")
        value_path = f"{path}.value"
        if op in ("is_empty", "is_not_empty"):
            if "value" in node:
                raise FilterError(value_path, f"{op} takes no value")
            empty = f"({expression} IS NULL OR {expression} = '')" if kind == TEXT else f"{expression} IS NULL"
            return empty if op == "is_empty" else f"NOT {empty}"
        if "value" not in node:
            raise FilterError(value_path, "is required")
        value = node["value"]
        if kind == LIST:
            ids = _list(value, value_path, _list_id)
            member = f"lm.contact_id = c.id AND lm.list_id = ANY({self.bind(ids)}::bigint[])"
            live = "JOIN static_lists sl ON sl.id = lm.list_id AND sl.deleted_at IS NULL"
            sql = f"EXISTS (SELECT 1 FROM list_members lm {live} WHERE {member})"
            return sql if op == "in" else f"NOT {sql}"
        if kind == TEXT:
            return self.text(expression, op, value, value_path)
        if kind == NUMBER:
            return self.number(expression, op, value, value_path)
        return self.time(expression, op, value, value_path)

    def _field(self, name: str, path: str) -> tuple[str, str]:
        if name in FIELDS:
            return FIELDS[name]
        match = _CUSTOM.match(name)
        if match is None:
            raise FilterError(path, f"unknown field {name!r}")
        alias = "c" if match.group(1) == "contact" else "a"
        return TEXT, f"({alias}.custom_fields ->> {self.bind(match.group(2))})"

    def text(self, expression: str, op: str, value: Any, path: str) -> str:
        if op in ("in", "not_in"):
            values = [v.lower() for v in _list(value, path, _text)]
            sql = f"lower({expression}) = ANY({self.bind(values)}::text[])"
            return sql if op == "in" else f"({expression} IS NULL OR NOT {sql})"
        needle = self.bind(_text(value, path).lower())
        lowered = f"lower({expression})"
        templates = {
            "equals": f"{lowered} = {needle}",
            "not_equals": f"{lowered} IS DISTINCT FROM {needle}",
            "contains": f"strpos({lowered}, {needle}) > 0",
            "not_contains": f"coalesce(strpos({lowered}, {needle}) = 0, true)",
            "starts_with": f"starts_with({lowered}, {needle})",
            "ends_with": f"right({lowered}, length({needle})) = {needle}",
        }
        return templates[op]

    def number(self, expression: str, op: str, value: Any, path: str) -> str:
        if op in ("in", "not_in"):
            sql = f"{expression} = ANY({self.bind(_list(value, path, _number))}::numeric[])"
            return sql if op == "in" else f"({expression} IS NULL OR NOT {sql})"
        if op == "between":
            low, high = _pair(value, path, _number)
            return f"{expression} BETWEEN {self.bind(low)}::numeric AND {self.bind(high)}::numeric"
        symbol = {"equals": "=", "not_equals": "IS DISTINCT FROM", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        return f"{expression} {symbol[op]} {self.bind(_number(value, path))}::numeric"

    def time(self, expression: str, op: str, value: Any, path: str) -> str:
        if op == "between":
            start, end = _pair(value, path, _instant)
            return f"{expression} BETWEEN {self.bind(start)} AND {self.bind(end)}"
        symbol = "<" if op == "before" else ">"
        return f"{expression} {symbol} {self.bind(_instant(value, path))}"


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FilterError(path, "must be a string")
    if len(value) > MAX_TEXT:
        raise FilterError(path, f"longer than {MAX_TEXT} characters")
    return value


def _number(value: Any, path: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FilterError(path, "must be a number")
    return value


def _list_id(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FilterError(path, "must be a list id (a positive integer)")
    return value


def _instant(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise FilterError(path, "must be an ISO 8601 date or date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise FilterError(path, f"{value!r} is not an ISO 8601 date or date-time") from None
        parsed = datetime(day.year, day.month, day.day)
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        in_utc = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        in_utc = None
    if in_utc is None or not 1 <= in_utc.year <= 9998:
        raise FilterError(path, f"{value!r} is outside the years 1 to 9998")
    return in_utc


def _list(value: Any, path: str, item: Callable[[Any, str], Any]) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise FilterError(path, "must be a non-empty list")
    if len(value) > MAX_LIST_VALUES:
        raise FilterError(path, f"more than {MAX_LIST_VALUES} values")
    return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]


def _pair(value: Any, path: str, item: Callable[[Any, str], Any]) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise FilterError(path, "must be a list of two values: [low, high]")
    return item(value[0], f"{path}[0]"), item(value[1], f"{path}[1]")


def compile_filter(node: Any, first_param: int = 1) -> Compiled:
    """Compile a filter to a SQL boolean expression with ``$first_param...`` placeholders."""
    compiler = _Compiler(first_param)
    sql = compiler.node(node, "filter", 1)
    return Compiled(sql, compiler.params)
