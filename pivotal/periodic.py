"""A job the daemon runs over and over on its event loop (the campaigns' clock, lead allocation, lead pushes).

One loop for all of them: a database outage in a run is logged and the next run comes as usual; a fault of
ours is logged with its traceback rather than ending every later run; ``close`` cancels the loop and waits for
it, so shutdown never raises what a run did.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

log = structlog.get_logger("pivotal.periodic")


class Periodic:
    #: the task's name, and the jobs' word in the log
    name = "periodic"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> bool:
        """One run; True when there is more to do at once (no pause before the next run)."""
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            more = False
            try:
                more = await self.run_once()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:  # an outage: the next run
                log.warning("periodic job: database unavailable", job=self.name, error=repr(exc))
            except Exception:  # a fault of ours must not stop every later run
                log.exception("periodic job failed", job=self.name)
            if not more:
                await asyncio.sleep(self.interval_s)
