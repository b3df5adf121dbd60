"""The campaigns' clock: a scheduled campaign starts at its ``starts_at``; one past its ``ends_at`` is completed.

Both channels, every few seconds, through the same lifecycle actions the API uses (the checklist runs again at
the start, the audience is frozen then, everything is in the audit log with the system as the actor). A
scheduled campaign that no longer passes its checklist when its time comes is put back to draft with the
failing items in the audit log (``campaign.schedule_failed``), rather than left to look scheduled. Several
nodes may run the clock: each action locks the campaign's row, and the loser finds it moved already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from crm import audit
from crm.campaigns import store as phone_campaigns
from crm.campaigns.lifecycle import CampaignAction, LifecycleError
from crm.campaigns.store import CampaignConflict, NotReady
from crm.compliance.campaign_rules import CampaignNotFound
from dispatch import campaigns as email_campaigns
from pivotal.periodic import Periodic

log = structlog.get_logger("pivotal.campaign_clock")

TICK_S = 2.0
_DUE = """SELECT id, channel::text AS channel, status::text AS status FROM campaigns
           WHERE deleted_at IS NULL
             AND ((status = 'scheduled' AND starts_at <= now())
                  OR (status IN ('running', 'paused') AND ends_at <= now()))
           ORDER BY id LIMIT 100"""


class CampaignClock(Periodic):
    name = "campaign-clock"

    def __init__(self, pool: asyncpg.Pool, suppressions_current: Callable[[], bool], tick_s: float = TICK_S) -> None:
        super().__init__(tick_s)
        self.pool, self._current = pool, suppressions_current

    async def run_once(self) -> bool:
        await self.tick()
        return False

    async def tick(self) -> int:
        """Moves every due campaign; how many moved."""
        moved = 0
        for row in await self.pool.fetch(_DUE):
            action = CampaignAction.START if row["status"] == "scheduled" else CampaignAction.COMPLETE
            try:
                await self._act(row["id"], row["channel"], action)
                moved += 1
                log.info("campaign moved by its schedule", campaign_id=row["id"], action=action.value)
            except NotReady as exc:
                if {item.key for item in exc.failures} == {"suppressions"}:
                    continue  # this node's suppression list is catching up: try again on the next tick
                await self._unschedule(row["id"], row["channel"], exc)
            except (LifecycleError, CampaignConflict, CampaignNotFound):
                pass  # another node (or a manager) moved it first
        return moved

    async def _act(self, campaign_id: int, channel: str, action: CampaignAction) -> None:
        if channel == "email":
            await email_campaigns.act(self.pool, audit.SYSTEM, campaign_id, action, self._current())
        else:
            await phone_campaigns.act(self.pool, audit.SYSTEM, campaign_id, action, datetime.now(UTC))

    async def _unschedule(self, campaign_id: int, channel: str, exc: NotReady) -> None:
        failing = [{"key": item.key, "message": item.message} for item in exc.failures]
        with contextlib.suppress(LifecycleError, CampaignConflict, CampaignNotFound):
            await self._act(campaign_id, channel, CampaignAction.UNSCHEDULE)
        async with self.pool.acquire() as conn:
            await audit.record(conn, audit.SYSTEM, "campaign.schedule_failed", "campaign", campaign_id,
                               {"checklist": failing})  # fmt: skip
        log.warning("a scheduled campaign is not ready at its time: back to draft", campaign_id=campaign_id,
                    failing=[item["key"] for item in failing])  # fmt: skip
