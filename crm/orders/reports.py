"""An order's report: delivered against the goal and the pace, week by week, returns by reason, and why QA
rejected leads of the campaigns working for it."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg


async def order_report(pool: asyncpg.Pool, order: dict[str, Any], today: date) -> dict[str, Any]:
    """``order`` as ``crm.orders.store.get`` returns it (its progress included)."""
    start = order["starts_on"] or order["created_at"].date()
    async with pool.acquire() as conn:
        weeks = await conn.fetch(
            """SELECT (($2::date + 7 * ((l.allocated_at::date - $2::date) / 7)))::date AS week_starting,
                      count(*) AS delivered, count(*) FILTER (WHERE l.status = 'returned') AS returned
                 FROM leads l WHERE l.campaign_order_id = $1 AND l.allocated_at IS NOT NULL
                GROUP BY 1 ORDER BY 1""",
            order["id"], start,
        )  # fmt: skip
        returns = await conn.fetch(
            """SELECT status_reason AS reason, count(*) AS leads FROM leads
                WHERE campaign_order_id = $1 AND status = 'returned' GROUP BY 1 ORDER BY 2 DESC, 1""",
            order["id"],
        )
        rejections = await conn.fetch(
            """SELECT l.rejection_reason AS code, r.label, count(*) AS leads
                 FROM leads l JOIN qa_rejection_reasons r ON r.code = l.rejection_reason
                WHERE l.status = 'rejected' AND l.created_at >= $2
                  AND l.campaign_id IN (SELECT campaign_id FROM order_campaigns WHERE order_id = $1)
                GROUP BY 1, 2 ORDER BY 3 DESC, 1""",
            order["id"], order["created_at"],
        )  # fmt: skip
    by_week, cumulative = [], 0
    for row in weeks:
        cumulative += row["delivered"] - row["returned"]
        week_number = (row["week_starting"] - start).days // 7 + 1
        target = None if order["weekly_pace"] is None else min(order["cap"], order["weekly_pace"] * week_number)
        by_week.append({"week_starting": row["week_starting"], "delivered": row["delivered"],
                        "returned": row["returned"], "cumulative": cumulative, "pace_target": target})  # fmt: skip
    ends = order["ends_on"]
    days_left = None if ends is None else max(0, (ends - today).days + 1)
    return {
        "order_id": order["id"], "quantity": order["lead_target"], "cap": order["cap"],
        "delivered": order["delivered"], "returned": order["returned"], "due_by_now": order["due_by_now"],
        "behind_pace": order["behind_pace"], "remaining": max(0, order["lead_target"] - order["delivered"]),
        "days_left": days_left,
        "by_week": by_week,
        "returns": [dict(r) for r in returns],
        "rejections": [dict(r) for r in rejections],
        "counted_from": start,
    }  # fmt: skip
