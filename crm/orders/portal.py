"""What a client sees: its organisation's delivered leads, and returning one within its order's window.

Every query takes the client's organisation and filters on it: another organisation's lead is "does not exist".
A lead is delivered once an order holds it (``allocated_at``); ``delivered_at`` records when the client first
fetched it (API pull or CSV export).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from crm.leads.qa_workflow import Lead, Move, Refused, Rules, decide

CSV_COLUMNS = ("id", "order_id", "status", "first_name", "last_name", "job_title", "email", "phone_e164", "country",
               "account_name", "account_domain", "industry", "employee_count", "recording_url", "delivered_at",
               "returnable_until", "returned_at", "return_reason")  # fmt: skip
LEADS = """
SELECT l.id, l.campaign_order_id AS order_id, l.status::text AS status, c.first_name, c.last_name, c.job_title,
       c.email, c.phone_e164, coalesce(c.country, a.office_country)::text AS country, a.name AS account_name,
       a.domain AS account_domain, a.industry, a.employee_count, l.form_answers,
       CASE WHEN ca.recording_file IS NOT NULL THEN '/api/portal/leads/' || l.id || '/recording'
            ELSE l.recording_url END AS recording_url,
       l.allocated_at AS delivered_at,
       l.allocated_at + make_interval(days => o.returns_window_days) AS returnable_until,
       l.returned_at, CASE WHEN l.status = 'returned' THEN l.status_reason END AS return_reason
  FROM leads l JOIN campaign_orders o ON o.id = l.campaign_order_id
  JOIN contacts c ON c.id = l.contact_id LEFT JOIN accounts a ON a.id = l.account_id
  LEFT JOIN call_attempts ca ON ca.id = l.call_attempt_id
 WHERE o.client_organisation_id = $1 AND l.status IN ('published', 'returned')"""


async def leads(pool: asyncpg.Pool, client_id: int, order_id: int | None, status: str | None, after: int | None,
                limit: int) -> list[dict[str, Any]]:  # fmt: skip
    """The client's leads, newest first (keyset on id, ``limit + 1``)."""
    rows = await pool.fetch(
        LEADS + """ AND ($2::bigint IS NULL OR l.campaign_order_id = $2)
                     AND ($3::text IS NULL OR l.status = $3::lead_status) AND ($4::bigint IS NULL OR l.id < $4)
                   ORDER BY l.id DESC LIMIT $5""",
        client_id, order_id, status, after, limit + 1,
    )  # fmt: skip
    return [dict(row) for row in rows]


async def lead(pool: asyncpg.Pool, client_id: int, lead_id: int) -> dict[str, Any] | None:
    row = await pool.fetchrow(LEADS + " AND l.id = $2", client_id, lead_id)
    return None if row is None else dict(row)


async def mark_delivered(pool: asyncpg.Pool, lead_ids: Sequence[int]) -> None:
    """The first time the client fetched them."""
    if lead_ids:
        await pool.execute(
            "UPDATE leads SET delivered_at = now() WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL",
            list(lead_ids),
        )


async def return_lead(pool: asyncpg.Pool, client_id: int, lead_id: int, move: Move) -> None:
    """Returns the lead (a replacement is owed) if it is the client's and within its order's returns window.
    LookupError if it is not the client's; Refused otherwise (409: returned already, or the window closed)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT l.status::text AS status, l.allocated_at, o.returns_window_days FROM leads l
                 JOIN campaign_orders o ON o.id = l.campaign_order_id
                WHERE l.id = $1 AND o.client_organisation_id = $2 AND l.status IN ('published', 'returned')
                  FOR UPDATE OF l""",
            lead_id, client_id,
        )  # fmt: skip
        if row is None:
            raise LookupError(f"lead {lead_id} does not exist")
        closes = row["allocated_at"] + timedelta(days=row["returns_window_days"])
        if row["status"] == "published" and move.now > closes:
            raise Refused(409, f"the returns window closed at {closes:%Y-%m-%d %H:%M} UTC")
        change = decide(Lead(row["status"]), move, Rules())
        await conn.execute(
            """UPDATE leads SET status = 'returned', status_reason = $2, replacement_owed = true, returned_at = $3,
                      status_changed_at = $3, updated_at = $3 WHERE id = $1""",
            lead_id, change.status_reason, move.now,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO lead_qa_events (lead_id, analyst_id, from_status, to_status, reason, detail, at)
               VALUES ($1, $2, 'published', 'returned', $3, $4, $5)""",
            lead_id, move.actor_id, change.status_reason, {"action": "return", "by": "client"}, move.now,
        )  # fmt: skip


async def recording_file(pool: asyncpg.Pool, client_id: int, lead_id: int) -> str | None:
    """The stored recording of the client's lead (``call_attempts.recording_file``), or None."""
    file: str | None = await pool.fetchval(
        """SELECT ca.recording_file FROM leads l JOIN campaign_orders o ON o.id = l.campaign_order_id
             JOIN call_attempts ca ON ca.id = l.call_attempt_id
            WHERE l.id = $1 AND o.client_organisation_id = $2 AND l.status IN ('published', 'returned')""",
        lead_id, client_id,
    )  # fmt: skip
    return file
