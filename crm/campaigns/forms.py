"""Qualification forms: typed fields, and the validation of an agent's answers against them. Pure.

A form is an ordered list of fields. Each has a ``key`` (how answers and merge fields name it), a label, a
``type``, ``required``, and per type: ``options`` (select, multiselect), ``min``/``max`` (number, integer: the
value; text: the length), ``max_length``. No free regular expressions: a pattern typed into a CRM screen is a
denial-of-service waiting to happen, and the types cover what forms ask (e-mail, phone, date, url).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm.audience.emails import normalise_email
from crm.audience.phones import normalise_phone

FieldType = Literal["text", "textarea", "integer", "number", "boolean", "select", "multiselect", "date", "email",
                    "phone", "url"]  # fmt: skip
KEY = r"^[a-z][a-z0-9_]{0,62}$"
MAX_TEXT = 10_000
MAX_NUMBER = 1e15


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: str = Field(min_length=1, max_length=200)
    label: str = Field(min_length=1, max_length=200)


class FormField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=KEY)
    label: str = Field(min_length=1, max_length=200)
    type: FieldType
    required: bool = False
    help: str = Field("", max_length=1000)
    options: list[Option] = Field(default_factory=list, max_length=200)
    min: float | None = None
    max: float | None = None
    max_length: int | None = Field(None, ge=1, le=MAX_TEXT)

    @model_validator(mode="after")
    def _consistent(self) -> FormField:
        if self.type in ("select", "multiselect"):
            if not self.options:
                raise ValueError(f"{self.key}: a {self.type} field needs options")
            values = [option.value for option in self.options]
            if len(set(values)) != len(values):
                raise ValueError(f"{self.key}: option values repeat")
        elif self.options:
            raise ValueError(f"{self.key}: only select and multiselect fields have options")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{self.key}: min and max must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"{self.key}: min is above max")
        return self


class FormDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fields: list[FormField] = Field(max_length=100)

    @model_validator(mode="after")
    def _unique_keys(self) -> FormDefinition:
        keys = [f.key for f in self.fields]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"field keys repeat: {', '.join(repeated)}")
        return self


class AnswerError(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


def validate_answers(fields: list[FormField], answers: dict[str, Any], *, require: bool = True) -> dict[str, Any]:
    """The answers, cleaned (numbers as numbers, e-mails and phones normalised, dates ISO); AnswerError lists
    every problem. ``require``: a positive disposition needs the required fields; others may leave them out."""
    errors: list[dict[str, str]] = []
    known = {f.key: f for f in fields}
    errors += [{"field": key, "message": "not a field of this form"} for key in answers if key not in known]
    clean: dict[str, Any] = {}
    for f in fields:
        value = answers.get(f.key)
        if value is None or (isinstance(value, str) and not value.strip()) or value == []:
            if f.required and require:
                errors.append({"field": f.key, "message": "required"})
            continue
        try:
            clean[f.key] = _clean(f, value)
        except ValueError as exc:
            errors.append({"field": f.key, "message": str(exc)})
    if errors:
        raise AnswerError(errors)
    return clean


def _clean(f: FormField, value: Any) -> Any:
    kind = f.type
    if kind in ("text", "textarea", "url"):
        if not isinstance(value, str):
            raise ValueError("must be text")
        text = value.strip()
        limit = f.max_length or (200 if kind == "text" else MAX_TEXT)
        if len(text) > limit or (f.max is not None and len(text) > f.max):
            raise ValueError(f"at most {min(limit, int(f.max or limit))} characters")
        if f.min is not None and len(text) < f.min:
            raise ValueError(f"at least {int(f.min)} characters")
        if kind == "url" and not text.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http(s) address")
        return text
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if abs(value) > MAX_NUMBER:
            raise ValueError(f"at most {MAX_NUMBER:g} in size")
        if kind == "integer" and (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be a whole number")
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if f.min is not None and value < f.min:
            raise ValueError(f"at least {f.min:g}")
        if f.max is not None and value > f.max:
            raise ValueError(f"at most {f.max:g}")
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    allowed = {option.value for option in f.options}
    if kind == "select":
        if not isinstance(value, str) or value not in allowed:
            raise ValueError("not one of the options")
        return value
    if kind == "multiselect":
        if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
            raise ValueError("must be a list of the options")
        return sorted(set(value), key=[o.value for o in f.options].index)
    if kind == "date":
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("must be a date, YYYY-MM-DD") from None
    if kind == "email":
        if not isinstance(value, str) or len(value) > 320:
            raise ValueError("not an e-mail address")
        email = normalise_email(value)
        if email.email is None:
            raise ValueError(f"not an e-mail address: {email.invalid_reason}")
        return email.email
    if not isinstance(value, str) or len(value) > 40:  # kind == "phone"
        raise ValueError("not a phone number")
    phone = normalise_phone(value, None)
    if phone.e164 is None:
        raise ValueError(f"not a phone number in international form (+...): {phone.invalid_reason}")
    return phone.e164
