"""Which CSV column feeds which field: suggested from the header, or given explicitly.

A mapping is ``{"<column header>": "<field>" | null}``. Fields are the names in :data:`FIELDS`, or
``custom.<name>`` (a contact custom field) or ``account.custom.<name>`` (an account custom field).
Unmapped columns are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

#: field -> what it is. Contact fields first, then the account the contact belongs to.
FIELDS: dict[str, str] = {
    "email": "contact e-mail address",
    "phone": "contact phone number (any format; extension allowed)",
    "first_name": "contact first name",
    "last_name": "contact last name",
    "full_name": "contact full name, split into first and last at the first space",
    "job_title": "contact job title",
    "country": "contact country (ISO 3166 alpha-2); also the region for numbers without country code",
    "timezone": "contact IANA time zone",
    "account.name": "company name",
    "account.domain": "company website or domain",
    "account.phone": "company main line",
    "account.country": "company country (ISO 3166 alpha-2)",
    "account.industry": "company industry",
    "account.employee_count": "company head count",
}

_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "e-mail", "emailaddress", "mail", "workemail", "businessemail", "contactemail"),
    "phone": (
        "phone",
        "phonenumber",
        "telephone",
        "tel",
        "directdial",
        "directphone",
        "mobile",
        "cell",
        "workphone",
        "contactphone",
        "phone1",
    ),
    "first_name": ("firstname", "first", "givenname", "forename"),
    "last_name": ("lastname", "last", "surname", "familyname"),
    "full_name": ("name", "fullname", "contactname", "contact"),
    "job_title": ("title", "jobtitle", "position", "role", "designation"),
    "country": ("country", "countrycode", "contactcountry"),
    "timezone": ("timezone", "tz", "time zone"),
    "account.name": ("company", "companyname", "account", "accountname", "organisation", "organization", "employer"),
    "account.domain": ("website", "domain", "companydomain", "companywebsite", "url", "web", "site", "homepage"),
    "account.phone": ("companyphone", "mainphone", "switchboard", "mainline", "hqphone", "officephone"),
    "account.country": ("companycountry", "hqcountry", "accountcountry"),
    "account.industry": ("industry", "sector", "vertical"),
    "account.employee_count": ("employees", "employeecount", "headcount", "companysize", "numberofemployees"),
}
_BY_ALIAS = {alias: field for field, aliases in _ALIASES.items() for alias in aliases}
_CUSTOM = re.compile(r"^(account\.)?custom\.[a-z][a-z0-9_]{0,62}$")


class MappingError(ValueError):
    """The mapping names a column the file lacks, an unknown field, or one field twice."""


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def suggest_mapping(header: Sequence[str]) -> dict[str, str | None]:
    """A field for each column whose header is a known alias; each field used once, first column wins."""
    used: set[str] = set()
    mapping: dict[str, str | None] = {}
    for column in header:
        field = _BY_ALIAS.get(_key(column))
        if field in used:
            field = None
        if field is not None:
            used.add(field)
        mapping[column] = field
    return mapping


def is_field(name: str) -> bool:
    return name in FIELDS or bool(_CUSTOM.match(name))


def validate_mapping(mapping: Mapping[str, str | None], header: Sequence[str]) -> dict[int, str]:
    """Check an explicit mapping against the header; return ``{column index: field}`` for mapped columns."""
    positions = {name: i for i, name in reversed(list(enumerate(header)))}
    by_index: dict[int, str] = {}
    seen: dict[str, str] = {}
    for column, field in mapping.items():
        if column not in positions:
            raise MappingError(f"column {column!r} is not in the file's header")
        if field is None:
            continue
        if not is_field(field):
            raise MappingError(f"column {column!r}: {field!r} is not a field (see FIELDS, custom.<name>)")
        if field in seen:
            raise MappingError(f"field {field!r} is mapped from both {seen[field]!r} and {column!r}")
        seen[field] = column
        by_index[positions[column]] = field
    if not {"email", "phone"} & seen.keys():
        raise MappingError("map at least one of email or phone: a contact needs one to be identified")
    return by_index
