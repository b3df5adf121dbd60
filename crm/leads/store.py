"""Leads in PostgreSQL: entering them, reading them, the QA queue and applying QA moves.

Every move runs in one transaction: the lead is locked (``FOR UPDATE``), the rules are read, the pure
``qa_workflow.decide`` judges the move, and the change and its trail row (``lead_qa_events``: who, when, from,
to, notes, the checklist) are committed together. The queue hands out the oldest lead waiting (or one whose
claim expired) with ``FOR UPDATE SKIP LOCKED``, so analysts asking at the same moment get different leads and
never wait for each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audit import Actor
from crm.leads.qa_workflow import CLAIM_TTL, Change, Lead, Move, Rules, decide


class LeadNotFound(LookupError):
    pass


class LeadConflict(ValueError):
    """The lead cannot be entered: what it names does not exist."""


class LeadExists(LeadConflict):
    """The contact already has a lead in the campaign."""


_DETAIL = """
SELECT l.id, l.status::text AS status, l.campaign_id, cp.name AS campaign_name, l.contact_id,
       c.first_name, c.last_name, c.job_title, c.email, c.phone_e164, c.country,
       l.account_id, a.name AS account_name, a.domain AS account_domain, a.industry, a.employee_count,
       a.office_country AS account_country,
       l.agent_user_id, u.display_name AS agent_name, l.call_attempt_id,
       coalesce(l.recording_url, CASE WHEN ca.recording_file IS NOT NULL
                                      THEN '/api/call-attempts/' || ca.id || '/recording' END) AS recording_url,
       l.form_answers, l.notes,
       l.client_organisation_id, l.claimed_by, l.claimed_until, l.status_reason, l.rejection_reason,
       l.replacement_owed, l.published_at, l.created_at, l.status_changed_at, l.created_by,
       l.campaign_order_id, l.allocated_at,
       coalesce((SELECT jsonb_agg(jsonb_build_object('key', q.key, 'label', q.label) ORDER BY q.position, q.key)
                   FROM qa_checklist_items q WHERE q.campaign_id = l.campaign_id), '[]') AS checklist,
       coalesce((SELECT jsonb_agg(jsonb_build_object('id', e.id, 'at', e.at, 'analyst_id', e.analyst_id,
                                                     'analyst_name', eu.display_name,
                                                     'from_status', e.from_status, 'to_status', e.to_status,
                                                     'reason', e.reason, 'detail', e.detail) ORDER BY e.at, e.id)
                   FROM lead_qa_events e LEFT JOIN users eu ON eu.id = e.analyst_id WHERE e.lead_id = l.id), '[]')
         AS history
  FROM leads l
  JOIN campaigns cp ON cp.id = l.campaign_id
  JOIN contacts c ON c.id = l.contact_id
  LEFT JOIN accounts a ON a.id = l.account_id
  LEFT JOIN users u ON u.id = l.agent_user_id
  LEFT JOIN call_attempts ca ON ca.id = l.call_attempt_id
"""


async def create(pool: asyncpg.Pool, actor: Actor, campaign_id: int, contact_id: int, form_answers: dict[str, Any],
                 recording_url: str | None, notes: str, agent_user_id: int | None) -> int:  # fmt: skip
    """A lead entered through the API (status new), with its creation in the trail. LeadConflict if the campaign,
    contact or agent does not exist, or the contact already has a lead in the campaign."""
    async with pool.acquire() as conn, conn.transaction():
        campaign = await conn.fetchrow(
            "SELECT client_organisation_id FROM campaigns WHERE id = $1 AND deleted_at IS NULL", campaign_id
        )
        if campaign is None:
            raise LeadConflict(f"campaign {campaign_id} does not exist")
        account_id = await conn.fetchval(
            "SELECT coalesce(account_id, 0) FROM contacts WHERE id = $1 AND deleted_at IS NULL", contact_id
        )
        if account_id is None:
            raise LeadConflict(f"contact {contact_id} does not exist")
        if agent_user_id is not None and not await conn.fetchval("SELECT 1 FROM users WHERE id = $1", agent_user_id):
            raise LeadConflict(f"user {agent_user_id} does not exist")
        lead_id = await conn.fetchval(
            """INSERT INTO leads (campaign_id, contact_id, account_id, client_organisation_id, agent_user_id,
                                  form_answers, recording_url, notes, created_by)
               VALUES ($1, $2, nullif($3, 0), $4, $5, $6, $7, $8, $9)
               ON CONFLICT (campaign_id, contact_id) DO NOTHING RETURNING id""",
            campaign_id, contact_id, account_id, campaign["client_organisation_id"], agent_user_id,
            form_answers, recording_url, notes, actor.user_id,
        )  # fmt: skip
        if lead_id is None:
            raise LeadExists(f"contact {contact_id} already has a lead in campaign {campaign_id}")
        await conn.execute(
            """INSERT INTO lead_qa_events (lead_id, analyst_id, to_status, reason)
               VALUES ($1, $2, 'new', 'entered through the API')""",
            lead_id, actor.user_id,
        )  # fmt: skip
        return int(lead_id)


async def detail(pool: asyncpg.Pool, lead_id: int) -> dict[str, Any]:
    """The lead with its contact, account, campaign, agent, answers, the campaign's checklist and its trail."""
    row = await pool.fetchrow(_DETAIL + " WHERE l.id = $1", lead_id)
    if row is None:
        raise LeadNotFound(f"lead {lead_id} does not exist")
    return dict(row)


async def page(pool: asyncpg.Pool, *, status: str | None, campaign_id: int | None, agent_id: int | None,
               after: int | None, limit: int) -> list[asyncpg.Record]:  # fmt: skip
    """Leads newest first (keyset on id), ``limit + 1`` of them."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT l.id, l.status::text AS status, l.campaign_id, l.contact_id, l.account_id, l.agent_user_id,
                  l.claimed_by, l.created_at, l.status_changed_at,
                  trim(coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '')) AS contact_name,
                  a.name AS account_name
             FROM leads l JOIN contacts c ON c.id = l.contact_id LEFT JOIN accounts a ON a.id = l.account_id
            WHERE ($1::lead_status IS NULL OR l.status = $1::lead_status)
              AND ($2::bigint IS NULL OR l.campaign_id = $2) AND ($3::bigint IS NULL OR l.agent_user_id = $3)
              AND ($4::bigint IS NULL OR l.id < $4)
            ORDER BY l.id DESC LIMIT $5""",
        status, campaign_id, agent_id, after, limit + 1,
    )  # fmt: skip
    return rows


async def next_for(pool: asyncpg.Pool, analyst: Actor, now: datetime, campaign_id: int | None) -> int | None:
    """Claims the next lead for the analyst and returns its id: the one the analyst already holds (its claim
    renewed), else the oldest whose claim expired, else the oldest new one. None when nothing waits.

    One statement, so one round trip and its own transaction: leads under review are few (one per analyst at
    most), so ``held`` looks at them all; only when it finds none does ``fresh`` take the oldest new lead. The
    claim, its trail row (a new lead) or its audit row (a lapsed claim taken over) are written together."""
    until = now + CLAIM_TTL
    # the campaign's condition only when there is one: "$6 IS NULL OR campaign_id = $6" in a generic plan keeps
    # PostgreSQL from the queue's index
    only = "" if campaign_id is None else "AND campaign_id = $6"
    if analyst.user_id is None:
        raise ValueError("only a signed-in analyst takes leads from the queue")
    args: list[object] = [analyst.user_id, until, now, analyst.request_id, analyst.client_ip]
    if campaign_id is not None:
        args.append(campaign_id)
    row = await pool.fetchrow(
        f"""WITH held AS (
             SELECT id, claimed_by FROM leads
              WHERE status = 'under_review' AND (claimed_by = $1 OR claimed_until <= $3) {only}
              ORDER BY (claimed_by = $1 AND claimed_until > $3) DESC, created_at, id
              LIMIT 1 FOR UPDATE SKIP LOCKED),
           fresh AS (
             SELECT id FROM leads
              WHERE status = 'new' {only} AND NOT EXISTS (SELECT FROM held)
              ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
           pick AS (
             SELECT id, claimed_by AS was, false AS was_new FROM held
             UNION ALL SELECT id, NULL, true FROM fresh),
           taken AS (
             UPDATE leads l SET status = 'under_review', claimed_by = $1, claimed_until = $2, qa_analyst_id = $1,
                    status_changed_at = CASE WHEN pick.was_new THEN $3 ELSE l.status_changed_at END,
                    updated_at = $3
               FROM pick WHERE l.id = pick.id
             RETURNING l.id, pick.was, pick.was_new),
           trail AS (
             INSERT INTO lead_qa_events (lead_id, analyst_id, from_status, to_status, reason, at)
             SELECT id, $1, 'new', 'under_review', 'claimed from the queue', $3 FROM taken WHERE was_new),
           takeover AS (  -- a lapsed claim: no status changes, so the audit log says who took it from whom
             INSERT INTO audit_log (actor_id, action, entity_type, entity_id, detail, request_id, client_ip)
             SELECT $1, 'lead.claim_taken_over', 'lead', id::text, jsonb_build_object('previous_analyst_id', was),
                    $4, $5
               FROM taken WHERE NOT was_new AND was IS DISTINCT FROM $1)
        SELECT id FROM taken
         -- A claim is not something we promise to keep: lost in a crash, the lead is simply new again. So this
         -- transaction's commit does not wait for the WAL to reach the disk (that wait was most of the queue's
         -- tail latency). Evaluated on the row taken, before the statement's implicit commit (nothing taken,
         -- nothing written: no commit to wait for).
         WHERE set_config('synchronous_commit', 'off', true) = 'off'""",
        *args,
    )  # fmt: skip
    return None if row is None else int(row["id"])


async def apply(pool: asyncpg.Pool, lead_id: int, move: Move) -> Change:
    """Judges the move against the lead as it is now (locked) and applies it with its trail row.
    Raises LeadNotFound, or qa_workflow.Refused (nothing changed)."""
    async with pool.acquire() as conn, conn.transaction():
        # the lead and the rules that judge it in one round trip
        row = await conn.fetchrow(
            """SELECT l.status::text AS status, l.claimed_by, l.claimed_until,
                      ARRAY(SELECT key FROM qa_checklist_items WHERE campaign_id = l.campaign_id
                             ORDER BY position, key) AS checklist,
                      ARRAY(SELECT ARRAY[code, label] FROM qa_rejection_reasons WHERE active) AS reasons
                 FROM leads l WHERE l.id = $1 FOR UPDATE OF l""",
            lead_id,
        )
        if row is None:
            raise LeadNotFound(f"lead {lead_id} does not exist")
        rules = Rules(tuple(row["checklist"]), {code: label for code, label in row["reasons"]})
        change = decide(Lead(row["status"], row["claimed_by"], row["claimed_until"]), move, rules)
        await conn.execute(
            """UPDATE leads SET status = $2::lead_status, claimed_by = $3, claimed_until = $4,
                      status_reason = CASE WHEN $2::text IN ('rejected', 'returned') THEN $5 ELSE NULL END,
                      rejection_reason = $6, replacement_owed = replacement_owed OR $7,
                      published_at = CASE WHEN $8 THEN $9 ELSE published_at END,
                      qa_analyst_id = CASE WHEN $2::text IN ('under_review', 'approved', 'rejected')
                                           THEN $10 ELSE qa_analyst_id END,
                      status_changed_at = CASE WHEN $11 THEN $9 ELSE status_changed_at END, updated_at = $9
                WHERE id = $1""",
            lead_id, change.status, change.claimed_by, change.claimed_until, change.status_reason,
            change.rejection_reason, change.replacement_owed, change.published, move.now, move.actor_id,
            change.changes_status,
        )  # fmt: skip
        if move.action == "claim" and row["claimed_by"] not in (None, move.actor_id):
            await _taken_over(conn, lead_id, move.actor_id, row["claimed_by"])
        if change.changes_status:
            detail: dict[str, Any] = {"action": move.action}
            if move.checklist:
                detail["checklist"] = dict(move.checklist)
            if change.rejection_reason:
                detail["reason_code"] = change.rejection_reason
            reason = change.status_reason or (move.notes.strip() or None)
            await _trail(conn, lead_id, move.actor_id, row["status"], change.status, reason,
                         detail | ({"notes": move.notes.strip()} if move.notes.strip() else {}), move.now)  # fmt: skip
        return change


async def _taken_over(conn: asyncpg.Connection, lead_id: int, analyst_id: int, previous: int | None) -> None:
    """A lead whose claim lapsed, now another analyst's: no status changes, so the audit log says who and when."""
    await audit.record(conn, Actor(analyst_id), "lead.claim_taken_over", "lead", lead_id,
                       {"previous_analyst_id": previous})  # fmt: skip


async def _trail(conn: asyncpg.Connection, lead_id: int, actor_id: int, from_status: str, to_status: str,
                 reason: str | None, detail: dict[str, Any], at: datetime) -> None:  # fmt: skip
    await conn.execute(
        """INSERT INTO lead_qa_events (lead_id, analyst_id, from_status, to_status, reason, detail, at)
           VALUES ($1, $2, $3::lead_status, $4::lead_status, $5, $6, $7)""",
        lead_id, actor_id, from_status, to_status, reason, detail, at,
    )  # fmt: skip


# -- the checklist and the rejection reasons ------------------------------------------------------------------


async def checklist(pool: asyncpg.Pool, campaign_id: int) -> list[dict[str, str]]:
    rows = await pool.fetch(
        "SELECT key, label FROM qa_checklist_items WHERE campaign_id = $1 ORDER BY position, key", campaign_id
    )
    return [dict(row) for row in rows]


async def set_checklist(pool: asyncpg.Pool, actor: Actor, campaign_id: int,
                        items: Sequence[tuple[str, str]]) -> None:  # fmt: skip
    """Replaces the campaign's checklist (in order). Leads approved before keep the checklist they were
    approved with, in their trail."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM qa_checklist_items WHERE campaign_id = $1", campaign_id)
        await conn.executemany(
            "INSERT INTO qa_checklist_items (campaign_id, key, label, position) VALUES ($1, $2, $3, $4)",
            [(campaign_id, key, label, n) for n, (key, label) in enumerate(items)],
        )
        await audit.record(conn, actor, "campaign.qa_checklist_set", "campaign", campaign_id,
                           {"items": [{"key": key, "label": label} for key, label in items]})  # fmt: skip


async def reasons(pool: asyncpg.Pool, include_inactive: bool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT code, label, active FROM qa_rejection_reasons WHERE active OR $1 ORDER BY code", include_inactive
    )
    return [dict(row) for row in rows]


class ReasonTaken(ValueError):
    pass


async def add_reason(pool: asyncpg.Pool, actor: Actor, code: str, label: str) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """INSERT INTO qa_rejection_reasons (code, label) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING
               RETURNING code, label, active""",
            code, label,
        )  # fmt: skip
        if row is None:
            raise ReasonTaken(f"the rejection reason {code!r} exists (PATCH it to change its label or activate it)")
        await audit.record(conn, actor, "qa.rejection_reason_added", "qa_rejection_reason", code, {"label": label})
        return dict(row)


async def update_reason(pool: asyncpg.Pool, actor: Actor, code: str, label: str | None,
                        active: bool | None) -> dict[str, Any]:  # fmt: skip
    """Relabels or (de)activates a reason; an inactive one is no longer offered, rejections made with it keep it."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE qa_rejection_reasons SET label = coalesce($2, label), active = coalesce($3, active)
                WHERE code = $1 RETURNING code, label, active""",
            code, label, active,
        )  # fmt: skip
        if row is None:
            raise LookupError(f"the rejection reason {code!r} does not exist")
        await audit.record(conn, actor, "qa.rejection_reason_changed", "qa_rejection_reason", code,
                           {"label": label, "active": active})  # fmt: skip
        return dict(row)
