"""A simulated carrier wired to a webhook receiver that checks every delivery with the telnyx SDK's verifier."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import telnyx
from aiohttp import web
from aiohttp.test_utils import TestServer
from telnyx import AsyncTelnyx

from sim.carrier import Options, SimCarrier
from sim.scenarios import Script


def fast(outcome: str) -> Script:
    return Script(outcome, ring_ms=150, greeting_ms=200, amd_delay_ms=100, talk_ms=30_000)


class Receiver:
    """A webhook endpoint that verifies every delivery with the SDK (telnyx.webhooks.unwrap) and keeps it."""

    def __init__(self, public_key: str) -> None:
        self.client = telnyx.Telnyx(api_key="unused", public_key=public_key)
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        try:
            event = self.client.webhooks.unwrap(body, headers=dict(request.headers))
        except Exception as exc:  # any verification failure is a test failure
            self.failures.append(str(exc))
            return web.Response(status=401)
        data = getattr(event, "data", None)
        payload = getattr(data, "payload", None)
        self.events.append((str(getattr(data, "event_type", "")), payload.model_dump() if payload else {}))
        return web.Response(text="ok")


@contextlib.asynccontextmanager
async def sim_world(options: Options | None = None) -> AsyncIterator[tuple[SimCarrier, AsyncTelnyx, Receiver]]:
    """The simulator on a real port, its webhooks going to a Receiver, and an SDK client pointed at it."""
    carrier = SimCarrier(options or Options(seed=3))
    receiver = Receiver(carrier.public_key)
    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver.handle)
    hooks = TestServer(hook_app, host="127.0.0.1")
    await hooks.start_server()
    carrier.options.webhook_url = str(hooks.make_url("/hook"))
    server = TestServer(carrier.app(), host="127.0.0.1")
    await server.start_server()
    client = AsyncTelnyx(api_key="key", base_url=str(server.make_url("/v2")), max_retries=0)
    try:
        yield carrier, client, receiver
    finally:
        await client.close()
        await server.close()
        await hooks.close()


async def events_of(receiver: Receiver, ccid: str, until: str, timeout: float = 5.0) -> list[str]:
    started = time.perf_counter()
    while True:
        kinds = [kind for kind, payload in receiver.events if payload.get("call_control_id") == ccid]
        if until in kinds:
            return kinds
        assert time.perf_counter() - started < timeout, kinds
        await asyncio.sleep(0.01)
