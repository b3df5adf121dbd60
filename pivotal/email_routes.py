"""The links inside every message (public: the signed token is the proof), and the sandbox's captured mail.

- ``POST /e/u/{token}``: RFC 8058 one-click unsubscribe (or the confirmation page's button): no login, no
  redirect; 200 once the suppression is committed.
- ``GET /e/u/{token}``: a page naming the address with a button; it never unsubscribes by itself (mail
  scanners fetch every link).
- ``GET /e/o/{token}.gif``: the open pixel (always a GIF, even for a bad token: nothing to learn by probing).
- ``GET /e/c/{token}``: a tracked link: the click is recorded and the browser sent on to the URL signed into the
  token (a forged or altered token gets 404, never a redirect).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from admin_api.api import Api, ApiRequest, client_address
from admin_api.problems import Problem
from crm.audience.emails import normalise_email
from crm.roles import Role
from dispatch import campaigns, reports, unsubscribe
from dispatch.engine import EmailEngine
from dispatch.templates import TemplateProblem
from dispatch.tokens import BadToken
from dispatch.tracking import EventBuffer, engagement

api = Api()

EMAIL_ENGINE: web.AppKey[EmailEngine] = web.AppKey("email_engine", EmailEngine)
ENGAGEMENT: web.AppKey[EventBuffer] = web.AppKey("email_engagement", EventBuffer)
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}  # fmt: skip
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache"}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#172554}}
h1{{font-size:1.4rem;color:#1e3a8a}}button{{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:6px;
background:#1d4ed8;color:#fff;cursor:pointer}}button:focus{{outline:3px solid #0f766e;outline-offset:2px}}</style>
</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"""
    return web.Response(status=status, text=document, content_type="text/html", headers=PAGE_HEADERS)


async def _recipient(req: ApiRequest) -> unsubscribe.Recipient | None:
    engine = req.request.app[EMAIL_ENGINE]
    try:
        claim = engine.signer.verify(req.request.match_info["token"], "u")
    except BadToken:
        return None
    return await unsubscribe.recipient(req.services.pool, claim.message_id)


_INVALID = "This unsubscribe link is not valid. Copy the whole link from the message, or reply to the sender."


@api.route("GET", "/e/u/{token}", summary="Unsubscribe page (does not unsubscribe by itself)", tag="email",
           roles=None)  # fmt: skip
async def unsubscribe_page(req: ApiRequest) -> web.Response:
    who = await _recipient(req)
    if who is None:
        return _page("Link not valid", f"<p>{_INVALID}</p>", 404)
    return _page(
        "Unsubscribe",
        f"<p>Stop all marketing e-mail to <strong>{html.escape(who.address)}</strong>"
        f" (you received it from {html.escape(who.campaign_name)})?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        "<button type=submit>Unsubscribe</button></form>",
    )


@api.route("POST", "/e/u/{token}", summary="One-click unsubscribe (RFC 8058): no login, no redirect", tag="email",
           roles=None, upload_media_type="application/x-www-form-urlencoded")  # fmt: skip
async def unsubscribe_post(req: ApiRequest) -> web.Response:
    """Answers 200 once the global e-mail suppression is committed; 404 for a link that is not ours."""
    request = req.request
    body = await request.content.read(2048)  # RFC 8058's body is "List-Unsubscribe=One-Click"; nothing else is read
    who = await _recipient(req)
    if who is None:
        return _page("Link not valid", f"<p>{_INVALID}</p>", 404)
    one_click = b"List-Unsubscribe=One-Click" in body and "text/html" not in request.headers.get("Accept", "")
    await unsubscribe.unsubscribe(req.services.pool, who, one_click=one_click,
                                  client_ip=client_address(request, req.services.trust_forwarded_for))  # fmt: skip
    return _page("You are unsubscribed",
                 f"<p>{html.escape(who.address)} will get no more marketing e-mail from us.</p>")  # fmt: skip


@api.route("GET", "/e/o/{token}", summary="Open-tracking pixel", tag="email", roles=None)
async def open_pixel(req: ApiRequest) -> web.Response:
    request = req.request
    token = request.match_info["token"].removesuffix(".gif")
    try:
        claim = request.app[EMAIL_ENGINE].signer.verify(token, "o", or_message=True)
    except BadToken:
        claim = None
    if claim is not None:
        request.app[ENGAGEMENT].add(engagement("open", claim.message_id, None,
                                               request.headers.get("User-Agent", ""), request.method))  # fmt: skip
    return web.Response(body=PIXEL, content_type="image/gif", headers=NO_CACHE)


@api.route("GET", "/e/c/{token}", summary="Tracked link: records the click, redirects to the signed URL",
           tag="email", roles=None)  # fmt: skip
async def click(req: ApiRequest) -> web.Response:
    request = req.request
    try:
        claim = request.app[EMAIL_ENGINE].signer.verify(request.match_info["token"], "c")
    except BadToken:
        return _page("Link not valid", "<p>This link is not valid. Copy the whole link from the message.</p>", 404)
    if not claim.extra.startswith(("https://", "http://")):
        return _page("Link not valid", "<p>This link is not valid.</p>", 404)
    request.app[ENGAGEMENT].add(engagement("click", claim.message_id, claim.extra,
                                           request.headers.get("User-Agent", ""), request.method))  # fmt: skip
    raise web.HTTPFound(claim.extra, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@api.route("GET", "/e/c/{token}/{link}", summary="Tracked link by number (the message's token): records the "
           "click, redirects to the variant's link", tag="email", roles=None)  # fmt: skip
async def numbered_click(req: ApiRequest) -> web.Response:
    request = req.request
    engine = request.app[EMAIL_ENGINE]
    raw = request.match_info["link"]
    target = None
    try:
        claim = engine.signer.verify(request.match_info["token"], "m")
    except BadToken:
        claim = None
    if claim is not None and raw.isascii() and raw.isdigit() and len(raw) < 5:
        target = await engine.constant_link(claim.message_id, int(raw))
    if claim is None or target is None or not target.startswith(("https://", "http://")):
        return _page("Link not valid", "<p>This link is not valid. Copy the whole link from the message.</p>", 404)
    request.app[ENGAGEMENT].add(engagement("click", claim.message_id, target,
                                           request.headers.get("User-Agent", ""), request.method))  # fmt: skip
    raise web.HTTPFound(target, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@api.route("GET", "/api/email/captures", summary="Messages the sandbox captured, newest first", tag="email",
           roles=[Role.ADMIN, Role.CAMPAIGN_MANAGER])  # fmt: skip
async def captures(req: ApiRequest) -> dict[str, Any]:
    box = req.request.app[EMAIL_ENGINE].box
    raw = req.request.query.get("limit", "50")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 500:
        raise Problem(400, "limit: a whole number from 1 to 500")
    limit = int(raw)
    items = list(box.messages)[-limit:][::-1]
    return {"items": [item.summary() for item in items], "kept": len(box.messages)}


@api.route("GET", "/api/email/captures/{captureId}", summary="One captured message, parts and headers",
           tag="email", roles=[Role.ADMIN, Role.CAMPAIGN_MANAGER])  # fmt: skip
async def capture(req: ApiRequest) -> dict[str, Any]:
    item = req.request.app[EMAIL_ENGINE].box.find(req.path_int("captureId"))
    if item is None:
        raise Problem(404, "no such captured message (the sandbox keeps the last 10,000)")
    message = item.parsed()
    text, html_part = message.iter_parts()
    return item.summary() | {"headers": {k: str(v) for k, v in message.items()},
                             "text": text.get_content(), "html": html_part.get_content()}  # fmt: skip


class TestSendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[str] = Field(min_length=1, max_length=10, description="addresses that get every variant")
    contact_id: int | None = Field(None, ge=1, le=2**63 - 1, description="render for this contact (default: the "
                                   "audience's first)")  # fmt: skip


class TestSendOut(BaseModel):
    results: list[dict[str, str]]
    recorded: bool = Field(description="every message went out: the checklist's test-send item passes")


@api.route("POST", "/api/email-campaigns/{campaignId}/test-send", summary="Send every variant to test addresses "
           "through the campaign's provider", tag="email", roles=[Role.ADMIN, Role.CAMPAIGN_MANAGER,
           Role.CONTENT_CREATOR], body=TestSendIn, response=TestSendOut)  # fmt: skip
async def test_send(req: ApiRequest) -> TestSendOut:
    campaign_id = req.path_int("campaignId")
    if req.body.contact_id is not None and not req.user.roles & {Role.ADMIN, Role.CAMPAIGN_MANAGER}:
        # a template can print any field: rendering for a chosen contact is reading that contact
        raise Problem(403, "contact_id: only admins and campaign managers choose whom a test is rendered for")
    addresses = []
    for raw in req.body.to:
        normal = normalise_email(raw)
        if normal.email is None:
            raise Problem(422, f"to: {raw[:100]!r} is not an e-mail address: {normal.invalid_reason}")
        addresses.append(normal.email)
    pool = req.services.pool
    if not await pool.fetchval(
        "SELECT 1 FROM campaigns WHERE id = $1 AND channel = 'email' AND deleted_at IS NULL", campaign_id
    ):
        raise Problem(404, f"e-mail campaign {campaign_id} does not exist")
    try:
        results = await req.request.app[EMAIL_ENGINE].test_send(campaign_id, addresses, req.body.contact_id)
    except TemplateProblem as exc:
        raise Problem(422, f"a variant does not render: {exc}", part=exc.part, line=exc.line, field=exc.field) from None
    except (LookupError, ValueError) as exc:
        raise Problem(409, str(exc)) from None
    recorded = all(r.result == "sent" for r in results)
    if recorded:
        async with pool.acquire() as conn:
            await campaigns.record_test_send(conn, req.actor, campaign_id, addresses,
                                             datetime.fromtimestamp(req.services.clock(), UTC))  # fmt: skip
    return TestSendOut(results=[{"variant": r.variant, "to": r.to, "result": r.result, "detail": r.detail}
                                for r in results], recorded=recorded)  # fmt: skip


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: Literal["minute", "hour", "day"] = "hour"


@api.route("GET", "/api/email-campaigns/{campaignId}/report", summary="Sent, delivered, bounced, unique opens and "
           "clicks, unsubscribes, complaints and their rates, per variant and over time", tag="email",
           roles=[Role.ADMIN, Role.CAMPAIGN_MANAGER, Role.SUPERVISOR, Role.QUALITY_ANALYST],
           query=ReportQuery)  # fmt: skip
async def report(req: ApiRequest) -> dict[str, Any]:
    campaign_id = req.path_int("campaignId")
    pool = req.services.pool
    if not await pool.fetchval(
        "SELECT 1 FROM campaigns WHERE id = $1 AND channel = 'email' AND deleted_at IS NULL", campaign_id
    ):
        raise Problem(404, f"e-mail campaign {campaign_id} does not exist")
    out = await reports.campaign_report(pool, campaign_id, req.query.bucket)
    for point in out["series"]:
        point["at"] = point["at"].isoformat()
    return {"campaign_id": campaign_id, **out}
