"""What providers tell us after the send, applied: events stored once, bounces and complaints suppressed.

Each event is matched to its ledger row (the id the provider echoed, else the latest message sent to the
address) and stored once per provider event id. A hard bounce, a complaint or an unsubscribe reported by the
provider suppresses the address everywhere at once; soft bounces do after ``soft_limit`` of them within 30
days. The suppression is committed with the event, before the provider gets its 200, so a retry after a crash
finds it done. A campaign whose hard-bounce or complaint rate crosses its ceiling (once enough messages were sent
to judge) is paused, with the reason in the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import structlog

from crm import audit
from crm.compliance import suppressions
from dispatch.inbound import InboundEvent

log = structlog.get_logger("pivotal.email.feedback")

#: A campaign's bounce and complaint rates are judged once this many of its messages were sent.
MIN_SENT_TO_JUDGE = 200
SOFT_WINDOW_DAYS = 30


@dataclass
class Applied:
    stored: int = 0
    duplicates: int = 0
    unmatched: int = 0
    suppressed: int = 0
    paused: int = 0


async def apply(pool: asyncpg.Pool, events: Iterable[InboundEvent], soft_limit: int = 3) -> Applied:
    out = Applied()
    campaigns: set[int] = set()
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            row = await _message(conn, event)
            message_id, campaign_id = (row["id"], row["campaign_id"]) if row else (None, None)
            if row is None:
                out.unmatched += 1
            inserted = await conn.fetchval(
                """INSERT INTO email_events (email_message_id, campaign_id, event_type, provider, provider_event_id,
                                             recipient, url, occurred_at, payload)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8), jsonb_build_object('detail', $9::text))
                   ON CONFLICT (provider, provider_event_id) DO NOTHING RETURNING id""",
                message_id, campaign_id, event.kind, event.provider, event.event_id, event.recipient,
                event.url or ("" if event.kind == "click" else None), event.occurred_at, event.detail,
            )  # fmt: skip
            if inserted is None:
                out.duplicates += 1
                continue
            out.stored += 1
            if event.kind == "bounce_hard" and message_id is not None:
                await conn.execute(
                    """UPDATE email_messages SET status = 'bounced', last_error = $2, updated_at = now()
                        WHERE id = $1 AND status = 'sent'""",
                    message_id, event.detail or "hard bounce",
                )  # fmt: skip
            if await _suppress(conn, event, campaign_id, soft_limit):
                out.suppressed += 1
            if campaign_id is not None and event.kind in ("bounce_hard", "complaint"):
                campaigns.add(campaign_id)
        for campaign_id in campaigns:
            if await _judge(conn, campaign_id):
                out.paused += 1
    return out


async def _message(conn: asyncpg.Connection, event: InboundEvent) -> asyncpg.Record | None:
    if event.message_id is not None:
        row = await conn.fetchrow(
            "SELECT id, campaign_id FROM email_messages WHERE id = $1 AND lower(to_email) = $2",
            event.message_id, event.recipient,
        )  # fmt: skip
        if row is not None:
            return row
    # through the contact (its unique address index) to its messages (the contact and sent_at index): the
    # ledger has no index by address, and a scan per event would not do
    return await conn.fetchrow(
        """SELECT m.id, m.campaign_id FROM contacts c JOIN email_messages m ON m.contact_id = c.id
            WHERE lower(c.email) = $1 AND c.deleted_at IS NULL AND c.email IS NOT NULL AND m.sent_at IS NOT NULL
              AND lower(m.to_email) = $1
            ORDER BY m.sent_at DESC LIMIT 1""",
        event.recipient,
    )


async def _suppress(conn: asyncpg.Connection, event: InboundEvent, campaign_id: int | None, soft_limit: int) -> bool:
    reason = ""
    if event.kind == "bounce_hard":
        reason, source = f"hard bounce ({event.provider}): {event.detail}", "bounce"
    elif event.kind == "complaint":
        reason, source = f"spam complaint ({event.provider})", "complaint"
    elif event.kind == "unsubscribe":  # through the provider's own link or list-unsubscribe handling
        reason, source = f"unsubscribed at the provider ({event.provider})", "unsubscribe"
    elif event.kind == "bounce_soft":
        softs = await conn.fetchval(
            f"""SELECT count(*) FROM email_events WHERE recipient = $1 AND event_type = 'bounce_soft'
                  AND occurred_at > now() - interval '{SOFT_WINDOW_DAYS} days'""",
            event.recipient,
        )
        if softs >= soft_limit:
            reason, source = f"{softs} soft bounces in {SOFT_WINDOW_DAYS} days ({event.provider})", "bounce"
    if not reason:
        return False
    if "@" not in event.recipient:
        return False
    _, created = await suppressions.add(
        conn, audit.SYSTEM, channel="email", value=event.recipient, source=source, reason=reason[:500],
        detail={"provider": event.provider, "provider_event_id": event.event_id, "campaign_id": campaign_id},
    )  # fmt: skip
    return created


async def _judge(conn: asyncpg.Connection, campaign_id: int) -> bool:
    """Pause a running campaign whose hard-bounce or complaint rate is over its ceiling."""
    row = await conn.fetchrow(
        """SELECT c.status::text AS status,
                  coalesce((c.settings->>'max_bounce_rate')::float8, 0.05) AS max_bounce,
                  coalesce((c.settings->>'max_complaint_rate')::float8, 0.003) AS max_complaint,
                  (SELECT count(*) FROM email_messages m WHERE m.campaign_id = c.id AND m.sent_at IS NOT NULL) AS sent,
                  (SELECT count(DISTINCT e.email_message_id) FROM email_events e WHERE e.campaign_id = c.id
                      AND e.event_type = 'bounce_hard') AS bounces,
                  (SELECT count(DISTINCT e.email_message_id) FROM email_events e WHERE e.campaign_id = c.id
                      AND e.event_type = 'complaint') AS complaints
             FROM campaigns c WHERE c.id = $1""",
        campaign_id,
    )
    if row is None or row["status"] != "running" or row["sent"] < MIN_SENT_TO_JUDGE:
        return False
    bounce_rate, complaint_rate = row["bounces"] / row["sent"], row["complaints"] / row["sent"]
    if bounce_rate > row["max_bounce"]:
        reason = f"hard-bounce rate {bounce_rate:.2%} over its ceiling {row['max_bounce']:.2%}"
    elif complaint_rate > row["max_complaint"]:
        reason = f"complaint rate {complaint_rate:.3%} over its ceiling {row['max_complaint']:.3%}"
    else:
        return False
    await conn.execute("UPDATE campaigns SET status = 'paused', updated_at = now() WHERE id = $1", campaign_id)
    await audit.record(conn, audit.SYSTEM, "campaign.auto_paused", "campaign", campaign_id,
                       {"reason": reason, "sent": row["sent"]})  # fmt: skip
    log.warning("email campaign paused", campaign_id=campaign_id, reason=reason)
    return True
