"""The hopper's refill: the next members of a campaign to dial, claimed in PostgreSQL and filtered by the one
compliance decision (DNC, consent, calling window in the contact's local time, attempt limits and delays, the
abandon lock, the multi-line rule, account lead caps).

Claimed members are marked ``in_progress`` (``FOR UPDATE SKIP LOCKED``: two refills, or two nodes, never take
the same contact). Those the decision refuses go back with the time their reasons lift (``next_attempt_at``),
or are excluded with the reason when it never lifts by itself (a suppression, no valid number, no attempts
left), so the next refill does not read them again. Order: callbacks that are due first, then priority (set by
the orders' steering: contacts that orders behind their pace need first), then the longest waiting; members
every order of the campaign is full for are held (``held_for_orders``) until one has room again.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from crm.compliance.decision import Decision, PhoneCampaign, PhoneTarget, decide_phone
from crm.compliance.facts import phone_targets
from crm.compliance.suppression_index import SuppressionIndex

log = structlog.get_logger(__name__)

#: Reasons that do not lift by themselves: the member is excluded, with the reason.
PERMANENT = frozenset({"no_valid_phone", "suppressed_phone_global", "suppressed_phone_campaign",
                       "suppressed_domain_global", "suppressed_domain_campaign", "consent_withdrawn",
                       "consent_required", "max_attempts", "local_time_unknown"})  # fmt: skip
#: A refused member with no known lifting time is looked at again after this long.
RECHECK = timedelta(minutes=15)
#: Reasons that only mean "not this instant": the entry stays in the hopper and is tried again shortly.
BUSY = frozenset({"line_busy", "account_line_busy"})


@dataclass
class Entry:
    contact_id: int
    account_id: int | None
    phone: str
    phone_key: int
    was: str  # the member's status before the claim: new, scheduled or callback
    callback_id: int | None = None
    assigned_user_id: int | None = None  # a personal callback's agent
    contact: dict[str, Any] = field(default_factory=dict)  # the screen pop
    account: dict[str, Any] = field(default_factory=dict)
    target: PhoneTarget | None = None  # the decision's facts, for the check again at dial time


@dataclass
class Refill:
    entries: list[Entry]
    refused: dict[str, int]  # reason code -> members refused for it


async def claim(pool: asyncpg.Pool, campaign_id: int, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        """WITH picked AS (
               SELECT m.contact_id, m.status
                 FROM campaign_members m
                WHERE m.campaign_id = $1 AND m.status IN ('new', 'scheduled', 'callback')
                  AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= now())
                  AND (m.locked_until IS NULL OR m.locked_until <= now()) AND NOT m.held_for_orders
                ORDER BY (m.status = 'callback') DESC, m.priority DESC, m.next_attempt_at NULLS FIRST, m.contact_id
                LIMIT $2 FOR UPDATE SKIP LOCKED)
           UPDATE campaign_members m SET status = 'in_progress', updated_at = now()
             FROM picked WHERE m.campaign_id = $1 AND m.contact_id = picked.contact_id
           RETURNING m.contact_id, picked.status::text AS was,
                     (SELECT jsonb_build_object('id', b.id, 'user', b.assigned_user_id) FROM callbacks b
                       WHERE b.campaign_id = $1 AND b.contact_id = m.contact_id AND b.status = 'scheduled')
                       AS callback""",
        campaign_id,
        limit,
    )
    return rows


async def refill(
    pool: asyncpg.Pool,
    campaign: PhoneCampaign,
    index: SuppressionIndex,
    *,
    limit: int,
    now: datetime,
    fallback_zone: str | None,
    live_numbers: Container[int],
    live_accounts: Container[int],
    cap_allows: Callable[[int | None], bool],
    cap_reason: Callable[[int | None], str],
    cap_take: Callable[[int | None], None],
) -> Refill:
    """Claim up to ``limit`` members and decide each; ``cap_take`` counts an accepted entry against its account's
    lead cap at once, so the next one in the same batch sees it."""
    claimed = await claim(pool, campaign.campaign_id, limit)
    if not claimed:
        return Refill([], {})
    ids = [row["contact_id"] for row in claimed]
    async with pool.acquire() as conn:
        targets = await phone_targets(conn, campaign.campaign_id, ids, now, fallback_zone)
        pops = {row["id"]: row for row in await conn.fetch(_SCREEN_POP, ids)}
    entries: list[Entry] = []
    refused: dict[str, int] = {}
    back: list[tuple[int, str, datetime | None, str | None]] = []  # contact, status, next attempt, exclusion
    for row in claimed:
        contact_id, was = row["contact_id"], row["was"]
        callback = row["callback"] or {}
        target = targets.get(contact_id)
        if target is None:  # deleted meanwhile
            back.append((contact_id, "excluded", None, "contact_deleted"))
            refused["contact_deleted"] = refused.get("contact_deleted", 0) + 1
            continue
        if not cap_allows(target.account_id):
            target = replace(target, lead_cap_reached=cap_reason(target.account_id))
        callback_id = callback.get("id")
        decision = _decide(campaign, target, index, now, live_numbers, live_accounts, callback_id is not None)
        if decision.allowed and target.phone_key is not None:
            cap_take(target.account_id)
            pop = pops.get(contact_id)
            entries.append(Entry(
                contact_id, target.account_id, pop["phone_e164"] if pop else "", target.phone_key, was,
                callback_id, callback.get("user"), contact=_contact(pop), account=_account(pop),
                target=replace(target, lead_cap_reached=None),
            ))  # fmt: skip
            continue
        for reason in decision.reasons:
            refused[reason.code] = refused.get(reason.code, 0) + 1
        back.append(_placement(contact_id, was, decision, now))
    if back:
        try:
            await give_back(pool, campaign.campaign_id, back)
        except Exception:  # they stay claimed until the next restart's recovery; the accepted ones are still dialled
            log.exception("hopper_give_back_failed", campaign=campaign.campaign_id, members=len(back))
    return Refill(entries, refused)


def _decide(
    campaign: PhoneCampaign,
    target: PhoneTarget,
    index: SuppressionIndex,
    now: datetime,
    live_numbers: Container[int],
    live_accounts: Container[int],
    callback: bool,
) -> Decision:
    decision = decide_phone(campaign, target, index, now, live_numbers, live_accounts)
    if callback and not decision.allowed:
        # The contact asked for this time: the retry delay after the call that set it up does not apply.
        decision = Decision.of([r for r in decision.reasons if r.code != "retry_delay"], now)
    return decision


def decide(
    campaign: PhoneCampaign,
    entry: Entry,
    index: SuppressionIndex,
    now: datetime,
    live_numbers: Container[int],
    live_accounts: Container[int],
) -> Decision:
    """The decision again for an entry about to be dialled (its facts from the refill, the rest as of now)."""
    if entry.target is None:
        return Decision(True, (), now)
    return _decide(campaign, entry.target, index, now, live_numbers, live_accounts, entry.callback_id is not None)


def _placement(
    contact_id: int, was: str, decision: Decision, now: datetime
) -> tuple[int, str, datetime | None, str | None]:
    permanent = next((r.code for r in decision.reasons if r.code in PERMANENT), None)
    if permanent is not None:
        return (contact_id, "excluded", None, permanent)
    status = "callback" if was == "callback" else ("new" if was == "new" else "scheduled")
    return (contact_id, status, decision.next_possible or now + RECHECK, None)


def placement(entry: Entry, decision: Decision, now: datetime) -> tuple[int, str, datetime | None, str | None]:
    """Where a refused entry goes back to: excluded for good, or its status with when to look again."""
    return _placement(entry.contact_id, entry.was, decision, now)


async def give_back(
    pool: asyncpg.Pool, campaign_id: int, members: list[tuple[int, str, datetime | None, str | None]]
) -> None:
    """Members claimed and not dialled: their status, when to look again, or why they are excluded."""
    await pool.execute(
        """UPDATE campaign_members m
              SET status = t.status::audience_member_status, next_attempt_at = coalesce(t.next_at, m.next_attempt_at),
                  exclusion_reason = t.reason, updated_at = now()
             FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::text[]) AS t(contact_id, status, next_at,
                                                                                      reason)
            WHERE m.campaign_id = $1 AND m.contact_id = t.contact_id AND m.status = 'in_progress'""",
        campaign_id,
        [m[0] for m in members],
        [m[1] for m in members],
        [m[2] for m in members],
        [m[3] for m in members],
    )


_SCREEN_POP = """SELECT c.id, c.first_name, c.last_name, c.job_title, c.email, c.phone_e164, c.phone_extension,
                        c.country, c.timezone, c.custom_fields, a.id AS account_id, a.name AS account_name,
                        a.domain, a.industry, a.employee_count, a.main_line_e164
                   FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id AND a.deleted_at IS NULL
                  WHERE c.id = ANY($1::bigint[])"""


def _contact(row: asyncpg.Record | None) -> dict[str, Any]:
    if row is None:
        return {}
    return {"id": row["id"], "first_name": row["first_name"], "last_name": row["last_name"],
            "job_title": row["job_title"], "email": row["email"], "phone": row["phone_e164"],
            "extension": row["phone_extension"], "country": row["country"], "timezone": row["timezone"],
            **{f"custom.{k}": v for k, v in (row["custom_fields"] or {}).items()}}  # fmt: skip


def _account(row: asyncpg.Record | None) -> dict[str, Any]:
    if row is None or row["account_id"] is None:
        return {}
    return {"id": row["account_id"], "name": row["account_name"], "domain": row["domain"],
            "industry": row["industry"], "employee_count": row["employee_count"],
            "main_line": row["main_line_e164"]}  # fmt: skip
