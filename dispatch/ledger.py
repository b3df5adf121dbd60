"""The send ledger: one ``email_messages`` row per recipient, queued -> sending -> sent | failed | suppressed.

The rule that makes a crash cheap: a row is marked ``sending`` (committed) before its bytes go to the provider,
and only rows marked so are ever handed over. After a ``kill -9`` the rows still ``sending`` are the only ones
whose fate is unknown (the provider may have accepted them): they are logged as ambiguous and, by the
campaign's policy, sent again (at least once: the default) or skipped (at most once). Every other row is exactly
where it was. Marks are group-committed by one writer task (``LedgerWriter``): a sender waits for its
``sending`` marks, never for the outcomes, which follow in the next commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import structlog

from crm.compliance.rules import EmailsSent

log = structlog.get_logger("pivotal.email.ledger")

#: requeue: marked sending but never handed over (the campaign stopped first): queued again, the attempt undone
Outcome = Literal["sent", "failed", "retry", "requeue", "suppressed", "skipped"]
AmbiguousPolicy = Literal["resend", "skip"]
#: Rows fetched per query by a sender (keyset on id).
BATCH = 500


@dataclass(slots=True)
class Pending:
    """A queued row with what guards and rendering need."""

    id: int
    contact_id: int
    variant_id: int
    to_email: str
    idempotency_key: str
    attempt_count: int
    consent: str
    contact: dict[str, Any]
    account: dict[str, Any]
    sent: EmailsSent = field(default_factory=EmailsSent)


@dataclass(slots=True)
class Finish:
    id: int
    outcome: Outcome
    detail: str = ""  # provider message id when sent, the error or the reason otherwise
    retry_in_s: float = 0.0


async def create_rows(conn: asyncpg.Connection, campaign_id: int, sender_profile_id: int, provider: str,
                      variants: Sequence[tuple[int, float]], cohort: float | None = None) -> int:  # fmt: skip
    """A queued row for every member of the campaign with an address and no row yet; the variant by a hash of
    (campaign, contact) against the shares, so the split is the same whenever it is computed. ``cohort`` (a
    percentage): only the members an A/B test's cohort holds, by another hash. Returns rows added."""
    bounds, total = [], 0.0
    for variant_id, share in variants:
        total += share
        bounds.append((variant_id, total))
    if not bounds or total <= 0:
        raise ValueError("the campaign has no variant to send")
    cases = " ".join(f"WHEN bucket < {int(edge / total * 10_000)} THEN {vid}" for vid, edge in bounds[:-1])
    choose = f"CASE {cases} ELSE {bounds[-1][0]} END" if cases else str(bounds[-1][0])
    added = await conn.fetchval(
        f"""WITH members AS (
              SELECT m.contact_id, c.email,
                     abs(hashtextextended($1::bigint || ':' || m.contact_id, 0)) % 10000 AS bucket
                FROM campaign_members m JOIN contacts c ON c.id = m.contact_id
               WHERE m.campaign_id = $1::bigint AND c.deleted_at IS NULL AND c.email IS NOT NULL
                 AND ($4::float8 IS NULL
                      OR abs(hashtextextended('cohort:' || $1::bigint || ':' || m.contact_id, 0)) % 10000
                         < $4::float8 * 100)),
            added AS (
              INSERT INTO email_messages (campaign_id, contact_id, variant_id, idempotency_key, to_email,
                                          sender_profile_id, provider)
              SELECT $1::bigint, contact_id, {choose}, 'c' || $1::bigint || '.r' || contact_id, email, $2,
                     $3::email_provider
                FROM members
              ON CONFLICT DO NOTHING RETURNING 1)
            SELECT count(*) FROM added""",
        campaign_id, sender_profile_id, provider, cohort,
    )  # fmt: skip
    return int(added)


async def fetch_due(conn: asyncpg.Connection | asyncpg.Pool, campaign_id: int, after_id: int,
                    limit: int = BATCH) -> list[Pending]:  # fmt: skip
    rows = await conn.fetch(
        """SELECT m.id, m.contact_id, m.variant_id, m.to_email, m.idempotency_key, m.attempt_count,
                  coalesce((SELECT k.status::text FROM consents k WHERE k.contact_id = m.contact_id
                             AND k.channel = 'email' ORDER BY k.recorded_at DESC, k.id DESC LIMIT 1), 'unknown')
                    AS consent,
                  c.first_name, c.last_name, c.job_title, c.email, c.phone_e164, c.country,
                  a.name AS account_name, a.domain AS account_domain, a.industry, a.employee_count,
                  a.office_country AS account_country,
                  s.day, s.week, s.month, s.oldest_day, s.oldest_week, s.oldest_month
             FROM email_messages m JOIN contacts c ON c.id = m.contact_id
             LEFT JOIN accounts a ON a.id = c.account_id AND a.deleted_at IS NULL
             CROSS JOIN LATERAL (  -- what the contact got from any campaign lately: the frequency caps
               SELECT count(*) FILTER (WHERE e.sent_at > now() - interval '1 day') AS day,
                      count(*) FILTER (WHERE e.sent_at > now() - interval '7 days') AS week,
                      count(*) AS month,
                      min(e.sent_at) FILTER (WHERE e.sent_at > now() - interval '1 day') AS oldest_day,
                      min(e.sent_at) FILTER (WHERE e.sent_at > now() - interval '7 days') AS oldest_week,
                      min(e.sent_at) AS oldest_month
                 FROM email_messages e
                WHERE e.contact_id = m.contact_id AND e.sent_at > now() - interval '30 days') s
            WHERE m.campaign_id = $1 AND m.id > $2 AND m.status = 'queued'
              AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= now())
            ORDER BY m.id LIMIT $3""",
        campaign_id, after_id, limit,
    )  # fmt: skip
    return [_pending(row) for row in rows]


async def sample_recipient(conn: asyncpg.Connection, campaign_id: int, contact_id: int | None) -> Pending:
    """A contact to render a test message for: the one given, else the first of the audience with an address
    (frozen members, else the audience rules' first), else an empty one (missing fields then show as missing)."""
    if contact_id is None:
        contact_id = await conn.fetchval(
            """SELECT m.contact_id FROM campaign_members m JOIN contacts c ON c.id = m.contact_id
                WHERE m.campaign_id = $1 AND c.email IS NOT NULL AND c.deleted_at IS NULL
                ORDER BY m.contact_id LIMIT 1""",
            campaign_id,
        )
    if contact_id is None:
        contact_id = await conn.fetchval(
            """SELECT lm.contact_id FROM campaign_audience_rules r JOIN list_members lm ON lm.list_id = r.list_id
                 JOIN contacts c ON c.id = lm.contact_id AND c.email IS NOT NULL AND c.deleted_at IS NULL
                WHERE r.campaign_id = $1 AND r.mode = 'include' ORDER BY lm.contact_id LIMIT 1""",
            campaign_id,
        )
    row = await conn.fetchrow(
        """SELECT 0 AS id, c.id AS contact_id, 0 AS variant_id, c.email AS to_email, '' AS idempotency_key,
                  0 AS attempt_count, 'unknown' AS consent, c.first_name, c.last_name, c.job_title, c.email,
                  c.phone_e164, c.country, a.name AS account_name, a.domain AS account_domain, a.industry,
                  a.employee_count, a.office_country AS account_country, 0 AS day, 0 AS week, 0 AS month,
                  NULL::timestamptz AS oldest_day, NULL::timestamptz AS oldest_week, NULL::timestamptz AS oldest_month
             FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id AND a.deleted_at IS NULL
            WHERE c.id = $1 AND c.deleted_at IS NULL""",
        contact_id or 0,
    )
    if row is None:
        if contact_id is not None:
            raise LookupError(f"contact {contact_id} does not exist")
        return Pending(0, 0, 0, "", "", 0, "unknown", {}, {})
    return _pending(row)


def _pending(row: asyncpg.Record) -> Pending:
    first, last = row["first_name"], row["last_name"]
    full = " ".join(part for part in (first, last) if part) or None
    contact = {"first_name": first, "last_name": last, "full_name": full, "title": row["job_title"],
               "email": row["email"], "phone": row["phone_e164"], "country": row["country"]}  # fmt: skip
    account = {"name": row["account_name"], "domain": row["account_domain"], "industry": row["industry"],
               "employees": row["employee_count"], "country": row["account_country"]}  # fmt: skip
    sent = EmailsSent(row["day"], row["week"], row["month"], row["oldest_day"], row["oldest_week"],
                      row["oldest_month"])  # fmt: skip
    return Pending(row["id"], row["contact_id"], row["variant_id"], row["to_email"], row["idempotency_key"],
                   row["attempt_count"], row["consent"], contact, account, sent)  # fmt: skip


async def next_due_at(conn: asyncpg.Connection | asyncpg.Pool, campaign_id: int) -> float | None:
    """Seconds until the earliest queued row is due (0 if one is due now); None when nothing is queued."""
    wait = await conn.fetchval(
        """SELECT CASE WHEN count(*) > 0  -- greatest() would turn no row's NULL into 0
                       THEN greatest(0, extract(epoch FROM min(coalesce(next_attempt_at, now())) - now()))::float8 END
             FROM email_messages WHERE campaign_id = $1 AND status = 'queued'""",
        campaign_id,
    )
    return None if wait is None else float(wait)


async def recover(conn: asyncpg.Connection, campaign_id: int, policy: AmbiguousPolicy) -> list[int]:
    """Rows left ``sending`` by a crash: logged as ambiguous, then queued again or skipped. Returns their ids."""
    if policy == "resend":
        sql = """UPDATE email_messages SET status = 'queued', last_error = 'ambiguous: in flight at a restart',
                        updated_at = now() WHERE campaign_id = $1 AND status = 'sending' RETURNING id"""
    else:
        sql = """UPDATE email_messages SET status = 'skipped', status_reason = 'ambiguous: in flight at a restart',
                        updated_at = now() WHERE campaign_id = $1 AND status = 'sending' RETURNING id"""
    ids = sorted(row["id"] for row in await conn.fetch(sql, campaign_id))
    if ids:
        log.warning("ambiguous messages after a restart", campaign_id=campaign_id, count=len(ids), policy=policy,
                    message_ids=ids)  # fmt: skip
    return ids


@dataclass
class _Batch:
    sending: list[int] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    finishes: list[Finish] = field(default_factory=list)


class LedgerWriter:
    """Group commit: whatever accumulated while the previous transaction ran goes into the next one.

    Two lanes on two connections: ``sending`` marks (a sender waits for them) and outcomes (nobody waits). A mark
    never queues behind a thousand outcomes, and PostgreSQL works on both at once. Order holds without joining
    them: an outcome exists only for a row whose mark was committed before its bytes left."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._lanes = {"marks": _Batch(), "outcomes": _Batch()}
        self._wake = {"marks": asyncio.Event(), "outcomes": asyncio.Event()}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._committing = {"marks": 0, "outcomes": 0}
        self.commits = 0
        self.commit_seconds = 0.0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(lane), name=f"email-ledger-{lane}") for lane in self._lanes]

    async def close(self) -> None:
        """Writes what is pending, then stops."""
        self._closing = True
        for wake in self._wake.values():
            wake.set()
        await asyncio.gather(*self._tasks)

    async def mark_sending(self, ids: Sequence[int]) -> None:
        """Returns once the rows are committed as ``sending``: only then may their bytes leave."""
        if not ids:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = self._lanes["marks"]
        batch.sending.extend(ids)
        batch.waiters.append(waiter)
        self._wake["marks"].set()
        await waiter

    def finish(self, item: Finish) -> None:
        self._lanes["outcomes"].finishes.append(item)
        self._wake["outcomes"].set()

    async def flushed(self) -> None:
        """Returns once every outcome given before the call is committed (through an outage: after it)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes["outcomes"].waiters.append(waiter)
        self._wake["outcomes"].set()
        await waiter

    @property
    def pending(self) -> int:
        """Marks and outcomes not committed yet, those of the transactions under way included."""
        queued = sum(len(b.sending) + len(b.finishes) for b in self._lanes.values())
        return queued + sum(self._committing.values())

    async def _run(self, lane: str) -> None:
        wake = self._wake[lane]
        while True:
            await wake.wait()
            wake.clear()
            batch, self._lanes[lane] = self._lanes[lane], _Batch()
            if batch.sending or batch.finishes:
                self._committing[lane] = len(batch.sending) + len(batch.finishes)
                try:
                    await self._commit(batch)
                except Exception as exc:  # the database is away: nothing was sent for these marks; retry them
                    log.error("ledger commit failed, retrying", lane=lane, error=repr(exc))
                    retry = self._lanes[lane]
                    retry.sending[:0], retry.waiters[:0] = batch.sending, batch.waiters
                    retry.finishes[:0] = batch.finishes
                    self._committing[lane] = 0
                    await asyncio.sleep(0.5)
                    wake.set()
                    continue
                self._committing[lane] = 0
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
            else:
                for waiter in batch.waiters:  # a flush with nothing to write
                    if not waiter.done():
                        waiter.set_result(None)
                if self._closing:
                    return
            current = self._lanes[lane]
            if self._closing and not current.sending and not current.finishes:
                return

    async def _commit(self, batch: _Batch) -> None:
        started = time.perf_counter()
        sent = [f for f in batch.finishes if f.outcome == "sent"]
        retry = [f for f in batch.finishes if f.outcome == "retry"]
        failed = [f for f in batch.finishes if f.outcome == "failed"]
        closed = [f for f in batch.finishes if f.outcome in ("suppressed", "skipped")]
        requeue = [f.id for f in batch.finishes if f.outcome == "requeue"]
        async with self._pool.acquire() as conn, conn.transaction():
            if sent:
                await conn.execute(
                    """UPDATE email_messages m SET status = 'sent', sent_at = now(), updated_at = now(),
                              provider_message_id = nullif(u.detail, '')
                         FROM unnest($1::bigint[], $2::text[]) AS u(id, detail) WHERE m.id = u.id""",
                    [f.id for f in sent], [f.detail for f in sent],
                )  # fmt: skip
            if retry:
                await conn.execute(
                    """UPDATE email_messages m SET status = 'queued', last_error = u.detail, updated_at = now(),
                              next_attempt_at = now() + make_interval(secs => u.delay)
                         FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS u(id, detail, delay)
                        WHERE m.id = u.id""",
                    [f.id for f in retry], [f.detail for f in retry], [f.retry_in_s for f in retry],
                )  # fmt: skip
            if failed:
                await conn.execute(
                    """UPDATE email_messages m SET status = 'failed', failed_at = now(), last_error = u.detail,
                              updated_at = now()
                         FROM unnest($1::bigint[], $2::text[]) AS u(id, detail) WHERE m.id = u.id""",
                    [f.id for f in failed], [f.detail for f in failed],
                )  # fmt: skip
            if closed:
                await conn.execute(
                    """UPDATE email_messages m SET status = u.outcome::email_message_status, status_reason = u.detail,
                              updated_at = now()
                         FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, outcome, detail)
                        WHERE m.id = u.id AND m.status = 'queued'""",
                    [f.id for f in closed], [f.outcome for f in closed], [f.detail or f.outcome for f in closed],
                )  # fmt: skip
            if requeue:
                await conn.execute(
                    """UPDATE email_messages SET status = 'queued', attempt_count = greatest(0, attempt_count - 1),
                              updated_at = now() WHERE id = ANY($1::bigint[]) AND status = 'sending'""",
                    requeue,
                )
            if batch.sending:
                await conn.execute(
                    """UPDATE email_messages SET status = 'sending', sending_at = now(), updated_at = now(),
                              attempt_count = attempt_count + 1
                        WHERE id = ANY($1::bigint[]) AND status = 'queued'""",
                    batch.sending,
                )
        self.commits += 1
        self.commit_seconds += time.perf_counter() - started
