"""A/B/n tests: the test cohort gets the variants, the winner goes to the rest.

With ``ab_test_share`` set, sending starts with that share of the audience (chosen by a hash of campaign and
contact, so the same people whenever it is computed), split between the variants by their shares. Once the
cohort is sent, the engine waits ``ab_decide_after_minutes`` after the last message, then picks the variant with
the best rate of unique opens (``open_rate``) or clicks (``click_rate``) per message sent, counting only people
(opens and clicks flagged as machines are not evidence). With ``manual`` a manager picks it through the API. The
rest of the audience then gets the winner. A restart during the wait resumes it: everything is in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

from crm import audit

log = structlog.get_logger("pivotal.email.ab")


@dataclass(frozen=True)
class VariantScore:
    key: str
    variant_id: int
    sent: int
    unique_opens: int
    unique_clicks: int

    def rate(self, criterion: str) -> float:
        hits = self.unique_clicks if criterion == "click_rate" else self.unique_opens
        return hits / self.sent if self.sent else 0.0


def pick_winner(scores: list[VariantScore], criterion: str) -> VariantScore | None:
    """The best rate; a tie goes to the variant with more evidence (more sent), then to the first key. None when
    nothing was sent."""
    sent = [s for s in scores if s.sent > 0]
    if not sent:
        return None
    return max(sent, key=lambda s: (s.rate(criterion), s.sent, [-ord(c) for c in s.key]))


_SCORES = """
SELECT v.variant_key AS key, v.id AS variant_id,
       count(DISTINCT m.id) FILTER (WHERE m.sent_at IS NOT NULL) AS sent,
       count(DISTINCT e.email_message_id) FILTER (WHERE e.event_type = 'open') AS unique_opens,
       count(DISTINCT e.email_message_id) FILTER (WHERE e.event_type = 'click') AS unique_clicks
  FROM email_variants v
  LEFT JOIN email_messages m ON m.campaign_id = $1 AND m.variant_id = v.id
  LEFT JOIN email_events e ON e.email_message_id = m.id AND e.event_type IN ('open', 'click')
       AND e.payload->>'machine' IS NULL
 WHERE v.campaign_id = $1 AND v.deleted_at IS NULL AND v.split_share > 0
 GROUP BY v.variant_key, v.id ORDER BY v.variant_key"""


async def decide(conn: asyncpg.Connection, campaign_id: int, criterion: str) -> str | None:
    """Mark the winner (once: a concurrent manual choice wins the race); its key, or None if nothing was sent."""
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM email_variants WHERE campaign_id = $1 AND is_winner", campaign_id):
            return None
        scores = [VariantScore(**dict(r)) for r in await conn.fetch(_SCORES, campaign_id)]
        winner = pick_winner(scores, criterion)
        if winner is None:  # nothing of the test went out (a tiny cohort, all suppressed): no evidence either way
            if not scores:
                return None
            criterion = "no_evidence: the first variant"
            winner = scores[0]
        await conn.execute("UPDATE email_variants SET is_winner = true, updated_at = now() WHERE id = $1",
                           winner.variant_id)  # fmt: skip
        figures = {s.key: {"sent": s.sent, "unique_opens": s.unique_opens, "unique_clicks": s.unique_clicks,
                           "rate": round(s.rate(criterion), 4)} for s in scores}  # fmt: skip
        await audit.record(conn, audit.SYSTEM, "campaign.ab_winner", "campaign", campaign_id,
                           {"key": winner.key, "by": criterion, "variants": figures})  # fmt: skip
    log.info("a/b winner chosen", campaign_id=campaign_id, winner=winner.key, criterion=criterion)
    return winner.key
