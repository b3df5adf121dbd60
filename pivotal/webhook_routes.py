"""The carrier's webhook route, declared like every other route (public: the Ed25519 signature is the proof)."""

from __future__ import annotations

from aiohttp import web

from admin_api.api import Api, ApiRequest
from dialer.webhook_http import WEBHOOK_HANDLER

api = Api()


@api.route("POST", "/webhooks/telnyx", summary="Telnyx Call Control webhooks (Ed25519-signed)", tag="telephony",
           roles=None, upload_media_type="application/json")  # fmt: skip
async def telnyx_webhook(req: ApiRequest) -> web.Response:
    """Verified (signature, +-300 s) before parsing; de-duplicated by event id; 200 once applied to the leg.
    Refusals are problems: 401 (signature or time), 400 (not an event), 413 (too large), 503 (no key set)."""
    return await req.request.app[WEBHOOK_HANDLER](req.request)
