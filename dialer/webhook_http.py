"""``POST /webhooks/telnyx``: the HTTP face of WebhookIngress (no session auth: the signature is the proof)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from dialer.webhook_ingress import Outcome, WebhookIngress

log = structlog.get_logger(__name__)

#: Called with (result label, seconds spent) for every delivery.
Observe = Callable[[str, float], None]
WebhookHandler = Callable[[web.Request], Awaitable[web.Response]]
WEBHOOK_HANDLER: web.AppKey[WebhookHandler] = web.AppKey("webhook_handler")


def webhook_handler(ingress: WebhookIngress, observe: Observe) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = await _read_bounded(request, ingress.max_bytes)
        if body is None:
            outcome = Outcome(413, "rejected_oversized", f"larger than {ingress.max_bytes} bytes")
        else:
            outcome = ingress.handle(request.headers, body)
        observe(outcome.result, time.perf_counter() - started)
        if outcome.status == 200:
            return web.json_response({"result": outcome.result})
        log.warning("webhook_refused", status=outcome.status, result=outcome.result, detail=outcome.message,
                    peer=request.remote)  # fmt: skip
        problem = {"type": "about:blank", "title": outcome.result, "status": outcome.status, "detail": outcome.message}
        return web.json_response(problem, status=outcome.status, content_type="application/problem+json")

    return handle


async def _read_bounded(request: web.Request, limit: int) -> bytes | None:
    """The whole body (however many segments or chunks it came in), or None once it passes ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
