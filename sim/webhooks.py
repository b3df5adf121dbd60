"""Webhook delivery as Telnyx does it: Ed25519-signed over ``timestamp|body``, retried on failure (s7.2)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from nacl.signing import SigningKey

if TYPE_CHECKING:
    from sim.carrier import Options

RETRIES_MS = (1000, 2000, 4000)  # sim choice: Telnyx's voice retry schedule is undocumented (s8.1)


class WebhookSender:
    def __init__(self, key: SigningKey, options: Options) -> None:
        self._key = key
        self._options = options
        self._session: aiohttp.ClientSession | None = None
        self.deliveries = 0
        self.delivery_failures = 0
        self.dropped = 0
        self.posting = 0  # deliveries under way (attempts and retry pauses)
        self.undelivered = 0  # events that failed every attempt

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, data: dict[str, Any], *, drop_first: bool = False) -> None:
        """One event, signed afresh for each attempt (meta.attempt changes), retried on failure. ``drop_first``
        (chaos): the first attempt is lost on the way, as if the receiver never answered."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._options.webhook_timeout_s))
        self.posting += 1
        try:
            await self._attempts(url, data, drop_first=drop_first)
        finally:
            self.posting -= 1

    async def _attempts(self, url: str, data: dict[str, Any], *, drop_first: bool) -> None:
        assert self._session is not None
        for attempt, pause_ms in enumerate((0, *RETRIES_MS), start=1):
            await asyncio.sleep(pause_ms / 1000)
            if attempt == 1 and drop_first:
                self.dropped += 1
                continue
            body = json.dumps({"data": data, "meta": {"attempt": attempt, "delivered_to": url}}).encode()
            timestamp = str(int(time.time()))
            signature = self._key.sign(timestamp.encode() + b"|" + body).signature
            headers = {"Content-Type": "application/json", "telnyx-timestamp": timestamp,
                       "telnyx-signature-ed25519": base64.b64encode(signature).decode()}  # fmt: skip
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    if 200 <= response.status < 300:
                        self.deliveries += 1
                        return
            except (aiohttp.ClientError, TimeoutError, ValueError, TypeError):  # unreachable, or a URL it cannot use
                pass
            self.delivery_failures += 1
        self.undelivered += 1
