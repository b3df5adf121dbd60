"""Leads pushed to clients' webhooks: due deliveries claimed, signed, posted, and recorded.

See ``crm.orders.push`` for what a client receives and how it checks it, ``crm.orders.deliveries`` for the
queue. One request carries up to 100 leads of one order; the client's answer decides for all of them.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
import asyncpg
import structlog
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from admin_api.portal_routes import PortalLead
from crm.orders import deliveries
from crm.orders.push import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, url_problem
from dialer.connections import Sealer, TelephonyError
from pivotal.periodic import Periodic

log = structlog.get_logger("pivotal.lead_pusher")

TIMEOUT_S = 10.0


class PublicOnlyResolver(ThreadedResolver):
    """Resolves as usual, then keeps only public addresses: a webhook's name that points into this network
    (``127.1``, ``10.0.0.5.nip.io``, a name rebound after it was checked) is refused when the push connects."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:  # fmt: skip
        found = [r for r in await super().resolve(host, port, family) if ipaddress.ip_address(r["host"]).is_global]
        if not found:
            raise OSError(f"{host} resolves only to addresses of this network")
        return found


class LeadPusher(Periodic):
    name = "lead-pusher"

    def __init__(self, pool: asyncpg.Pool, sealer: Sealer, clock: Callable[[], float], *, idle_s: float = 1.0,
                 retry_base_s: float = 30.0, allow_private: bool = False) -> None:  # fmt: skip
        super().__init__(idle_s)
        self.pool, self.sealer, self.clock = pool, sealer, clock
        self.retry_base_s, self.allow_private = retry_base_s, allow_private
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        connector = aiohttp.TCPConnector(resolver=None if self.allow_private else PublicOnlyResolver())
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S), connector=connector)
        super().start()

    async def close(self) -> None:
        await super().close()
        if self._session is not None:
            await self._session.close()

    async def run_once(self) -> bool:
        return await self.push_once()

    async def push_once(self) -> bool:
        """Pushes one batch if one is due; False when nothing was."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        claimed = await deliveries.claim(self.pool, now)
        if claimed is None:
            return False
        ids = [delivery_id for delivery_id, _ in claimed.deliveries]
        if not ids:
            return True
        error = await self._post(claimed)
        done = datetime.fromtimestamp(self.clock(), UTC)
        if error is None:
            await deliveries.delivered(self.pool, ids, done)
            log.info("leads pushed", order_id=claimed.order_id, leads=len(ids))
        else:
            await deliveries.failed(self.pool, ids, error, done, self.retry_base_s)
            log.warning("lead push failed", order_id=claimed.order_id, leads=len(ids), error=error)
        return True

    async def _post(self, claimed: deliveries.Claimed) -> str | None:
        """None when the client took the batch; otherwise why not."""
        if claimed.sealed_secret is None or not claimed.url:
            return "the order has no webhook secret or URL"
        refused = url_problem(claimed.url, self.allow_private)  # checked when set; the settings may have changed
        if refused is not None:
            return refused
        try:
            secret = self.sealer.open(claimed.sealed_secret)
        except TelephonyError as exc:
            return str(exc)
        body = json.dumps({
            "order_id": claimed.order_id,
            "deliveries": [{"delivery_id": delivery_id, "lead": PortalLead.model_validate(lead).model_dump(mode="json")}
                           for delivery_id, lead in claimed.deliveries],
        }, separators=(",", ":")).encode()  # fmt: skip
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: signature(secret, timestamp, body),
                   DELIVERY_HEADER: str(claimed.deliveries[0][0])}  # fmt: skip
        assert self._session is not None
        try:
            async with self._session.post(claimed.url, data=body, headers=headers, allow_redirects=False) as answer:
                if 200 <= answer.status < 300:
                    return None
                return f"the webhook answered {answer.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # the client reads this (GET /api/portal/deliveries): what went wrong inside stays in our log
            log.info("lead push unanswered", order_id=claimed.order_id, error=repr(exc))
            return "the webhook did not answer (no connection, or no answer within 10 s)"
