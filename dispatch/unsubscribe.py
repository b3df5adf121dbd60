"""Unsubscribing from a message's link: a global e-mail suppression, durable before the answer.

The suppression is committed together with the unsubscribe event; its change notification reaches every
node's in-memory index within milliseconds of the commit, so a campaign still sending skips the address from
its next message on. Repeating it changes nothing (the suppression is renewed, the event recorded once).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from crm import audit
from crm.compliance import suppressions


@dataclass(frozen=True, slots=True)
class Recipient:
    message_id: int
    campaign_id: int
    campaign_name: str
    address: str


async def recipient(pool: asyncpg.Pool, message_id: int) -> Recipient | None:
    row = await pool.fetchrow(
        """SELECT m.id, m.campaign_id, c.name, m.to_email FROM email_messages m JOIN campaigns c ON c.id = m.campaign_id
            WHERE m.id = $1""",
        message_id,
    )
    return None if row is None else Recipient(row["id"], row["campaign_id"], row["name"], row["to_email"])


async def unsubscribe(pool: asyncpg.Pool, who: Recipient, *, one_click: bool, client_ip: str | None) -> bool:
    """Suppress the address everywhere; True if it was not suppressed before."""
    # the address we sent to, as stored (normalised when it was imported), is what the sender checks
    value = who.address.strip().lower()
    actor = audit.Actor(user_id=None, client_ip=client_ip)
    async with pool.acquire() as conn, conn.transaction():
        _, created = await suppressions.add(
            conn, actor, channel="email", value=value, source="unsubscribe",
            reason=f"unsubscribed from campaign {who.campaign_id} ({'one-click' if one_click else 'page'})",
            detail={"email_message_id": who.message_id, "campaign_id": who.campaign_id},
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO email_events (email_message_id, campaign_id, event_type, recipient, occurred_at, payload)
               SELECT $1, $2, 'unsubscribe', $3, now(), jsonb_build_object('one_click', $4::boolean)
                WHERE NOT EXISTS (SELECT 1 FROM email_events WHERE email_message_id = $1
                                   AND event_type = 'unsubscribe')""",
            who.message_id, who.campaign_id, who.address, one_click,
        )  # fmt: skip
    return created
