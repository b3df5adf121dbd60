"""Carrier adapters for the configured telephony connections: one per API key, that is per Telnyx account.

Telnyx limits dials per account (30 a second over a rolling 5 s by default), so connections sharing an API key
share one adapter and one dial limiter, set from the connections' ``max_dials_per_second`` (the lowest, when
they disagree). When a connection's key changes its next use gets a new adapter; the old one may still carry
a dial or a bridge, so it is closed only after a grace period (or at shutdown), never under a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable

import asyncpg
import structlog

from dialer import connections
from dialer.carrier import Carrier
from dialer.connections import Connection, Sealer, TelephonyError

log = structlog.get_logger(__name__)

DIAL_WINDOW_S = 5.0  # Telnyx's rolling window for the dials-per-second limit
RETIRED_GRACE_S = 60.0  # longer than any command with all its retries


class Carriers:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sealer: Sealer,
        base_url: str,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.pool = pool
        self.observe = observe
        self.sealer = sealer
        self.base_url = base_url
        self._by_account: dict[str, Carrier] = {}  # sha256 of the API key -> adapter
        self._limits: dict[str, dict[int, int]] = {}  # account -> {connection id: its dials per second}
        self._retiring: set[asyncio.Task[None]] = set()

    async def for_connection(self, connection: Connection) -> Carrier:
        """The adapter for this connection's account (created on first use)."""
        key = await connections.api_key(self.pool, self.sealer, connection.id)
        if key is None:
            raise TelephonyError(503, f"telephony connection {connection.name!r} has no API key")
        account = hashlib.sha256(key.encode()).hexdigest()
        for other, limits in self._limits.items():  # the connection moved to another key: forget the old limit
            if other != account:
                limits.pop(connection.id, None)
        limits = self._limits.setdefault(account, {})
        limits[connection.id] = connection.max_dials_per_second
        per_window = min(limits.values()) * int(DIAL_WINDOW_S)
        carrier = self._by_account.get(account)
        self._retire_unused()
        if carrier is None:
            carrier = self._by_account[account] = Carrier(
                key, self.base_url, dials_per_window=per_window, observe=self.observe
            )
        elif carrier.dials.limit != per_window:
            log.info("dial_limit_changed", connection=connection.name, dials_per_window=per_window)
            carrier.dials.limit = per_window
        return carrier

    def _retire_unused(self) -> None:
        """Adapters whose key no connection uses any more are closed after the grace period."""
        for account in [a for a, limits in self._limits.items() if not limits and a in self._by_account]:
            old = self._by_account.pop(account)
            del self._limits[account]
            task = asyncio.create_task(self._close_later(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _close_later(self, carrier: Carrier) -> None:
        try:
            await asyncio.sleep(RETIRED_GRACE_S)
        finally:
            with contextlib.suppress(Exception):
                await carrier.close()

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for carrier in self._by_account.values():
            with contextlib.suppress(Exception):
                await carrier.close()
        self._by_account.clear()
