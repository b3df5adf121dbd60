"""One CSV row to one staged contact (with its account), or the reasons it cannot be imported. Pure.

A row is imported when it identifies a contact: a valid e-mail address, else a valid phone number. An
invalid e-mail or phone beside a valid identity is kept on the record with its reason (never dropped);
a value that does not fit its field (an unknown country code, time zone or a non-numeric head count)
rejects the row, naming the column, so nothing is stored half-understood.
"""

from __future__ import annotations

import operator
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from crm.audience.domains import normalise_domain
from crm.audience.emails import normalise_email
from crm.audience.phones import Phone, normalise_phone

#: Column order of the staging table; StagedRow.as_record() follows it.
STAGING_COLUMNS = (
    "line", "email", "email_original", "email_invalid", "phone", "phone_ext", "phone_original", "phone_country",
    "phone_line_type", "phone_invalid", "first_name", "last_name", "job_title", "country", "timezone", "custom",
    "acc_key", "acc_name", "acc_domain", "acc_registrable", "acc_phone", "acc_country", "acc_industry",
    "acc_employees", "acc_custom",
)  # fmt: skip

MAX_TEXT = 500
#: Countries libphonenumber knows: every ISO 3166 alpha-2 code in use.
COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    column: str | None
    value: str | None
    reason: str


@dataclass(slots=True)
class StagedRow:
    line: int
    email: str | None = None
    email_original: str | None = None
    email_invalid: str | None = None
    phone: str | None = None
    phone_ext: str | None = None
    phone_original: str | None = None
    phone_country: str | None = None
    phone_line_type: str | None = None
    phone_invalid: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    job_title: str | None = None
    country: str | None = None
    timezone: str | None = None
    custom: dict[str, str] | None = None
    acc_key: str | None = None
    acc_name: str | None = None
    acc_domain: str | None = None
    acc_registrable: str | None = None
    acc_phone: str | None = None
    acc_country: str | None = None
    acc_industry: str | None = None
    acc_employees: int | None = None
    acc_custom: dict[str, str] | None = None

    def as_record(self) -> tuple[object, ...]:
        record: tuple[object, ...] = _RECORD(self)
        return record


_RECORD = operator.attrgetter(*STAGING_COLUMNS)


@lru_cache(maxsize=1024)
def known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=16_384)
def _phone(raw: str, region: str | None) -> Phone:
    # Switchboard and shared office numbers repeat within a file; parsing costs ~35 us, a hit ~0.1 us. Kept
    # small: most numbers in a file are unique.
    return normalise_phone(raw, region)


class RowNormaliser:
    """Turns raw rows into staged rows for one mapping; picklable so batches can run in worker processes."""

    def __init__(self, fields_by_index: Mapping[int, str], header: Sequence[str], default_region: str) -> None:
        self.fields = dict(fields_by_index)
        self.columns = {field: header[index] for index, field in self.fields.items()}
        self.width = len(header)
        self.default_region = default_region
        self.custom = {f: f.removeprefix("custom.") for f in self.fields.values() if f.startswith("custom.")}
        self.account_custom = {
            f: f.removeprefix("account.custom.") for f in self.fields.values() if f.startswith("account.custom.")
        }

    def normalise(self, line: int, values: Sequence[str]) -> StagedRow | list[Reject]:
        if len(values) != self.width:
            return [Reject(line, None, None, f"has {len(values)} fields, the header has {self.width}")]
        raw = {field: values[index].strip() for index, field in self.fields.items()}
        raw = {field: value for field, value in raw.items() if value}
        row = StagedRow(line)
        rejects: list[Reject] = []

        def reject(field: str, reason: str) -> None:
            rejects.append(Reject(line, self.columns[field], raw.get(field), reason))

        for field in ("first_name", "last_name", "job_title", "account.name", "account.industry"):
            if len(raw.get(field, "")) > MAX_TEXT:
                reject(field, f"longer than {MAX_TEXT} characters")
        if "full_name" in raw and not ("first_name" in raw or "last_name" in raw):
            first, _, last = raw["full_name"].partition(" ")
            raw["first_name"], raw["last_name"] = first, last.strip()
        row.first_name = raw.get("first_name")
        row.last_name = raw.get("last_name")
        row.job_title = raw.get("job_title")

        for field, target in (("country", "country"), ("account.country", "acc_country")):
            if field in raw:
                code = raw[field].upper()
                if code not in COUNTRIES:
                    reject(field, "not an ISO 3166 alpha-2 country code")
                setattr(row, target, code)
        if "timezone" in raw:
            if known_zone(raw["timezone"]):
                row.timezone = raw["timezone"]
            else:
                reject("timezone", "not an IANA time zone")

        region = row.country or row.acc_country or self.default_region
        if "email" in raw:
            email = normalise_email(raw["email"])
            row.email, row.email_original, row.email_invalid = email.email, email.original, email.invalid_reason
        if "phone" in raw:
            phone = _phone(raw["phone"], region)
            row.phone, row.phone_ext, row.phone_original = phone.e164, phone.extension, phone.original
            row.phone_country, row.phone_line_type, row.phone_invalid = (
                phone.country,
                phone.line_type,
                phone.invalid_reason,
            )
        if row.email is None and row.phone is None:
            reasons = [
                f"{kind}: {why}" for kind, why in (("email", row.email_invalid), ("phone", row.phone_invalid)) if why
            ]
            rejects.append(
                Reject(
                    line,
                    None,
                    None,
                    "no valid e-mail or phone to identify the contact"
                    + (f" ({'; '.join(reasons)})" if reasons else ""),
                )
            )

        self._account(raw, row, region, reject)
        row.custom = _pick(raw, self.custom)
        row.acc_custom = _pick(raw, self.account_custom)
        return rejects if rejects else row

    def _account(self, raw: dict[str, str], row: StagedRow, region: str, reject: Callable[[str, str], None]) -> None:
        if "account.domain" in raw:
            domain = normalise_domain(raw["account.domain"])
            if domain.domain is None:
                reject("account.domain", f"not a company domain: {domain.invalid_reason}")
            row.acc_domain, row.acc_registrable = domain.domain, domain.registrable
        row.acc_name = raw.get("account.name")
        row.acc_industry = raw.get("account.industry")
        if "account.employee_count" in raw:
            count = raw["account.employee_count"].replace(",", "").replace("_", "")
            if count.isascii() and count.isdigit() and len(count) < 10:
                row.acc_employees = int(count)
            else:
                reject("account.employee_count", "not a whole number")
        if "account.phone" in raw:
            phone = _phone(raw["account.phone"], row.acc_country or region)
            if phone.e164 is None:
                reject("account.phone", f"not a phone number: {phone.invalid_reason}")
            row.acc_phone = phone.e164
        if row.acc_domain is not None:
            row.acc_key = "d:" + row.acc_domain  # name-only keys are folded in SQL (merge_sql.FOLD_NAME)


def _pick(raw: dict[str, str], names: dict[str, str]) -> dict[str, str] | None:
    """The custom fields present in this row, under their own names."""
    if not names:
        return None
    return {name: raw[field] for field, name in names.items() if field in raw} or None
