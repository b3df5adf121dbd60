"""The webhook push queue in PostgreSQL (``lead_deliveries``).

Deliveries are written in the allocation's transaction, so an allocated lead is never left unpushed. A pusher
claims due ones with a lease (``next_attempt_at`` moved past the push's time-out) under ``SKIP LOCKED``: two
nodes never push the same delivery at once, and one that dies mid-push leaves it due again when the lease ends
(the client may then get it twice: pushes are at least once, and carry the delivery id to de-duplicate by).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from crm.orders.portal import LEADS
from crm.orders.push import retry_in

LEASE = timedelta(seconds=60)
BATCH = 100


@dataclass(frozen=True, slots=True)
class Claimed:
    order_id: int
    client_id: int
    url: str
    sealed_secret: bytes | None
    deliveries: list[tuple[int, dict[str, Any]]]  # (delivery id, the lead as the client sees it)


async def enqueue(conn: asyncpg.Connection, lead_ids: Sequence[int], order_ids: Sequence[int]) -> None:
    """A pending delivery for each (lead, order) whose order pushes to a webhook."""
    await conn.execute(
        """INSERT INTO lead_deliveries (lead_id, order_id)
           SELECT u.lead_id, u.order_id FROM unnest($1::bigint[], $2::bigint[]) AS u(lead_id, order_id)
             JOIN campaign_orders o ON o.id = u.order_id AND o.webhook_url IS NOT NULL
           ON CONFLICT (lead_id, order_id) DO NOTHING""",
        list(lead_ids), list(order_ids),
    )  # fmt: skip


async def claim(pool: asyncpg.Pool, now: datetime) -> Claimed | None:
    """Up to BATCH due deliveries of one order, leased; None when nothing is due."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """WITH first AS (SELECT order_id FROM lead_deliveries WHERE status = 'pending' AND next_attempt_at <= $1
                               ORDER BY next_attempt_at LIMIT 1)
               SELECT d.id, d.lead_id, d.order_id FROM lead_deliveries d JOIN first f ON f.order_id = d.order_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= $1
                ORDER BY d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED""",
            now, BATCH,
        )  # fmt: skip
        if not rows:
            return None
        await conn.execute(
            "UPDATE lead_deliveries SET next_attempt_at = $2, attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
            [row["id"] for row in rows], now + LEASE,
        )  # fmt: skip
        order = await conn.fetchrow(
            "SELECT client_organisation_id, webhook_url, webhook_secret_encrypted FROM campaign_orders WHERE id = $1",
            rows[0]["order_id"],
        )
        found = await conn.fetch(LEADS + " AND l.id = ANY($2::bigint[])", order["client_organisation_id"],
                                 [r["lead_id"] for r in rows])  # fmt: skip
        leads = {r["id"]: dict(r) for r in found}
    deliveries = [(row["id"], leads[row["lead_id"]]) for row in rows if row["lead_id"] in leads]
    return Claimed(rows[0]["order_id"], order["client_organisation_id"], order["webhook_url"] or "",
                   order["webhook_secret_encrypted"], deliveries)  # fmt: skip


async def delivered(pool: asyncpg.Pool, delivery_ids: Sequence[int], now: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        lead_ids = await conn.fetch(
            """UPDATE lead_deliveries SET status = 'delivered', delivered_at = $2, last_error = NULL
                WHERE id = ANY($1::bigint[]) RETURNING lead_id""",
            list(delivery_ids), now,
        )  # fmt: skip
        await conn.execute(
            "UPDATE leads SET delivered_at = $2 WHERE id = ANY($1::bigint[]) AND delivered_at IS NULL",
            [row["lead_id"] for row in lead_ids], now,
        )  # fmt: skip


async def failed(pool: asyncpg.Pool, delivery_ids: Sequence[int], error: str, now: datetime,
                 base_s: float = 30.0) -> None:  # fmt: skip
    """Tried again after the back-off, or failed for good once the attempts are used up."""
    rows = await pool.fetch("SELECT id, attempts FROM lead_deliveries WHERE id = ANY($1::bigint[])",
                            list(delivery_ids))  # fmt: skip
    updates = []
    for row in rows:
        wait = retry_in(row["attempts"], base_s)
        updates.append((row["id"], "failed" if wait is None else "pending",
                        now + timedelta(seconds=wait or 0), error[:500]))  # fmt: skip
    await pool.executemany(
        "UPDATE lead_deliveries SET status = $2, next_attempt_at = $3, last_error = $4 WHERE id = $1", updates
    )


async def page(pool: asyncpg.Pool, client_id: int, order_id: int | None, after: int | None,
               limit: int) -> list[dict[str, Any]]:  # fmt: skip
    rows = await pool.fetch(
        """SELECT d.id, d.lead_id, d.order_id, d.status, d.attempts, d.next_attempt_at, d.last_error, d.delivered_at,
                  d.created_at
             FROM lead_deliveries d JOIN campaign_orders o ON o.id = d.order_id
            WHERE o.client_organisation_id = $1 AND ($2::bigint IS NULL OR d.order_id = $2)
              AND ($3::bigint IS NULL OR d.id < $3)
            ORDER BY d.id DESC LIMIT $4""",
        client_id, order_id, after, limit + 1,
    )  # fmt: skip
    return [dict(row) for row in rows]
