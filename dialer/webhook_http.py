"""``POST /webhooks/telnyx``: the HTTP face of WebhookIngress (no session auth: the signature is the proof)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from dialer.webhook_ingress import WebhookIngress

log = structlog.get_logger(__name__)

#: Called with (result label, seconds spent) for every delivery.
Observe = Callable[[str, float], None]
WebhookHandler = Callable[[web.Request], Awaitable[web.Response]]
WEBHOOK_HANDLER: web.AppKey[WebhookHandler] = web.AppKey("webhook_handler")


def webhook_handler(ingress: WebhookIngress, observe: Observe) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await request.content.read(ingress.max_bytes + 1)  # never more than one byte past the limit
        outcome = ingress.handle(request.headers, body)
        observe(outcome.result, time.perf_counter() - started)
        if outcome.status == 200:
            return web.json_response({"result": outcome.result})
        log.warning("webhook_refused", status=outcome.status, result=outcome.result, detail=outcome.message,
                    peer=request.remote)  # fmt: skip
        problem = {"type": "about:blank", "title": outcome.result, "status": outcome.status, "detail": outcome.message}
        return web.json_response(problem, status=outcome.status, content_type="application/problem+json")

    return handle
