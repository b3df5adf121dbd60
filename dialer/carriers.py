"""Carrier adapters for the configured telephony connections: one per API key, that is per Telnyx account.

Telnyx limits dials per account (30 a second over a rolling 5 s by default), so connections sharing an API key
share one adapter and one dial limiter, set from the connections' ``max_dials_per_second`` (the lowest, when
they disagree), read afresh at each use so edits and deletions count at once. When a connection's key changes
its next use gets a new adapter, which shares the old one's dial window (a rotated key is the same account);
the old adapter may still carry a dial or a bridge, so it is closed only after a grace period (or at
shutdown), never under a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable

import asyncpg
import structlog

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
        self._accounts: dict[int, str] = {}  # connection id -> account, as last seen
        self._retiring: set[asyncio.Task[None]] = set()

    async def for_connection(self, connection: Connection) -> Carrier:
        """The adapter for this connection's account (created on first use). Ask for it per use rather than keeping
        it: an adapter whose key no connection holds any more is closed a minute later."""
        rows = await self.pool.fetch(
            """SELECT id, api_key_encrypted, max_dials_per_second FROM telephony_connections
                WHERE deleted_at IS NULL AND api_key_encrypted IS NOT NULL"""
        )
        accounts: dict[int, str] = {}
        limits: dict[str, int] = {}
        key = None
        for row in rows:
            try:
                secret = self.sealer.open(row["api_key_encrypted"])
            except TelephonyError:
                if row["id"] == connection.id:
                    raise
                continue  # another connection's unreadable key must not stop this one (it is refused on its own use)
            account = accounts[row["id"]] = hashlib.sha256(secret.encode()).hexdigest()
            limits[account] = min(limits.get(account, row["max_dials_per_second"]), row["max_dials_per_second"])
            if row["id"] == connection.id:
                key = secret
        if key is None:
            raise TelephonyError(503, f"telephony connection {connection.name!r} has no API key")
        account = accounts[connection.id]
        per_window = limits[account] * int(DIAL_WINDOW_S)
        carrier = self._by_account.get(account)
        if carrier is None:
            carrier = self._by_account[account] = Carrier(
                key, self.base_url, dials_per_window=per_window, observe=self.observe
            )
            previous = self._accounts.get(connection.id)
            if previous is not None and previous in self._by_account and previous not in limits:
                # A rotated key of the same Telnyx account (most likely): the old adapter may still be dialling
                # for a while, so both count against one window rather than each against its own.
                carrier.dials = self._by_account[previous].dials
        elif carrier.dials.limit != per_window:
            log.info("dial_limit_changed", connection=connection.name, dials_per_window=per_window)
        carrier.dials.limit = per_window
        self._accounts = accounts
        self._retire(keep=set(limits))
        return carrier

    def _retire(self, keep: set[str]) -> None:
        """Adapters whose key no connection holds any more are closed after the grace period."""
        for account in [a for a in self._by_account if a not in keep]:
            old = self._by_account.pop(account)
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
