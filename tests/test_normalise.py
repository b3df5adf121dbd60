"""Normalisation of phones, e-mails and company domains: parameter tables, no I/O."""

from __future__ import annotations

import phonenumbers
import pytest

from crm.audience.domains import normalise_domain
from crm.audience.emails import normalise_email
from crm.audience.phones import LINE_TYPES, normalise_phone


@pytest.mark.parametrize(
    ("raw", "region", "e164", "country", "line_type", "extension"),
    [
        ("+44 20 7946 0958", None, "+442079460958", "GB", "fixed_line", None),
        ("020 7946 0958", "GB", "+442079460958", "GB", "fixed_line", None),
        ("07712 345678", "GB", "+447712345678", "GB", "mobile", None),
        ("(212) 555-0100", "US", "+12125550100", "US", "fixed_line_or_mobile", None),
        ("(415) 692-7213", "US", "+14156927213", "US", "fixed_line_or_mobile", None),
        ("415.692.7213 ext. 42", "US", "+14156927213", "US", "fixed_line_or_mobile", "42"),
        ("+1 415 692 7213 x7", "GB", "+14156927213", "US", "fixed_line_or_mobile", "7"),
        ("001 415 692 7213", "GB", "+14156927213", "US", "fixed_line_or_mobile", None),
        ("+33 1 23 45 67 89", "US", "+33123456789", "FR", "fixed_line", None),
        ("+49 30 901820", None, "+4930901820", "DE", "fixed_line", None),
        ("+800 1234 5678", None, "+80012345678", None, "toll_free", None),
    ],
)
def test_valid_phones(
    raw: str, region: str | None, e164: str | None, country: str | None, line_type: str | None, extension: str | None
) -> None:
    """Numbers in national, international and punctuated forms all reach the same E.164."""
    phone = normalise_phone(raw, region)
    assert phone.original == raw
    assert phone.e164 == e164
    if e164 is not None:
        assert (phone.country, phone.line_type, phone.extension) == (country, line_type, extension)
        assert phone.invalid_reason is None
    else:
        assert phone.invalid_reason


@pytest.mark.parametrize(
    "raw",
    [
        "+1 416 555 0199",  # Canada shares +1 with the US: found only by pattern matching
        "+1 204 234 5678",
        "+1 876 927 1234",  # Jamaica
        "+1 212 555 0100",
        "+1 800 555 0100",
        "+44 1534 456789",  # Jersey shares +44 with the UK
        "+44 1624 456789",  # Isle of Man
        "+44 7700 900123",
        "+44 20 7946 0958",
        "+7 495 123 45 67",  # Russia and Kazakhstan share +7
        "+7 7172 123456",
        "+800 1234 5678",
        "+1 999 555 0100",
    ],
)
def test_line_type_agrees_with_the_public_api(raw: str) -> None:
    """The import's fast path (the region found once) gives what phonenumbers.number_type() gives."""
    number = phonenumbers.parse(raw, None)
    phone = normalise_phone(raw, None)
    expected = phonenumbers.number_type(number)
    assert phone.line_type == LINE_TYPES.get(expected, "unknown")
    assert (phone.e164 is None) == (expected == phonenumbers.PhoneNumberType.UNKNOWN)
    if phone.e164 is not None and phone.country is not None:
        assert phone.country == phonenumbers.region_code_for_number(number)


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "US", "empty"),
        ("   ", "US", "empty"),
        ("n/a", "US", "not a phone number"),
        ("020 7946 0958", None, "no country code"),
        ("+44 20 7946", None, "too short"),
        ("07700 900123", "GB", "not a number in use"),  # Ofcom's range reserved for drama
        ("+1 999 555 0100", None, "not a number in use"),
        ("12", "US", "too short"),
        ("+44 20 7946 0958 1234 5678 9012", None, "too long"),
    ],
)
def test_invalid_phones_keep_a_reason(raw: str, region: str | None, reason: str) -> None:
    """An invalid number is kept with a reason, never silently dropped or half-normalised."""
    phone = normalise_phone(raw, region)
    assert phone.e164 is None
    assert phone.invalid_reason is not None
    assert reason in phone.invalid_reason
    assert phone.original == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.COM ", "Jane.Doe@example.com"),
        ("mailto:bob@acme.co.uk", "bob@acme.co.uk"),
        ("<bob+news@ACME.io>", "bob+news@acme.io"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("user@www.example.com", "user@www.example.com"),
        ("user@sub.example.com.", "user@sub.example.com"),
    ],
)
def test_valid_emails(raw: str, expected: str) -> None:
    """Trimmed, domain lower-cased and punycoded, local part kept as written."""
    email = normalise_email(raw)
    assert email.email == expected
    assert email.invalid_reason is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "has no @"),
        ("jane.example.com", "has no @"),
        ("@example.com", "nothing before the @"),
        ("jane..doe@example.com", "local part"),
        (".jane@example.com", "local part"),
        ("jane doe@example.com", "local part"),
        ('"jane doe"@example.com', "quoted local parts"),
        ("jane@localhost", "domain has no top-level domain"),
        ("jane@example.invalidtld", "domain unknown top-level domain"),
        ("jane@exa_mple.com", "domain part is not a host name"),
        ("jane@example.com:25", "domain part is not a host name"),
        ("a" * 65 + "@example.com", "local part longer than 64"),
        ("jane@co.uk", "public suffix"),
        ("d@y.com?q", "domain part is not a host name"),
        ("d@y.com#frag", "domain part is not a host name"),
    ],
)
def test_invalid_emails_keep_a_reason(raw: str, reason: str) -> None:
    """Each refusal says why."""
    email = normalise_email(raw)
    assert email.email is None
    assert email.invalid_reason is not None
    assert reason in email.invalid_reason


@pytest.mark.parametrize(
    ("raw", "domain", "registrable"),
    [
        ("acme.com", "acme.com", "acme.com"),
        ("https://WWW.Acme.com/about?x=1#top", "acme.com", "acme.com"),
        ("http://sales.acme.co.uk:8080/", "sales.acme.co.uk", "acme.co.uk"),
        ("www.acme.co.uk.", "acme.co.uk", "acme.co.uk"),
        ("ftp://user:pw@files.acme.de/x", "files.acme.de", "acme.de"),
        ("Bücher.de", "xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("jane@acme.io", "acme.io", "acme.io"),
        ("  ACME.COM  ", "acme.com", "acme.com"),
    ],
)
def test_valid_domains(raw: str, domain: str, registrable: str) -> None:
    """Scheme, www., path, port, userinfo stripped; IDN to punycode; registrable domain from the PSL."""
    result = normalise_domain(raw)
    assert (result.domain, result.registrable, result.invalid_reason) == (domain, registrable, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("localhost", "no top-level domain"),
        ("co.uk", "public suffix"),
        ("acme.notatld", "unknown top-level domain"),
        ("192.168.0.1", "IP address"),
        ("-acme.com", "label"),
        ("ac me.com", "label"),
        ("acme..com", "empty label"),
        ("a" * 64 + ".com", "label"),
    ],
)
def test_invalid_domains_keep_a_reason(raw: str, reason: str) -> None:
    """Each refusal says why."""
    result = normalise_domain(raw)
    assert result.domain is None
    assert result.invalid_reason is not None
    assert reason in result.invalid_reason
