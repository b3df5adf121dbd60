"""Keeps a node's SuppressionIndex current: LISTEN for change events, reload when they may have been missed.

Order of start-up matters: LISTEN first, then load, buffering events that arrive meanwhile and replaying them
on the loaded snapshot (each event sets its key's final state, and PostgreSQL delivers them in commit order,
so replaying ones the snapshot already holds is harmless). The load runs on a second connection: PostgreSQL
holds back notifications from a session inside a transaction, so the listening connection stays idle and
events keep reaching the index in force while a new one loads. A lost connection may have dropped events:
it is noticed at once (termination listener) or by the periodic check, and after reconnecting the index is
loaded again. A bulk change (an import) sends one "reload" event instead of millions. ``healthy`` says
whether the listening connection has been confirmed recently: the dialer stops dialling when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from crm.compliance.suppression_index import SuppressionIndex, load_index

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "pivotal_suppressions"
#: Reload (folding overlays into the arrays) once this many changes have piled up.
RELOAD_AFTER_CHANGES = 200_000
#: How often the listening connection is checked; a dead one is replaced (and the index reloaded).
HEALTH_CHECK_S = 2.0
#: The feed is unhealthy when the listener has not been confirmed for this long.
STALE_AFTER_S = 3 * HEALTH_CHECK_S

Connect = Callable[[], Awaitable[asyncpg.Connection]]
#: Called with each event's propagation delay in seconds (commit to applied), for metrics.
LagObserver = Callable[[float], None]


class SuppressionFeed:
    def __init__(
        self, connect: Connect, *, observe_lag: LagObserver | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._connect = connect
        self._observe_lag = observe_lag
        self._clock = clock
        self.index = SuppressionIndex()
        self._conn: asyncpg.Connection | None = None
        self._buffer: list[dict[str, Any]] | None = None  # events that arrive while a load runs
        self._reload_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.events_applied = 0
        self._confirmed_at = 0.0  # monotonic time the listening connection last proved alive

    @property
    def healthy(self) -> bool:
        """The listener was confirmed alive within STALE_AFTER_S: changes are reaching this node."""
        return self._conn is not None and time.monotonic() - self._confirmed_at < STALE_AFTER_S

    async def start(self) -> None:
        """Listen and load once (raises if the database is unreachable), then keep current in the background."""
        await self._listen_and_load()
        self._task = asyncio.create_task(self._run(), name="suppression-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop_connection()

    async def _listen_and_load(self) -> None:
        await self._drop_connection()
        conn = await self._connect()
        self._conn = conn
        self._buffer = []
        conn.add_termination_listener(lambda _conn: self._reload_requested.set())  # wake _run at once
        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        self._confirmed_at = time.monotonic()
        try:
            await self._load()
        except BaseException:
            await self._drop_connection()
            raise

    async def _load(self) -> None:
        """Load a new index on a connection of its own (the listener must stay outside transactions)."""
        if self._buffer is None:
            self._buffer = []
        self._reload_requested.clear()
        loader = await self._connect()
        try:
            index = await load_index(loader)
        finally:
            with contextlib.suppress(Exception):
                await loader.close(timeout=2)
        buffered, self._buffer = self._buffer, None
        for event in buffered:
            self._apply(index, event, replay=True)
        self.index = index
        self.ready.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
            if not isinstance(event, dict) or "op" not in event:
                raise ValueError("not an event")
        except ValueError:
            log.warning("suppression_event_unreadable", payload=payload[:200])
            return
        self._confirmed_at = time.monotonic()
        if event["op"] == "reload":
            self._reload_requested.set()
            return
        self._apply(self.index, event)  # the index in force, also while a new one loads
        if self._buffer is not None:
            self._buffer.append(event)

    def _apply(self, index: SuppressionIndex, event: dict[str, Any], *, replay: bool = False) -> None:
        try:
            for change in event.get("changes") or [event]:
                index.apply(change)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("suppression_event_invalid", error=str(exc), event=str(event)[:200])
            self._reload_requested.set()  # the index may now be wrong: read it again
            return
        if replay:
            return
        self.events_applied += 1
        if self._observe_lag is not None and isinstance(event.get("at"), int | float):
            self._observe_lag(max(0.0, self._clock() - float(event["at"])))
        if index.changes > RELOAD_AFTER_CHANGES:
            self._reload_requested.set()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEALTH_CHECK_S):
                        await self._reload_requested.wait()
                conn = self._conn
                if conn is None or conn.is_closed():
                    raise ConnectionError("listening connection lost")
                async with asyncio.timeout(HEALTH_CHECK_S):
                    await conn.execute("SELECT 1")
                self._confirmed_at = time.monotonic()
                if self._reload_requested.is_set():
                    await self._load()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect and reload, never stop enforcing
                log.warning("suppression_feed_reconnecting", error=str(exc) or type(exc).__name__, in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                with contextlib.suppress(Exception):
                    await self._listen_and_load()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
