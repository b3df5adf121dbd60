"""QA figures: approval rates per campaign and per agent, and why leads were rejected.

A lead counts as passed once QA approved it, whatever followed (published, returned by the client); decided is
passed plus rejected; the approval rate is passed over decided (None before anything is decided). Leads are
counted by when they were created, in ``[since, until)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

_COUNTS = """count(*) AS leads,
       count(*) FILTER (WHERE l.status IN ('new', 'under_review')) AS waiting,
       count(*) FILTER (WHERE l.status IN ('approved', 'published', 'returned')) AS passed,
       count(*) FILTER (WHERE l.status = 'rejected') AS rejected,
       count(*) FILTER (WHERE l.status = 'published') AS published,
       count(*) FILTER (WHERE l.status = 'returned') AS returned"""
_WHERE = """WHERE ($1::bigint IS NULL OR l.campaign_id = $1) AND ($2::timestamptz IS NULL OR l.created_at >= $2)
   AND ($3::timestamptz IS NULL OR l.created_at < $3)"""


def _rate(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    decided = out["passed"] + out["rejected"]
    out["approval_rate"] = round(out["passed"] / decided, 4) if decided else None
    return out


async def qa_report(pool: asyncpg.Pool, campaign_id: int | None, since: datetime | None,
                    until: datetime | None) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    args = (campaign_id, since, until)
    async with pool.acquire() as conn:
        campaigns = await conn.fetch(
            f"""SELECT l.campaign_id, c.name AS campaign_name, {_COUNTS}
                  FROM leads l JOIN campaigns c ON c.id = l.campaign_id {_WHERE}
                 GROUP BY l.campaign_id, c.name ORDER BY l.campaign_id""",
            *args,
        )
        agents = await conn.fetch(
            f"""SELECT l.agent_user_id, u.display_name AS agent_name, u.email AS agent_email, {_COUNTS}
                  FROM leads l LEFT JOIN users u ON u.id = l.agent_user_id {_WHERE}
                 GROUP BY l.agent_user_id, u.display_name, u.email ORDER BY l.agent_user_id NULLS LAST""",
            *args,
        )
        reasons = await conn.fetch(
            f"""SELECT l.rejection_reason AS code, r.label, count(*) AS leads
                  FROM leads l JOIN qa_rejection_reasons r ON r.code = l.rejection_reason
                  {_WHERE} AND l.status = 'rejected'
                 GROUP BY l.rejection_reason, r.label ORDER BY count(*) DESC, l.rejection_reason""",
            *args,
        )
    return {"campaigns": [_rate(row) for row in campaigns], "agents": [_rate(row) for row in agents],
            "rejection_reasons": [dict(row) for row in reasons]}  # fmt: skip
