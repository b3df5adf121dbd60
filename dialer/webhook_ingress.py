"""Carrier webhooks in: verify, de-duplicate, drive each leg's state machine, persist the raw log in batches.

The order of checks is the order of cost: size, signature and timestamp (nothing is parsed before the
delivery is proven to come from the carrier), JSON, then the event id against those seen recently. The
answer (200) does not wait for PostgreSQL: events are written by ``EventLog`` in batches, with the event id
unique in the table as the backstop of the in-memory de-duplication (after a restart, a redelivery is
dropped there). Nothing a carrier sends can crash the daemon: every refusal is a status, a log line and a
metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from nacl.signing import VerifyKey

from dialer.leg_state import Handling, Leg
from dialer.webhook_signature import SignatureRejected, verify

log = structlog.get_logger(__name__)

#: Event ids remembered for de-duplication (Telnyx retries within about a minute; this covers hours at 1,000/s).
REMEMBERED_EVENTS = 200_000
#: Legs kept after they ended, for late or duplicated deliveries (the dialer drops live ones itself).
ENDED_LEGS_KEPT = 50_000


@dataclass(frozen=True)
class Outcome:
    status: int
    result: str  # for the metric label: applied, ignored, illegal_transition, unmatched, duplicate, rejected_*
    message: str = ""


class RecentIds:
    """A bounded set of recently seen ids (oldest forgotten first)."""

    def __init__(self, capacity: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def seen(self, event_id: str) -> bool:
        """True if already seen; otherwise remember it."""
        if event_id in self._ids:
            return True
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return False

    def forget(self, event_id: str) -> None:
        self._ids.pop(event_id, None)


class Legs:
    """The legs the carrier tells us about, by call_control_id. The dialer registers the ones it dials."""

    def __init__(self) -> None:
        self._legs: dict[str, Leg] = {}
        self._ended: OrderedDict[str, None] = OrderedDict()

    def get_or_create(self, call_control_id: str) -> Leg:
        leg = self._legs.get(call_control_id)
        if leg is None:
            leg = self._legs[call_control_id] = Leg(call_control_id)
        return leg

    def get(self, call_control_id: str) -> Leg | None:
        return self._legs.get(call_control_id)

    def ended(self, call_control_id: str) -> None:
        self._ended[call_control_id] = None
        while len(self._ended) > ENDED_LEGS_KEPT:
            old, _ = self._ended.popitem(last=False)
            self._legs.pop(old, None)

    def __len__(self) -> int:
        return len(self._legs)


Row = tuple[str, str, str | None, datetime, datetime, int | None, str, str]


class EventLog:
    """Writes received events to ``call_events`` in batches (every ``interval_s`` or ``batch_size`` events)."""

    def __init__(self, pool: asyncpg.Pool, *, batch_size: int = 1000, interval_s: float = 0.1) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._queue: list[Row] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0

    def append(self, row: Row) -> None:
        self._queue.append(row)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="call-event-log")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._batch_size], self._queue[self._batch_size :]
            try:
                await self._write(batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Keep the events and try again next round; the carrier has been answered already.
                self.failures += 1
                self._queue[:0] = batch
                log.warning("call_events_write_failed", error=str(exc), queued=len(self._queue))
                return

    async def _write(self, batch: list[Row]) -> None:
        columns = list(zip(*batch, strict=True))
        status = await self._pool.execute(
            """INSERT INTO call_events (event_id, event_type, call_control_id, occurred_at, received_at,
                                        delivery_attempt, handling, payload)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                                    $6::int[], $7::text[], $8::text[]::jsonb[])
               ON CONFLICT (event_id) DO NOTHING""",
            *columns,
        )
        self.written += int(status.rsplit(" ", 1)[-1])


class WebhookIngress:
    def __init__(
        self,
        key: VerifyKey | None,
        legs: Legs,
        events: EventLog,
        *,
        max_bytes: int = 65_536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.legs = legs
        self.events = events
        self.max_bytes = max_bytes
        self.clock = clock
        self.recent = RecentIds(REMEMBERED_EVENTS)

    def handle(self, headers: Any, body: bytes) -> Outcome:
        """Everything synchronous: the event is applied before the answer, written shortly after."""
        if self.key is None:
            return Outcome(503, "not_configured", "telephony.webhook_public_key is not set")
        if len(body) > self.max_bytes:
            return Outcome(413, "rejected_oversized", f"larger than {self.max_bytes} bytes")
        now = self.clock()
        try:
            verify(self.key, headers, body, now)
        except SignatureRejected as exc:
            return Outcome(401, f"rejected_{exc.reason}", str(exc))
        try:
            envelope = json.loads(body)
            data = envelope["data"]
            event_id, event_type, payload = data["id"], data["event_type"], data.get("payload") or {}
            if not (isinstance(event_id, str) and isinstance(event_type, str) and isinstance(payload, dict)):
                raise TypeError("id and event_type must be strings, payload an object")
            if not 0 < len(event_id) <= 100 or not 0 < len(event_type) <= 100:
                raise ValueError("id or event_type of an unreasonable length")
            occurred_at = _timestamp(data.get("occurred_at"), now)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            return Outcome(400, "rejected_malformed", f"not a Telnyx event: {type(exc).__name__}: {exc}")
        if self.recent.seen(event_id):
            return Outcome(200, "duplicate")
        meta = envelope.get("meta") if isinstance(envelope, dict) else None
        attempt = meta.get("attempt") if isinstance(meta, dict) else None
        call_control_id = payload.get("call_control_id")
        handling = Handling.UNMATCHED
        if isinstance(call_control_id, str) and call_control_id:
            leg = self.legs.get_or_create(call_control_id)
            handling = leg.apply(event_type, payload, occurred_at)
            if event_type == "call.hangup":
                self.legs.ended(call_control_id)
        else:
            call_control_id = None
        self.events.append(
            (
                event_id,
                event_type if _plausible_event_type(event_type) else "unknown",
                call_control_id,
                occurred_at,
                datetime.fromtimestamp(now, UTC),
                attempt if isinstance(attempt, int) and 1 <= attempt < 2**31 else None,
                handling.value,
                body.decode("utf-8", "replace").replace("\\u0000", ""),
            )
        )
        return Outcome(200, handling.value)


def _plausible_event_type(event_type: str) -> bool:
    """call_events.event_type's format (lower-case dotted); anything else is stored as "unknown" with its body."""
    return (
        event_type[0].isascii()
        and event_type[0].islower()
        and all((c.isascii() and (c.islower() or c.isdigit())) or c in "._" for c in event_type)
    )


def _timestamp(text: object, now: float) -> datetime:
    if text is None:
        return datetime.fromtimestamp(now, UTC)
    if not isinstance(text, str):
        raise TypeError("occurred_at must be a string")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("occurred_at has no time zone")
    if not 1970 <= moment.astimezone(UTC).year <= 9000:
        raise ValueError("occurred_at out of range")
    return moment
