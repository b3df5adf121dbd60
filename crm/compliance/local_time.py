"""Where a contact's local time comes from: the candidate time zones and which fact gave them.

Order (issue 4): the contact's own zone; else the account's office zone, else the office country's zones;
else the zones of the phone number (libphonenumber's prefix data: an area code can span zones, a toll-free or
mobile number maps to its whole country); else the contact's country; else the campaign's fallback zone.
Several zones mean "somewhere among these": the window must hold in all of them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import phonenumbers
from phonenumbers import timezone as phone_timezones

UNKNOWN_ZONE = "Etc/Unknown"  # libphonenumber's "no idea"


@dataclass(frozen=True, slots=True)
class LocalZones:
    zones: tuple[str, ...]
    #: contact, account_office, account_country, phone_number, contact_country, campaign_fallback, unknown
    source: str


def _zone_table() -> str:
    """tzdata's zone.tab (country code, coordinates, zone): from the tzdata package, else the system's."""
    try:
        return resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return Path("/usr/share/zoneinfo/zone.tab").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _zones_by_country() -> dict[str, tuple[str, ...]]:
    table: defaultdict[str, list[str]] = defaultdict(list)
    for line in _zone_table().splitlines():
        if line and not line.startswith("#"):
            country, _, name = line.split("\t")[:3]
            table[country].append(name)
    return {country: tuple(sorted(names)) for country, names in table.items()}


def zones_of_country(country: str) -> tuple[str, ...]:
    """IANA zones in use in an ISO 3166 country (empty for an unknown code)."""
    return _zones_by_country().get(country.upper(), ())


@lru_cache(maxsize=65_536)
def zones_of_number(e164: str) -> tuple[str, ...]:
    """Candidate zones of a phone number; its country's zones when the prefix data does not say."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(name for name in phone_timezones.time_zones_for_number(number) if name != UNKNOWN_ZONE)
    if zones:
        return tuple(sorted(_canonical(name) for name in zones))
    region = phonenumbers.region_code_for_number(number)
    return zones_of_country(region) if region else ()


# libphonenumber still uses a few old names; tzdata keeps them as links, but reports read better canonical.
_RENAMED = {"Asia/Calcutta": "Asia/Kolkata", "Asia/Katmandu": "Asia/Kathmandu", "Asia/Saigon": "Asia/Ho_Chi_Minh"}


def _canonical(name: str) -> str:
    return _RENAMED.get(name, name)


def local_zones(
    *,
    contact_zone: str | None = None,
    office_zone: str | None = None,
    office_country: str | None = None,
    phone_e164: str | None = None,
    contact_country: str | None = None,
    fallback_zone: str | None = None,
) -> LocalZones:
    if contact_zone:
        return LocalZones((contact_zone,), "contact")
    if office_zone:
        return LocalZones((office_zone,), "account_office")
    if office_country and (zones := zones_of_country(office_country)):
        return LocalZones(zones, "account_country")
    if phone_e164 and (zones := zones_of_number(phone_e164)):
        return LocalZones(zones, "phone_number")
    if contact_country and (zones := zones_of_country(contact_country)):
        return LocalZones(zones, "contact_country")
    if fallback_zone:
        return LocalZones((fallback_zone,), "campaign_fallback")
    return LocalZones((), "unknown")
