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
            zones = local_zones(
                contact_zone=contact["timezone"],
                office_zone=contact["office_timezone"],
                office_country=contact["office_country"],
                phone_e164=contact["phone_e164"],
                contact_country=contact["country"],
                fallback_zone=rules.timezone_fallback,
            )
            number = contact["phone_e164"]
            history = await _attempts(conn, contact_id, campaign_id, number, zones, now)
            live = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE to_e164 = $1) AS to_number,
                          count(*) FILTER (WHERE account_id = $2) AS to_account
                     FROM call_attempts WHERE ended_at IS NULL AND (to_e164 = $1 OR account_id = $2)""",
                number,
                contact["account_id"],
            )
            target = PhoneTarget(
                contact_id,
                phone_key(number) if number else None,
                zones,
                contact["phone_invalid_reason"],
                domain_keys,
                consent or "unknown",
                history,
                account_id=contact["account_id"],
            )
            live_numbers = {target.phone_key} if live["to_number"] and target.phone_key is not None else set()
            live_accounts = {contact["account_id"]} if live["to_account"] else set()
            decision = decide_phone(rules.phone(campaign_id), target, index, now, live_numbers, live_accounts)
            facts |= {
                "phone": number,
                "attempts": history,
                "calls_in_progress_to_number": live["to_number"],
                "calls_in_progress_to_account": live["to_account"],
            }
            return Explanation(channel, decision, zones, facts)
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


async def _attempts(
    conn: asyncpg.Connection, contact_id: int, campaign_id: int, number: str | None, zones: LocalZones, now: datetime
) -> AttemptHistory:
    """This campaign's attempts at the contact ("today": since the earliest local midnight of its zones), and the
    last abandoned call to its number by any campaign (the abandon lock protects the line, not the record)."""
    day_start = local_day_start(zones.zones, now) if zones.zones else now.replace(hour=0, minute=0, second=0)
    row = await conn.fetchrow(
        f"""SELECT count(*) AS total, count(*) FILTER (WHERE created_at >= $3) AS today,
                   max(created_at) AS last_at,
                   (array_agg({_OUTCOME} ORDER BY created_at DESC))[1] AS last_outcome,
                   (SELECT max(answered_at) FROM call_attempts
                     WHERE abandoned AND (contact_id = $1 OR to_e164 = $4)) AS last_abandoned_at
              FROM call_attempts WHERE contact_id = $1 AND campaign_id = $2""",
        contact_id,
        campaign_id,
        day_start,
        number,
    )
    return AttemptHistory(row["total"], row["today"], row["last_at"], row["last_outcome"], row["last_abandoned_at"])


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
