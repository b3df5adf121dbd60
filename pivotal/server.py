"""The daemon's lifecycle: start -> serve -> ordered, bounded graceful shutdown.

Signal handlers only set flags (uvicorn's rule); the work happens in :meth:`Server.serve`. Shutdown order:
stop accepting connections, close idle keep-alive connections, let in-flight requests finish for up to
``shutdown_grace_s``, cancel what is left (logged), then tear the resources down in reverse (pool,
embedded PostgreSQL). A second SIGINT or SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import structlog
from aiohttp import web

from config import Settings
from pivotal.sdnotify import notify
from pivotal.stall_watch import settle_heap

log = structlog.get_logger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Exit status of a forced exit (second signal), as a shell reports SIGINT.
FORCED_EXIT_CODE = 130


class Server:
    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.should_exit = asyncio.Event()
        self.port: int | None = None

    def handle_signal(self, sig: signal.Signals) -> None:
        if self.should_exit.is_set():
            log.warning("forced_exit", signal=sig.name)
            os._exit(FORCED_EXIT_CODE)
        log.info("shutdown_requested", signal=sig.name)
        self.should_exit.set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.handle_signal, sig)
        server = self.settings.server
        runner = web.AppRunner(
            self.app, handle_signals=False, shutdown_timeout=server.shutdown_grace_s, access_log=None
        )
        try:
            await runner.setup()  # starts the cleanup contexts: database, pool, schema, services
            if not self.should_exit.is_set():
                site = web.TCPSite(runner, server.host, server.port, reuse_address=True)
                await site.start()
                self.port = _bound_port(runner)
                log.info("listening", host=server.host, port=self.port, url=f"http://{server.host}:{self.port}")
                for listener in self.app.get(ON_LISTENING, []):
                    listener(self.port)
                settle_heap()
                notify("READY=1")
                await self.should_exit.wait()
            notify("STOPPING=1")
            log.info("shutting_down", grace_s=server.shutdown_grace_s)
        finally:
            # Sites stop first (no new connections), then in-flight requests get the grace period, then
            # the cleanup contexts unwind in reverse.
            await runner.cleanup()
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)
        log.info("stopped")


#: Called with the bound port once the daemon listens (sandbox mode points the simulated carrier's webhooks at it).
ON_LISTENING: web.AppKey[list[Callable[[int], None]]] = web.AppKey("on_listening")


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the site bound no TCP address")
