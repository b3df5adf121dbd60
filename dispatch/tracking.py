"""Opens and clicks: which ones a machine made, and writing them in batches.

Not every open is a person. Apple Mail Privacy Protection and Gmail's image proxy fetch every pixel, and
corporate link scanners follow every link, often within seconds of delivery. Such events are kept (they prove
delivery) but flagged ``machine`` with the reason, so reports count people: by the fetcher's User-Agent, by a
HEAD request (browsers GET), and by timing (a click within ``SCANNER_WINDOW_S`` of the send; done in SQL,
where the send time is).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import asyncpg
import structlog

log = structlog.get_logger("pivotal.email.tracking")

#: Substrings of User-Agents of proxies and scanners (lower case) and what they are.
MACHINES: tuple[tuple[str, str], ...] = (
    ("googleimageproxy", "Gmail image proxy"),
    ("yahoomailproxy", "Yahoo Mail proxy"),
    ("ymailproxy", "Yahoo Mail proxy"),
    ("apple-mail-privacy", "Apple Mail Privacy Protection"),
    ("barracuda", "Barracuda link scanner"),
    ("mimecast", "Mimecast link scanner"),
    ("proofpoint", "Proofpoint link scanner"),
    ("safelinks", "Microsoft Safe Links"),
    ("microsoft office", "Microsoft Office preview"),
    ("bot", "a bot"),
    ("crawler", "a crawler"),
    ("spider", "a crawler"),
    ("python-requests", "a script"),
    ("curl/", "a script"),
    ("wget/", "a script"),
    ("headlesschrome", "a headless browser"),
)
SCANNER_WINDOW_S = 2.0
FLUSH_S = 0.5
BATCH = 1000


def machine_reason(user_agent: str, method: str) -> str | None:
    """Why this fetch was a machine's, or None when it looks like a person's."""
    if method == "HEAD":
        return "a HEAD request"
    agent = user_agent.lower()
    if not agent.strip():
        return "no User-Agent"
    for needle, what in MACHINES:
        if needle in agent:
            return what
    # Apple's proxy presents a bare "Mozilla/5.0" without a platform
    if agent.strip() == "mozilla/5.0":
        return "Apple Mail Privacy Protection"
    return None


@dataclass(frozen=True, slots=True)
class Engagement:
    kind: str  # open | click
    message_id: int
    at: float  # epoch seconds
    url: str | None
    user_agent: str
    machine: str | None


class EventBuffer:
    """Opens and clicks go to ``email_events`` in batches (every FLUSH_S or BATCH events); the pixel and the
    redirect answer at once. At most FLUSH_S of engagement is lost in a crash: statistics, not consent."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: list[Engagement] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="email-engagement-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    def add(self, event: Engagement) -> None:
        self._pending.append(event)
        if len(self._pending) >= BATCH:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_S)
            self._wake.clear()
            try:
                await self.flush()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("engagement events not written yet", error=repr(exc), waiting=len(self._pending))

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await self._write(batch)
        except BaseException:
            self._pending[:0] = batch
            raise
        self.written += len(batch)

    async def _write(self, batch: list[Engagement]) -> None:
        started = time.perf_counter()
        await self._pool.execute(
            f"""INSERT INTO email_events (email_message_id, campaign_id, event_type, recipient, url, occurred_at,
                                          payload)
                SELECT m.id, m.campaign_id, u.kind::email_event_type, m.to_email, u.url, to_timestamp(u.at),
                       jsonb_strip_nulls(jsonb_build_object(
                         'user_agent', left(u.agent, 300),
                         'machine', coalesce(u.machine, CASE WHEN u.kind = 'click'
                           AND to_timestamp(u.at) - m.sent_at < interval '{SCANNER_WINDOW_S} seconds'
                           THEN 'clicked within seconds of the send (a link scanner)' END)))
                  FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::text[], $5::text[], $6::text[])
                       AS u(kind, message_id, at, url, agent, machine)
                  JOIN email_messages m ON m.id = u.message_id""",
            [e.kind for e in batch], [e.message_id for e in batch], [e.at for e in batch], [e.url for e in batch],
            [e.user_agent for e in batch], [e.machine for e in batch],
        )  # fmt: skip
        log.debug("engagement written", events=len(batch), ms=round((time.perf_counter() - started) * 1000, 1))


def engagement(kind: str, message_id: int, url: str | None, user_agent: str, method: str) -> Engagement:
    return Engagement(kind, message_id, time.time(), url, user_agent[:1000], machine_reason(user_agent, method))
