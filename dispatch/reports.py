"""An e-mail campaign's figures, per variant and over time, from the ledger and the events.

Opens and clicks are counted once per message (unique) and only when a person made them: those flagged
``machine`` (privacy proxies, link scanners) are reported apart. Rates are over messages sent; delivered, bounces
and complaints come from the providers' webhooks (none in the sandbox).
"""

from __future__ import annotations

from typing import Any

import asyncpg

_PER_VARIANT = """
WITH m AS (
  SELECT m.id, m.variant_id, m.status FROM email_messages m WHERE m.campaign_id = $1
), e AS (
  SELECT e.email_message_id AS id, e.event_type, (e.payload->>'machine') IS NOT NULL AS machine
    FROM email_events e WHERE e.campaign_id = $1 AND e.email_message_id IS NOT NULL
), per_message AS (
  SELECT m.id, m.variant_id, m.status,
         bool_or(e.event_type = 'delivered') AS delivered,
         bool_or(e.event_type = 'bounce_hard') AS hard, bool_or(e.event_type = 'bounce_soft') AS soft,
         bool_or(e.event_type = 'open' AND NOT e.machine) AS opened,
         bool_or(e.event_type = 'open' AND e.machine) AS machine_opened,
         bool_or(e.event_type = 'click' AND NOT e.machine) AS clicked,
         bool_or(e.event_type = 'click' AND e.machine) AS machine_clicked,
         bool_or(e.event_type = 'unsubscribe') AS unsubscribed,
         bool_or(e.event_type = 'complaint') AS complained
    FROM m LEFT JOIN e ON e.id = m.id GROUP BY m.id, m.variant_id, m.status
)
SELECT v.variant_key AS variant, v.is_winner,
       count(p.id) AS recipients,
       count(*) FILTER (WHERE p.status IN ('queued', 'rendered', 'sending')) AS pending,
       count(*) FILTER (WHERE p.status IN ('sent', 'bounced')) AS sent,
       count(*) FILTER (WHERE p.status = 'failed') AS failed,
       count(*) FILTER (WHERE p.status = 'suppressed') AS suppressed,
       count(*) FILTER (WHERE p.status = 'skipped') AS skipped,
       count(*) FILTER (WHERE p.delivered) AS delivered,
       count(*) FILTER (WHERE p.hard) AS hard_bounces, count(*) FILTER (WHERE p.soft) AS soft_bounces,
       count(*) FILTER (WHERE p.opened) AS unique_opens, count(*) FILTER (WHERE p.machine_opened AND NOT p.opened)
         AS machine_only_opens,
       count(*) FILTER (WHERE p.clicked) AS unique_clicks,
       count(*) FILTER (WHERE p.machine_clicked AND NOT p.clicked) AS machine_only_clicks,
       count(*) FILTER (WHERE p.unsubscribed) AS unsubscribes, count(*) FILTER (WHERE p.complained) AS complaints
  FROM email_variants v LEFT JOIN per_message p ON p.variant_id = v.id
 WHERE v.campaign_id = $1 AND (v.deleted_at IS NULL OR p.id IS NOT NULL)
 GROUP BY v.variant_key, v.is_winner ORDER BY v.variant_key"""

_OVER_TIME = """
SELECT date_trunc($2, at) AS bucket, sum(sent)::bigint AS sent, sum(opens)::bigint AS unique_opens,
       sum(clicks)::bigint AS unique_clicks, sum(bounces)::bigint AS bounces
  FROM (SELECT sent_at AS at, 1 AS sent, 0 AS opens, 0 AS clicks, 0 AS bounces FROM email_messages
         WHERE campaign_id = $1 AND sent_at IS NOT NULL
        UNION ALL
        SELECT min(occurred_at), 0, (event_type = 'open')::int, (event_type = 'click')::int,
               (event_type IN ('bounce_hard', 'bounce_soft'))::int
          FROM email_events WHERE campaign_id = $1 AND email_message_id IS NOT NULL
           AND event_type IN ('open', 'click', 'bounce_hard', 'bounce_soft') AND payload->>'machine' IS NULL
         GROUP BY email_message_id, event_type) x
 GROUP BY 1 ORDER BY 1 LIMIT 2000"""

COUNTS = ("recipients", "pending", "sent", "failed", "suppressed", "skipped", "delivered", "hard_bounces",
          "soft_bounces", "unique_opens", "machine_only_opens", "unique_clicks", "machine_only_clicks",
          "unsubscribes", "complaints")  # fmt: skip
RATES = ("delivered", "hard_bounces", "soft_bounces", "unique_opens", "unique_clicks", "unsubscribes", "complaints")


def with_rates(counts: dict[str, Any]) -> dict[str, Any]:
    sent = counts["sent"]
    return counts | {"rates": {name: round(counts[name] / sent, 4) if sent else 0.0 for name in RATES}}


async def campaign_report(conn: asyncpg.Connection | asyncpg.Pool, campaign_id: int, bucket: str) -> dict[str, Any]:
    """{"total": counts+rates, "variants": [...], "series": [{"at", "sent", "unique_opens", ...}]}."""
    variants = [dict(r) for r in await conn.fetch(_PER_VARIANT, campaign_id)]
    total = {name: sum(int(v[name]) for v in variants) for name in COUNTS}
    series = await conn.fetch(_OVER_TIME, campaign_id, bucket)
    return {
        "total": with_rates(total),
        "variants": [with_rates({"variant": v["variant"], "is_winner": v["is_winner"],
                                 **{n: int(v[n]) for n in COUNTS}}) for v in variants],
        "series": [{"at": r["bucket"], "sent": r["sent"], "unique_opens": r["unique_opens"],
                    "unique_clicks": r["unique_clicks"], "bounces": r["bounces"]} for r in series],
    }  # fmt: skip
