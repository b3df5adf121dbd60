"""The pre-flight checklist of an e-mail campaign. Pure: the caller loads the facts, this judges them.

Sending is refused while a blocking item fails; each failure names what to fix. The items: a sender profile
that is active and has a postal address; the sender domain's SPF, DKIM and DMARC recorded as valid; a tracking
domain; the suppression list current on this node; an audience with addresses; variants whose shares add up to
100 and that compile; in every variant an unsubscribe link and the postal address, well-formed links, HTML under
100 KB; the A/B test's settings consistent; and a test send made after the last change of the content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

from crm.campaigns.lifecycle import Item
from dispatch.templates import MAX_HTML_BYTES, CompiledVariant, MissingPolicy, TemplateProblem

_USES_UNSUBSCRIBE = re.compile(r"\{\{-?\s*unsubscribe_url\b")
_USES_POSTAL = re.compile(r"\{\{-?\s*postal_address\b")
_HREF = re.compile(r"""\bhref\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
_MERGE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


@dataclass(frozen=True)
class VariantFacts:
    key: str
    subject: str
    preheader: str
    html_body: str
    text_body: str
    split_share: Decimal
    updated_at: datetime


@dataclass(frozen=True)
class EmailReadiness:
    """What the checklist looks at, loaded by the caller."""

    sender_profile_active: bool  # set, not deleted, active
    postal_address: str  # the sender profile's
    from_domain: str | None
    domain_records: tuple[str, str, str] | None  # (spf, dkim, dmarc) as recorded; None: the domain is not recorded
    tracking_domain: str | None  # the campaign's, or the default one
    suppressions_current: bool
    audience_rules: int  # include rules
    audience_size: int  # contacts the audience selects that have an address
    variants: tuple[VariantFacts, ...]
    test_sent_at: datetime | None
    missing_fields: MissingPolicy = "error"
    ab_winner_criterion: str | None = None
    ab_test_share: Decimal | None = None
    ab_decide_after_minutes: int | None = None


def link_problems(html_body: str) -> list[str]:
    """The hrefs that are not well-formed URLs (those built by merge fields are judged once rendered)."""
    problems = []
    for _, href in _HREF.findall(html_body):
        href = href.strip()
        if not href or href.startswith("#") or _MERGE.search(href):
            continue
        parts = urlsplit(href)
        scheme = parts.scheme.lower()
        if scheme in ("mailto", "tel"):
            ok = bool(parts.path)
        elif scheme in ("http", "https"):
            ok = bool(parts.hostname) and "." in (parts.hostname or "") and not re.search(r"\s", href)
        else:
            ok = False
        if not ok:
            problems.append(href[:80])
    return problems


def _variant_items(r: EmailReadiness) -> list[Item]:
    compile_errors, no_unsubscribe, no_postal, bad_links, too_big = [], [], [], [], []
    for v in r.variants:
        try:
            CompiledVariant(v.subject, v.preheader, v.html_body, v.text_body, missing=r.missing_fields)
        except TemplateProblem as exc:
            compile_errors.append(f"{v.key}: {exc}")
        if not _USES_UNSUBSCRIBE.search(v.html_body) or (v.text_body.strip()
                                                         and not _USES_UNSUBSCRIBE.search(v.text_body)):  # fmt: skip
            no_unsubscribe.append(v.key)
        if not _USES_POSTAL.search(v.html_body) and (not r.postal_address or r.postal_address not in v.html_body):
            no_postal.append(v.key)
        bad_links += [f"{v.key}: {href}" for href in link_problems(v.html_body)]
        if len(v.html_body.encode("utf-8")) > MAX_HTML_BYTES:
            too_big.append(v.key)
    return [
        Item("templates", not compile_errors,
             "; ".join(compile_errors) if compile_errors else "every variant compiles"),
        Item("unsubscribe_link", not no_unsubscribe,
             f"variant {', '.join(no_unsubscribe)}: put {{{{ unsubscribe_url }}}} in the HTML (and in a text part "
             "you wrote)" if no_unsubscribe else "every variant has an unsubscribe link"),
        Item("postal_address", bool(r.postal_address) and not no_postal,
             "the sender profile has no postal address" if not r.postal_address else
             f"variant {', '.join(no_postal)}: put {{{{ postal_address }}}} in the HTML" if no_postal else
             "every variant shows the sender's postal address"),
        Item("links", not bad_links,
             f"malformed links: {'; '.join(bad_links[:5])}" if bad_links else "every link is well-formed"),
        Item("html_size", not too_big,
             f"variant {', '.join(too_big)}: the HTML is over {MAX_HTML_BYTES // 1024} KB" if too_big else
             f"every HTML part is under {MAX_HTML_BYTES // 1024} KB"),
    ]  # fmt: skip


def _ab_item(r: EmailReadiness) -> Item:
    live = [v for v in r.variants if v.split_share > 0]
    if len(live) < 2:
        return Item("ab_test", True, "no A/B test (one variant)", blocking=False)
    if r.ab_winner_criterion is None:
        return Item("ab_test", False, "several variants: set ab_winner_criterion (open_rate, click_rate or manual)")
    if r.ab_test_share is not None and r.ab_winner_criterion != "manual" and r.ab_decide_after_minutes is None:
        return Item("ab_test", False, "a test cohort needs ab_decide_after_minutes: when to choose the winner")
    cohort = f"{r.ab_test_share}% of the audience first" if r.ab_test_share is not None else "the whole audience"
    return Item("ab_test", True, f"A/B test of {len(live)} variants on {cohort}, by {r.ab_winner_criterion}")


def checklist(r: EmailReadiness) -> list[Item]:
    """Every item, passing or not, in the order a manager fixes them."""
    records = r.domain_records
    auth_ok = records is not None and all(status == "valid" for status in records)
    if records is None:
        auth = f"record the sender domain {r.from_domain} (POST /api/email-domains)" if r.from_domain else \
            "choose a sender profile first"  # fmt: skip
    else:
        failing = [f"{name} {status}" for name, status in zip(("SPF", "DKIM", "DMARC"), records, strict=True)
                   if status != "valid"]  # fmt: skip
        auth = f"{r.from_domain}: {', '.join(failing)}" if failing else f"{r.from_domain}: SPF, DKIM, DMARC valid"
    total = sum((v.split_share for v in r.variants), Decimal(0))
    latest_change = max((v.updated_at for v in r.variants), default=None)
    tested = r.test_sent_at is not None and (latest_change is None or r.test_sent_at >= latest_change)
    return [
        Item("sender_profile", r.sender_profile_active,
             "the sender profile is active" if r.sender_profile_active else "choose an active sender profile"),
        Item("sender_domain_auth", auth_ok, auth),
        Item("tracking_domain", r.tracking_domain is not None,
             f"links go through {r.tracking_domain}" if r.tracking_domain else
             "set the campaign's tracking_domain_id, or make a tracking domain the default"),
        Item("suppressions", r.suppressions_current,
             "suppressions are loaded and current; every recipient is checked at send time"
             if r.suppressions_current else "the suppression list is not current on this node; wait and retry"),
        Item("audience", r.audience_rules > 0 and r.audience_size > 0,
             f"{r.audience_size} contacts with an address" if r.audience_rules else "include a list or segment"),
        Item("variants", bool(r.variants) and total == 100,
             "add a variant" if not r.variants else
             f"split shares add up to {total}, not 100" if total != 100 else f"{len(r.variants)} variant(s)"),
        *_variant_items(r),
        _ab_item(r),
        Item("test_send", tested,
             "a test send was made after the last change" if tested else
             "send a test (POST /api/email-campaigns/{id}/test-send) after the last change of the content"),
    ]  # fmt: skip
