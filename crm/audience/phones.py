"""Phone numbers to E.164 with ``phonenumbers`` (Google's libphonenumber metadata).

A number written without a country code is read in the default region (settings) or, when known, the
contact's or account's country. The original text is kept; the line type is recorded where the metadata
knows it. Extensions ("x12", "ext. 12") are split off, never dialled as part of the number.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType, ValidationResult, phonenumberutil

#: phonenumbers' types, named as the schema's phone_line_type enum.
LINE_TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

NON_GEOGRAPHIC = "001"

# Keep phonenumbers' compiled metadata patterns: by default it recompiles whenever they fall out of the re
# module's 512-entry cache, which a mixed-country import does constantly (~12% of its phone work).
phonenumbers.enable_pattern_cache()

_LENGTH_REASONS = {
    ValidationResult.TOO_SHORT: "too short for its country",
    ValidationResult.TOO_LONG: "too long for its country",
    ValidationResult.INVALID_LENGTH: "wrong length for its country",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "too short: at most a local number without its area code",
}

_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country code and none assumed for this contact",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


@dataclass(frozen=True, slots=True)
class Phone:
    """A normalised number, or the reason the input is not one (``e164`` is then None)."""

    original: str
    e164: str | None
    country: str | None = None
    line_type: str = "unknown"
    extension: str | None = None
    invalid_reason: str | None = None


# phonenumbers.number_type() finds the number's region again (for +1 and +44 a pattern match per candidate
# region, ~40% of an import's phone work); its helper takes the region's metadata we already know.
_TYPE_HELPER = getattr(phonenumberutil, "_number_type_helper", None)


def _line_type(number: phonenumbers.PhoneNumber, region: str | None) -> int:
    if _TYPE_HELPER is None:  # a phonenumbers release without the helper: the public, slower path
        return int(phonenumbers.number_type(number))
    if region is None or number.country_code is None:  # no region claims the number: not valid
        return PhoneNumberType.UNKNOWN
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(number.country_code, region)
    if metadata is None:
        return PhoneNumberType.UNKNOWN
    return int(_TYPE_HELPER(phonenumbers.national_significant_number(number), metadata))


def normalise_phone(raw: str, region: str | None) -> Phone:
    """``region``: ISO 3166 alpha-2 country assumed for numbers written without a country code."""
    text = raw.strip()
    if not text:
        return Phone(raw, None, invalid_reason="empty")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return Phone(raw, None, invalid_reason=_PARSE_ERRORS.get(exc.error_type, str(exc)))
    # The line type's pattern matching also decides validity (what is_valid_number would repeat).
    country = phonenumbers.region_code_for_number(number)
    kind = _line_type(number, country)
    if country == NON_GEOGRAPHIC:
        country = None  # valid, but belongs to no country (e.g. +800 freephone)
    extension = number.extension or None
    if extension is not None and not extension.isdigit():
        extension = None
    if kind == PhoneNumberType.UNKNOWN:
        length = phonenumbers.is_possible_number_with_reason(number)
        reason = _LENGTH_REASONS.get(length, "not a number in use in its country")
        return Phone(raw, None, country=country, extension=extension, invalid_reason=reason)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(raw, e164, country=country, line_type=LINE_TYPES.get(kind, "unknown"), extension=extension)
