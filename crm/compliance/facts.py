"""Gathering one contact's facts from PostgreSQL and asking the decision function: the API's explanation.

The dialer's hopper gathers the same facts for batches of contacts (issue 6) and calls the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from crm.audience.domains import normalise_domain
from crm.compliance import campaign_rules
from crm.compliance.compact_sets import phone_key, text_key
from crm.compliance.decision import (
    Decision,
    EmailTarget,
    PhoneTarget,
    decide_email,
    decide_phone,
    local_day_start,
)
from crm.compliance.local_time import LocalZones, local_zones
from crm.compliance.rules import AttemptHistory, EmailsSent
from crm.compliance.suppression_index import SuppressionIndex


class ContactNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Explanation:
    channel: str
    decision: Decision
    zones: LocalZones | None
    facts: dict[str, Any]


_OUTCOME = """CASE WHEN abandoned THEN 'abandoned'
                   WHEN amd_result::text LIKE 'machine%' OR state = 'machine' THEN 'machine'
                   WHEN bridged_at IS NOT NULL THEN 'answered'
                   WHEN hangup_cause = 'user_busy' THEN 'busy'
                   WHEN state = 'failed' THEN 'failed'
                   WHEN answered_at IS NULL THEN 'no_answer'
                   ELSE 'dropped' END"""


async def explain(
    pool: asyncpg.Pool, index: SuppressionIndex, contact_id: int, campaign_id: int, now: datetime
) -> Explanation:
    async with pool.acquire() as conn:
        channel, rules = await campaign_rules.load(conn, campaign_id)
        contact = await conn.fetchrow(
            """SELECT c.id, c.email, c.email_invalid_reason, c.phone_e164, c.phone_invalid_reason, c.timezone,
                      c.country, a.id AS account_id, a.domain, a.registrable_domain, a.office_timezone,
                      a.office_country
                 FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id AND a.deleted_at IS NULL
                WHERE c.id = $1 AND c.deleted_at IS NULL""",
            contact_id,
        )
        if contact is None:
            raise ContactNotFound(f"contact {contact_id} does not exist")
        consent = await conn.fetchval(
            """SELECT status::text FROM consents WHERE contact_id = $1 AND channel = $2
                ORDER BY recorded_at DESC, id DESC LIMIT 1""",
            contact_id,
            channel,
        )
        # A company suppression covers its contacts through the account and through their addresses.
        domains = [d for d in (contact["domain"], contact["registrable_domain"]) if d]
        if contact["email"]:
            host = normalise_domain(contact["email"].rsplit("@", 1)[1])
            domains += [d for d in (host.domain, host.registrable) if d]
        domain_keys = tuple(text_key(d) for d in dict.fromkeys(domains))
        facts: dict[str, Any] = {"consent": consent or "unknown"}
        if channel == "phone":
            target = (await phone_targets(conn, campaign_id, [contact_id], now, rules.timezone_fallback))[contact_id]
            number = contact["phone_e164"]
            live = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE to_e164 = $1) AS to_number,
                          count(*) FILTER (WHERE account_id = $2) AS to_account
                     FROM call_attempts WHERE ended_at IS NULL AND (to_e164 = $1 OR account_id = $2)""",
                number,
                contact["account_id"],
            )
            live_numbers = {target.phone_key} if live["to_number"] and target.phone_key is not None else set()
            live_accounts = {contact["account_id"]} if live["to_account"] else set()
            decision = decide_phone(rules.phone(campaign_id), target, index, now, live_numbers, live_accounts)
            facts |= {
                "phone": number,
                "attempts": target.history,
                "calls_in_progress_to_number": live["to_number"],
                "calls_in_progress_to_account": live["to_account"],
            }
            return Explanation(channel, decision, target.zones, facts)
        email = contact["email"]
        sent = await _emails_sent(conn, contact_id, now)
        email_target = EmailTarget(
            contact_id,
            text_key(email.lower()) if email else None,
            contact["email_invalid_reason"],
            domain_keys,
            consent or "unknown",
            sent,
        )
        decision = decide_email(rules.email(campaign_id), email_target, index, now)
        return Explanation(channel, decision, None, facts | {"email": email, "emails_sent": sent})


async def _emails_sent(conn: asyncpg.Connection, contact_id: int, now: datetime) -> EmailsSent:
    """Messages sent to the contact by any campaign in the rolling day, week and month."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE sent_at > $2::timestamptz - interval '1 day') AS day,
                  count(*) FILTER (WHERE sent_at > $2::timestamptz - interval '7 days') AS week,
                  count(*) AS month,
                  min(sent_at) FILTER (WHERE sent_at > $2::timestamptz - interval '1 day') AS oldest_day,
                  min(sent_at) FILTER (WHERE sent_at > $2::timestamptz - interval '7 days') AS oldest_week,
                  min(sent_at) AS oldest_month
             FROM email_messages
            WHERE contact_id = $1 AND sent_at > $2::timestamptz - interval '30 days' AND sent_at <= $2::timestamptz""",
        contact_id,
        now,
    )
    return EmailsSent(row["day"], row["week"], row["month"], row["oldest_day"], row["oldest_week"], row["oldest_month"])


async def phone_targets(
    conn: asyncpg.Connection, campaign_id: int, contact_ids: list[int], now: datetime, fallback_zone: str | None
) -> dict[int, PhoneTarget]:
    """The decision facts of many contacts at once (the hopper's refill; the API's explanation of one): three
    queries whatever the batch size. Contacts that do not exist (or were deleted) are left out."""
    rows = await conn.fetch(
        """SELECT c.id, c.email, c.phone_e164, c.phone_invalid_reason, c.timezone, c.country,
                  a.id AS account_id, a.domain, a.registrable_domain, a.office_timezone, a.office_country,
                  (SELECT status::text FROM consents k WHERE k.contact_id = c.id AND k.channel = 'phone'
                    ORDER BY recorded_at DESC, k.id DESC LIMIT 1) AS consent
             FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id AND a.deleted_at IS NULL
            WHERE c.id = ANY($1::bigint[]) AND c.deleted_at IS NULL""",
        contact_ids,
    )
    zones = {
        row["id"]: local_zones(
            contact_zone=row["timezone"], office_zone=row["office_timezone"], office_country=row["office_country"],
            phone_e164=row["phone_e164"], contact_country=row["country"], fallback_zone=fallback_zone,
        )
        for row in rows
    }  # fmt: skip
    # "Today" is since the earliest local midnight of each contact's zones: a start per contact.
    starts = [local_day_start(zones[r["id"]].zones, now) if zones[r["id"]].zones else
              now.replace(hour=0, minute=0, second=0, microsecond=0) for r in rows]  # fmt: skip
    history = await conn.fetch(
        f"""SELECT t.contact_id,
                   count(a.id) AS total, count(a.id) FILTER (WHERE a.created_at >= t.day_start) AS today,
                   max(a.created_at) AS last_at,
                   (array_agg({_OUTCOME} ORDER BY a.created_at DESC))[1]
                     AS last_outcome,
                   (SELECT max(x.answered_at) FROM call_attempts x
                     WHERE x.abandoned AND (x.contact_id = t.contact_id OR x.to_e164 = t.phone)) AS last_abandoned_at
              FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS t(contact_id, day_start, phone)
              LEFT JOIN call_attempts a ON a.contact_id = t.contact_id AND a.campaign_id = $4
             GROUP BY t.contact_id, t.phone""",
        [r["id"] for r in rows], starts, [r["phone_e164"] for r in rows], campaign_id,
    )  # fmt: skip
    by_contact = {h["contact_id"]: h for h in history}
    targets = {}
    for row in rows:
        h = by_contact[row["id"]]
        domains = [d for d in (row["domain"], row["registrable_domain"]) if d]
        if row["email"]:
            host = normalise_domain(row["email"].rsplit("@", 1)[1])
            domains += [d for d in (host.domain, host.registrable) if d]
        number = row["phone_e164"]
        targets[row["id"]] = PhoneTarget(
            row["id"], phone_key(number) if number else None, zones[row["id"]], row["phone_invalid_reason"],
            tuple(text_key(d) for d in dict.fromkeys(domains)), row["consent"] or "unknown",
            AttemptHistory(h["total"], h["today"], h["last_at"], h["last_outcome"] if h["total"] else None,
                           h["last_abandoned_at"]),
            account_id=row["account_id"],
        )  # fmt: skip
    return targets
