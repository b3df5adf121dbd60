"""E-mail addresses: trimmed, domain lower-cased (and punycoded), syntax checked.

The check is the dot-atom form of RFC 5322 that real mailboxes use; quoted local parts and address
literals are refused as unsupported rather than guessed at. It is a hand-written pattern, not a library,
because an import validates a million addresses and this costs about a microsecond each. The local part
keeps its case (RFC 5321 lets servers treat it as case-sensitive); identity comparisons use
``lower(email)`` because no real mail system does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

from crm.audience.domains import check_host

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
#: Letters (any script), digits, dots and hyphens: what a host name, IDNs included, is written with.
_HOST_CHARACTERS = re.compile(r"(?:[^\W_]|[.-])+")
MAX_LOCAL_LENGTH = 64
MAX_ADDRESS_LENGTH = 254


@dataclass(frozen=True, slots=True)
class Email:
    """A normalised address, or the reason the input is not one (``email`` is then None)."""

    original: str
    email: str | None
    invalid_reason: str | None = None


def normalise_email(raw: str) -> Email:
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    local, at, domain_part = text.rpartition("@")
    if not at:
        return Email(raw, None, "has no @")
    if not local:
        return Email(raw, None, "has nothing before the @")
    if local.startswith('"'):
        return Email(raw, None, "quoted local parts are not supported")
    if len(local) > MAX_LOCAL_LENGTH:
        return Email(raw, None, f"local part longer than {MAX_LOCAL_LENGTH} characters")
    if not _LOCAL.match(local):
        return Email(raw, None, "local part has characters or dots not allowed in an address")
    if not _HOST_CHARACTERS.fullmatch(domain_part):
        return Email(raw, None, "domain part is not a host name")
    # The host as written (lower case, punycode), not stripped of "www." as a company domain would be.
    host = domain_part.lower().rstrip(".")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            return Email(raw, None, f"domain not a valid internationalised domain: {exc}")
    _, reason = check_host(host.removeprefix("www."))
    if reason is not None:
        return Email(raw, None, f"domain {reason}")
    address = f"{local}@{host}"
    if len(address) > MAX_ADDRESS_LENGTH:
        return Email(raw, None, f"longer than {MAX_ADDRESS_LENGTH} characters")
    return Email(raw, address)
