"""Published leads go to the orders they fit, every few seconds, without anyone asking.

``POST /api/orders/allocate`` runs the same at once. A cheap check comes first, so an idle system costs one
indexed query a tick; the allocation itself serialises across nodes on an advisory lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from crm.orders.store import allocate_published

log = structlog.get_logger("pivotal.lead_allocator")

TICK_S = 10.0
_WAITING = """SELECT EXISTS (
  SELECT 1 FROM leads l JOIN order_campaigns oc ON oc.campaign_id = l.campaign_id
    JOIN campaign_orders o ON o.id = oc.order_id AND o.status = 'active'
   WHERE l.status = 'published' AND l.campaign_order_id IS NULL)"""


class LeadAllocator:
    def __init__(self, pool: asyncpg.Pool, clock: Callable[[], float], tick_s: float = TICK_S) -> None:
        self.pool, self.clock, self.tick_s = pool, clock, tick_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lead-allocator")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                if await self.pool.fetchval(_WAITING):
                    given = await allocate_published(self.pool, datetime.fromtimestamp(self.clock(), UTC))
                    if given:
                        log.info("leads allocated to orders", leads=given)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("lead allocation: database unavailable", error=repr(exc))
            await asyncio.sleep(self.tick_s)
