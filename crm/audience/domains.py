"""Company domains: one canonical form for matching accounts and domain sets.

``https://WWW.Sales.Acme.co.uk:8080/about`` becomes ``sales.acme.co.uk`` with registrable domain
``acme.co.uk``. Internationalised names are stored as punycode (IDNA 2008 with UTS 46 mapping). The
registrable domain comes from the Public Suffix List bundled with ``publicsuffixlist``: no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import idna
from publicsuffixlist import PublicSuffixList

_PSL = PublicSuffixList()
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
#: Two or more labels as _LABEL describes: the common, valid case in one match.
_HOST = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)[a-z0-9-]{1,63}(?<!-)")
MAX_DOMAIN_LENGTH = 253


@dataclass(frozen=True, slots=True)
class Domain:
    """A normalised domain, or the reason the input is not one (``domain`` is then None)."""

    original: str
    domain: str | None
    registrable: str | None
    invalid_reason: str | None = None


def _strip_url(text: str) -> str:
    text = _SCHEME.sub("", text)
    text = text.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    text = text.rsplit("@", 1)[-1]  # userinfo, or an e-mail address given as a domain
    if text.startswith("["):  # IPv6 literal
        return text
    return text.split(":", 1)[0].rstrip(".")


def _invalid(original: str, reason: str) -> Domain:
    return Domain(original, None, None, reason)


@lru_cache(maxsize=65_536)
def normalise_domain(raw: str) -> Domain:
    original = raw
    text = _strip_url(raw.strip().lower())
    if not text:
        return _invalid(original, "empty")
    if text.startswith("www."):
        text = text[4:]
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            return _invalid(original, f"not a valid internationalised domain: {exc}")
    registrable, reason = check_host(text)
    if registrable is None:
        return _invalid(original, reason or "not a domain")
    return Domain(original, text, registrable)


@lru_cache(maxsize=131_072)
def check_host(host: str) -> tuple[str, None] | tuple[None, str]:
    """A lower-case ASCII host name's registrable domain, or the reason it is not a company domain.

    Cached apart from the raw text: a file names each company's domain in several spellings (URLs, "www.")
    and every contact's e-mail repeats it, so this runs once per company while the raw forms vary.
    """
    if len(host) > MAX_DOMAIN_LENGTH:
        return None, f"longer than {MAX_DOMAIN_LENGTH} characters"
    labels = host.split(".")
    if not _HOST.fullmatch(host):
        if len(labels) < 2:
            return None, "has no top-level domain"
        bad = next((label for label in labels if not _LABEL.match(label)), "")
        return None, f"label {bad!r} is not a valid host name label" if bad else "has an empty label"
    if labels[-1].isdigit():
        return None, "is an IP address, not a domain"
    registrable = _PSL.privatesuffix(host, accept_unknown=False)
    if registrable is not None:
        return registrable, None
    if _PSL.publicsuffix(host, accept_unknown=False) is None:
        return None, f"unknown top-level domain .{labels[-1]}"
    return None, "is a public suffix, not a company domain"
