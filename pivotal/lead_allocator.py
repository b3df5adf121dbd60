"""Published leads go to the orders they fit, and the orders steer their campaigns' dialling, every few seconds.

``POST /api/orders/allocate`` runs the same at once. Cheap checks come first, so an idle system costs two
small queries a tick: allocation only when a published lead waits, steering (``crm.orders.steering``) only when
the orders or what they hold changed, or every ten minutes for members added meanwhile. The allocation
serialises across nodes on an advisory lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from crm.orders.store import allocate_published, steer_campaigns
from pivotal.periodic import Periodic

log = structlog.get_logger("pivotal.lead_allocator")

TICK_S = 10.0
RESTEER_S = 600.0
_ORDERS_STATE = """SELECT (SELECT count(*) || '/' || coalesce(max(updated_at)::text, '') FROM campaign_orders) || '/' ||
                          (SELECT count(*) || '/' || count(*) FILTER (WHERE status = 'returned') FROM leads
                            WHERE campaign_order_id IS NOT NULL)"""
#: what allocation depends on: the leads waiting (some never fit: those must not make every tick a full run)
_WAITING = """SELECT count(*) || '/' || coalesce(max(published_at)::text, '') FROM leads
               WHERE status = 'published' AND campaign_order_id IS NULL"""


class LeadAllocator(Periodic):
    name = "lead-allocator"

    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], float], tick_s: float = TICK_S) -> None:
        super().__init__(tick_s)
        self.pool, self.clock = pool, clock
        self._state = ""
        self._waiting = ""
        self._steered_at = 0.0

    async def run_once(self) -> bool:
        await self.tick()
        return False

    async def tick(self) -> tuple[int, int]:
        """(leads allocated, members steered)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        given = 0
        state = await self.pool.fetchval(_ORDERS_STATE)
        # the day too: a pace allows more each week, an order starts or ends on a day
        waiting = f"{await self.pool.fetchval(_WAITING)}/{now.date()}/{state}"
        if not waiting.startswith("0/") and waiting != self._waiting:
            result = await allocate_published(self.pool, now, wait=False)
            if result is not None:  # None: another node is allocating; try again next tick
                given = result
                state = await self.pool.fetchval(_ORDERS_STATE)
                self._waiting = f"{await self.pool.fetchval(_WAITING)}/{now.date()}/{state}"
            if given:
                log.info("leads allocated to orders", leads=given)
        if state == self._state and self.clock() - self._steered_at < RESTEER_S:
            return given, 0
        steered = await steer_campaigns(self.pool, now.date())
        self._state, self._steered_at = state, self.clock()
        if steered:
            log.info("campaign members steered by orders", members=steered)
        return given, steered
