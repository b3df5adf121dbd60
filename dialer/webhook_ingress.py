"""Carrier webhooks in: verify, de-duplicate, drive each leg's state machine, persist the raw log in batches.

The order of checks is the order of cost: size, signature and timestamp (nothing is parsed before the
delivery is proven to come from the carrier), JSON, then the event id against those seen recently. The
answer (200) does not wait for PostgreSQL: events are written by ``EventLog`` in batches, with the event id
unique in the table as the backstop of the in-memory de-duplication (after a restart a redelivery's log row is
dropped there; applying an event to its leg twice changes nothing). When the database falls behind by
MAX_QUEUED_EVENTS, deliveries are answered 503 before they are taken, so Telnyx keeps them. Nothing a carrier
sends can crash the daemon: every refusal is a status, a log line and a metric.
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

from dialer.leg_state import Handling, Leg, LegKind
from dialer.webhook_signature import SignatureRejected, verify

log = structlog.get_logger(__name__)

#: Event ids are remembered this long (the +-300 s signature window plus Telnyx's retries) ...
REMEMBER_EVENTS_S = 900.0
#: ... up to this many (~200 MB; 1,100 events/s for the whole span). Past it the oldest go first: a replay of
#: one of those would reach its leg again, where it is harmless (applying an event twice changes nothing: the
#: state has moved on and facts keep their earliest time), and the log row is still unique in PostgreSQL.
REMEMBERED_EVENTS = 1_000_000
#: Ended legs kept for late or duplicated deliveries (at most this many, for at most this long); then only their
#: ids, so a late event cannot revive them. Duplicates are caught by event id anyway; a leg object kept longer
#: is only work for the garbage collector (50,000 ended legs made every full collection ~100 ms longer).
ENDED_LEGS_KEPT = 50_000
ENDED_LEG_KEEP_S = 300.0
FORGOTTEN_LEGS_KEPT = 500_000
#: A leg with no event for this long is forgotten (Telnyx ends every call by 4 h: time_limit_secs).
LEG_IDLE_S = 5 * 3600.0
#: Above this many events waiting for PostgreSQL, deliveries get 503 (Telnyx retries) instead of being taken.
MAX_QUEUED_EVENTS = 100_000


#: Events that change no leg state but that the dialer waits for (a message played to its end).
MEDIA_ENDED = frozenset({"call.speak.ended", "call.playback.ended"})


@dataclass(frozen=True)
class Outcome:
    status: int
    result: str  # for the metric label: applied, ignored, illegal_transition, unmatched, duplicate, rejected_*
    message: str = ""


class RecentIds:
    """Ids seen in the last ``span_s`` seconds, at most ``capacity`` of them (oldest forgotten first)."""

    def __init__(self, capacity: int, span_s: float = REMEMBER_EVENTS_S) -> None:
        self._ids: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity
        self._span_s = span_s

    def seen(self, event_id: str, now: float) -> bool:
        """True if already seen; otherwise remember it."""
        if event_id in self._ids:
            return True
        self._ids[event_id] = now
        while self._ids and (len(self._ids) > self._capacity or now - next(iter(self._ids.values())) > self._span_s):
            self._ids.popitem(last=False)
        return False


class Legs:
    """The legs the carrier tells us about, by call_control_id, bounded: ended and idle legs are forgotten, and
    a late event for a forgotten leg is ignored rather than bringing it back."""

    def __init__(self) -> None:
        self._legs: dict[str, Leg] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()  # leg -> last event (monotonic), oldest first
        self._ended: OrderedDict[str, float] = OrderedDict()  # leg -> when it ended (monotonic), oldest first
        self._forgotten: OrderedDict[str, None] = OrderedDict()

    def get_or_create(self, call_control_id: str, now: float, kind: LegKind = LegKind.CUSTOMER) -> Leg | None:
        """The leg (created on its first event, of the kind that event shows), or None if it was forgotten."""
        if call_control_id in self._forgotten:
            return None
        leg = self._legs.get(call_control_id)
        if leg is None:
            leg = self._legs[call_control_id] = Leg(call_control_id, kind)
        self._seen[call_control_id] = now
        self._seen.move_to_end(call_control_id)
        self._sweep(now)
        return leg

    def get(self, call_control_id: str) -> Leg | None:
        return self._legs.get(call_control_id)

    def ended(self, call_control_id: str, now: float = 0.0) -> None:
        self._ended[call_control_id] = now
        self._ended.move_to_end(call_control_id)
        while self._ended:
            old, at = next(iter(self._ended.items()))
            if len(self._ended) <= ENDED_LEGS_KEPT and now - at <= ENDED_LEG_KEEP_S:
                break
            self._forget(old)

    def drop(self, call_control_id: str) -> None:
        """The dialer is done with a leg."""
        self._forget(call_control_id)

    def _sweep(self, now: float) -> None:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= LEG_IDLE_S:
                return
            self._forget(oldest)

    def _forget(self, call_control_id: str) -> None:
        self._legs.pop(call_control_id, None)
        self._seen.pop(call_control_id, None)
        self._ended.pop(call_control_id, None)
        self._forgotten[call_control_id] = None
        while len(self._forgotten) > FORGOTTEN_LEGS_KEPT:
            self._forgotten.popitem(last=False)

    def __len__(self) -> int:
        return len(self._legs)


Row = tuple[str, str, str | None, datetime, datetime, int | None, str, str]


class EventLog:
    """Writes received events to ``call_events`` in batches (every ``interval_s`` or ``batch_size`` events).

    A failed write keeps its batch and is retried with backoff; a row PostgreSQL refuses is set aside (logged,
    counted) so it can never block the rows behind it. ``close`` writes what is queued before returning.
    """

    def __init__(self, pool: asyncpg.Pool, *, batch_size: int = 1000, interval_s: float = 0.1) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._queue: list[Row] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.failures = 0
        self.refused_rows = 0

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def append(self, row: Row) -> None:
        self._queue.append(row)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="call-event-log")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (within ``timeout_s``), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._queue:
            log.warning("call_events_unwritten_at_shutdown", events=len(self._queue))

    async def _run(self) -> None:
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s * (2 ** min(failures, 6))):
                    await self._wake.wait()
            self._wake.clear()
            failures = 0 if await self.flush() else failures + 1
            if self._stopping and (not self._queue or failures >= 3):
                return

    async def flush(self) -> bool:
        """Write everything queued; False if PostgreSQL could not be reached (the rows stay queued)."""
        while self._queue:
            batch, self._queue = self._queue[: self._batch_size], self._queue[self._batch_size :]
            try:
                await self._write(batch)
            except asyncpg.DataError:
                await self._write_one_by_one(batch)
            except BaseException as exc:
                self._queue[:0] = batch  # never lose a taken batch, even when cancelled mid-write
                if not isinstance(exc, Exception):
                    raise
                self.failures += 1
                log.warning("call_events_write_failed", error=str(exc) or type(exc).__name__, queued=len(self._queue))
                return False
        return True

    async def _write_one_by_one(self, batch: list[Row]) -> None:
        for row in batch:
            try:
                await self._write([row])
            except asyncpg.DataError as exc:
                self.refused_rows += 1
                log.error("call_event_refused_by_database", event_id=row[0], event_type=row[1], error=str(exc))

    async def _write(self, batch: list[Row]) -> None:
        columns = list(zip(*batch, strict=True))
        status = await self._pool.execute(
            """INSERT INTO call_events (event_id, event_type, call_control_id, occurred_at, received_at,
                                        delivery_attempt, handling, payload)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                                    $6::int[], $7::text[], $8::text[]::jsonb[])
               ON CONFLICT (event_id) DO NOTHING""",
            *columns,
            timeout=10,
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
        listener: Callable[[Leg, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.key = key
        #: told of every event that changed a leg (the dialer), before the webhook is answered
        self.listener = listener
        self.legs = legs
        self.events = events
        self.max_bytes = max_bytes
        self.clock = clock
        self.recent = RecentIds(REMEMBERED_EVENTS)
        self._monotonic = time.monotonic
        #: told of every ``call.recording.saved`` (it names no call_control_id): the recordings' copier
        self.recordings: Callable[[dict[str, Any]], None] | None = None

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
            envelope = json.loads(body, parse_constant=_no_constants)
            data = envelope["data"]
            event_id, event_type, payload = data["id"], data["event_type"], data.get("payload") or {}
            if not (isinstance(event_id, str) and isinstance(event_type, str) and isinstance(payload, dict)):
                raise TypeError("id and event_type must be strings, payload an object")
            if not 0 < len(event_id) <= 100 or not 0 < len(event_type) <= 100:
                raise ValueError("id or event_type of an unreasonable length")
            occurred_at = _timestamp(data.get("occurred_at"), now)
        except (ValueError, TypeError, KeyError, RecursionError, OverflowError) as exc:
            return Outcome(400, "rejected_malformed", f"not a Telnyx event: {type(exc).__name__}: {exc}")
        if self.events.backlog >= MAX_QUEUED_EVENTS:  # PostgreSQL is not keeping up: let Telnyx retry later
            return Outcome(503, "deferred_backlog", "events are waiting for the database; retry")
        if self.recent.seen(event_id, now):
            return Outcome(200, "duplicate")
        meta = envelope.get("meta") if isinstance(envelope, dict) else None
        attempt = meta.get("attempt") if isinstance(meta, dict) else None
        call_control_id = payload.get("call_control_id")
        handling = Handling.UNMATCHED
        if isinstance(call_control_id, str) and call_control_id:
            kind = LegKind.of(payload)
            leg = self.legs.get_or_create(call_control_id, self._monotonic(), kind)
            if leg is not None and kind is LegKind.AGENT and leg.kind is LegKind.CUSTOMER:
                leg.kind = kind  # the first event to arrive (a speak or playback event) did not show the SIP end
            handling = leg.apply(event_type, payload, occurred_at) if leg is not None else Handling.IGNORED
            told = handling is Handling.APPLIED or event_type in MEDIA_ENDED
            if leg is not None and told and self.listener is not None:
                self._tell(leg, event_type, payload)
            if leg is not None and event_type == "call.hangup":
                self.legs.ended(call_control_id, self._monotonic())
        else:
            call_control_id = None
        if event_type == "call.recording.saved" and self.recordings is not None:
            try:
                self.recordings(payload)
            except Exception:  # as with the dialer: never a webhook the carrier retries forever
                log.exception("recording_listener_failed")
        self.events.append(
            (
                event_id,
                event_type if _plausible_event_type(event_type) else "unknown",
                call_control_id,
                occurred_at,
                datetime.fromtimestamp(now, UTC),
                attempt if isinstance(attempt, int) and 1 <= attempt < 2**31 else None,
                handling.value,
                json.dumps(_storable(envelope)),
            )
        )
        return Outcome(200, handling.value)

    def _tell(self, leg: Leg, event_type: str, payload: dict[str, Any]) -> None:
        assert self.listener is not None
        try:
            self.listener(leg, event_type, payload)
        except Exception:  # a fault in the dialer must not turn into a webhook the carrier retries forever
            log.exception("webhook_listener_failed", event_type=event_type, leg=leg.call_control_id)


def _plausible_event_type(event_type: str) -> bool:
    """call_events.event_type's format (lower-case dotted); anything else is stored as "unknown" with its body."""
    return (
        event_type[0].isascii()
        and event_type[0].islower()
        and all((c.isascii() and (c.islower() or c.isdigit())) or c in "._" for c in event_type)
    )


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON a database can store")


def _storable(value: Any) -> Any:
    """The parsed event as PostgreSQL's jsonb accepts it: no NUL characters, no lone surrogates."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable(item) for item in value]
    return value


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
