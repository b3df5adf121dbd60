"""Provider webhooks for e-mail (public: the signature is the proof): bounces, complaints, deliveries.

Each request is verified before anything is parsed or stored (``dispatch.inbound``); the events are applied in
one transaction (``dispatch.feedback``: stored once, bounces and complaints suppressed) before the 200, so the
provider retries whatever we did not keep. Refusals are problems: 401 with the reason (signature, time, replayed
token, certificate URL, topic), 400 (malformed), 413 (too large), 503 (no key configured).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from admin_api.api import Api, ApiRequest
from admin_api.problems import Problem
from config.settings import EmailSettings
from dispatch import feedback, inbound
from dispatch.inbound import InboundEvent, Rejected, TokenCache

log = structlog.get_logger("pivotal.email.webhooks")
api = Api()
MAX_BODY = 5 * 1024 * 1024
CERT_CACHE_S = 3600.0


@dataclass
class EmailWebhooks:
    settings: EmailSettings
    clock: Any = time.time
    tokens: TokenCache = field(default_factory=TokenCache)
    certificates: dict[str, tuple[float, bytes]] = field(default_factory=dict)
    sendgrid_key: ec.EllipticCurvePublicKey | None = None
    #: (provider, kind): the daemon's metrics
    count: Any = lambda provider, kind: None

    def __post_init__(self) -> None:
        self.cert_pattern = re.compile(self.settings.sns_cert_url_pattern)
        if self.settings.sendgrid_webhook_public_key:
            self.sendgrid_key = inbound.sendgrid_key(self.settings.sendgrid_webhook_public_key)

    async def certificate(self, url: str) -> bytes:
        """The SNS signing certificate (the URL was checked against the pattern), cached for an hour."""
        now = time.monotonic()
        cached = self.certificates.get(url)
        if cached and now - cached[0] < CERT_CACHE_S:
            return cached[1]
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
                if response.status != 200:
                    raise Rejected(401, f"certificate_unavailable ({response.status})")
                pem = await read_all(response.content, 65_536)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Rejected(401, f"certificate_unavailable ({type(exc).__name__})") from None
        if pem is None:
            raise Rejected(401, "certificate_unavailable (over 64 KB)")
        self.certificates[url] = (now, pem)
        return pem

    async def confirm_subscription(self, url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            log.info("sns subscription confirmed", status=response.status)


EMAIL_WEBHOOKS: web.AppKey[EmailWebhooks] = web.AppKey("email_webhooks", EmailWebhooks)


async def read_all(stream: aiohttp.StreamReader, cap: int) -> bytes | None:
    """The whole stream, or None past ``cap`` bytes. (``read(n)`` returns what has arrived so far, which for a
    large body is a part: its signature would not verify.)"""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(65_536):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Problem(413, f"a webhook body is at most {MAX_BODY} bytes")
    body = await read_all(request.content, MAX_BODY)
    if body is None:
        raise Problem(413, f"a webhook body is at most {MAX_BODY} bytes")
    return body


async def _apply(req: ApiRequest, provider: str, events: list[InboundEvent]) -> web.Response:
    hooks = req.request.app[EMAIL_WEBHOOKS]
    applied = await feedback.apply(req.services.pool, events, hooks.settings.soft_bounce_limit)
    for event in events:
        hooks.count(provider, event.kind)
    log.info("email webhook", provider=provider, events=len(events), stored=applied.stored,
             duplicates=applied.duplicates, unmatched=applied.unmatched, suppressed=applied.suppressed)  # fmt: skip
    return web.json_response({"received": len(events), "stored": applied.stored, "duplicates": applied.duplicates})


def _refused(req: ApiRequest, exc: Rejected, provider: str) -> Problem:
    log.warning("email webhook refused", provider=provider, reason=exc.reason)
    req.request.app[EMAIL_WEBHOOKS].count(provider, f"rejected_{exc.reason.split(' ')[0]}")
    return Problem(exc.status, f"refused: {exc.reason}", reason=exc.reason)


@api.route("POST", "/webhooks/email/sendgrid", summary="SendGrid Event Webhook (ECDSA-signed)", tag="email",
           roles=None, upload_media_type="application/json")  # fmt: skip
async def sendgrid_webhook(req: ApiRequest) -> web.Response:
    hooks = req.request.app[EMAIL_WEBHOOKS]
    if hooks.sendgrid_key is None:
        raise Problem(503, "email.sendgrid_webhook_public_key is not set")
    body = await _body(req.request)
    try:
        events = inbound.sendgrid_events(hooks.sendgrid_key, req.request.headers, body, hooks.clock())
    except Rejected as exc:
        raise _refused(req, exc, "sendgrid") from None
    return await _apply(req, "sendgrid", events)


@api.route("POST", "/webhooks/email/ses", summary="Amazon SES events through SNS (signature versions 1 and 2)",
           tag="email", roles=None, upload_media_type="text/plain")  # fmt: skip
async def ses_webhook(req: ApiRequest) -> web.Response:
    hooks = req.request.app[EMAIL_WEBHOOKS]
    if not hooks.settings.sns_topic_arns:  # any AWS account can sign SNS messages: only our topics are evidence
        raise Problem(503, "email.sns_topic_arns is not set")
    body = await _body(req.request)
    try:
        envelope = inbound.sns_envelope(body, hooks.cert_pattern)
        pem = await hooks.certificate(envelope.cert_url)
        inbound.sns_verify(envelope, pem, hooks.clock(), frozenset(hooks.settings.sns_topic_arns))
    except Rejected as exc:
        raise _refused(req, exc, "ses") from None
    if envelope.kind == "SubscriptionConfirmation" and envelope.subscribe_url:
        await hooks.confirm_subscription(envelope.subscribe_url)
        return web.json_response({"confirmed": True})
    if envelope.kind != "Notification":
        return web.json_response({"received": 0})
    try:
        events = inbound.ses_events(envelope, hooks.clock())
    except Rejected as exc:
        raise _refused(req, exc, "ses") from None
    return await _apply(req, "ses", events)


@api.route("POST", "/webhooks/email/mailgun", summary="Mailgun webhooks (HMAC-signed, tokens used once)",
           tag="email", roles=None, upload_media_type="application/json")  # fmt: skip
async def mailgun_webhook(req: ApiRequest) -> web.Response:
    hooks = req.request.app[EMAIL_WEBHOOKS]
    key = hooks.settings.mailgun_webhook_signing_key
    if not key:
        raise Problem(503, "email.mailgun_webhook_signing_key is not set")
    body = await _body(req.request)
    try:
        events = inbound.mailgun_events(key, hooks.tokens, body, hooks.clock())
    except Rejected as exc:
        raise _refused(req, exc, "mailgun") from None
    return await _apply(req, "mailgun", events)
