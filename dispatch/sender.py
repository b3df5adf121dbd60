"""One running e-mail campaign's send loop: ledger -> guards -> render -> throttle -> mark -> provider -> ledger.

The feeder reads queued rows in id order (keyset, 500 at a time), decides each (suppression, unsubscribe,
consent, frequency caps through the compliance decision function, checked at send time, not only at snapshot:
people unsubscribe while a campaign is going), renders it, books its slot on the limits (GCRA) and the day's
warmup cap, and hands it to the provider's workers only after its ``sending`` mark is committed. The queue to
the workers is short (twice the provider's concurrency) and rows are marked in chunks of that size, so what is
marked ``sending`` and not yet answered - what a crash can leave ambiguous - stays within five times the
provider's concurrency (40 messages with 8 SMTP connections).

Outcomes: sent; permanent failure (failed; the address suppressed as a hard bounce); temporary (queued again
with back-off, failed after MAX_ATTEMPTS); throttled (every worker waits, the message goes again). The campaign
pauses itself, with the reason recorded, after ``max_consecutive_errors`` provider faults in a row or as many
templates that fail to render in a row; ``stop()`` returns what was marked but not sent to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar

import asyncpg
import structlog

from crm.audience.domains import normalise_domain
from crm.compliance.compact_sets import text_key
from crm.compliance.decision import EmailCampaign, EmailTarget, decide_email
from crm.compliance.suppression_index import SuppressionIndex
from dispatch import ledger
from dispatch.ledger import AmbiguousPolicy, Finish, LedgerWriter, Pending
from dispatch.merge import MergeVariant
from dispatch.mime import Envelope, HeaderInjection, build
from dispatch.providers.base import MAX_ATTEMPTS, Merged, Outgoing, SendResult, Transport, backoff_s
from dispatch.rates import MessageLimits
from dispatch.templates import CompiledVariant, TemplateProblem
from dispatch.tokens import Signer
from pacing.warmup import DailyCap

T = TypeVar("T")
log = structlog.get_logger("pivotal.email.sender")

#: How long a throttled provider is left alone before anyone sends again (without a Retry-After of its own).
THROTTLE_PAUSE_S = 2.0
IDLE_POLL_S = 2.0


@dataclass(frozen=True)
class Identity:
    from_name: str
    from_email: str
    reply_to: str | None = None
    postal_address: str = ""  # the sender's physical address (CAN-SPAM), {{ postal_address }} in templates

    @property
    def domain(self) -> str:
        return self.from_email.rsplit("@", 1)[1].lower()


@dataclass
class Plan:
    """What the sender needs of a campaign, loaded by the engine."""

    campaign_id: int
    name: str
    identity: Identity
    variants: dict[int, CompiledVariant]
    links_base: str  # https://tracking.example.com (no trailing slash)
    compliance: EmailCampaign
    ambiguous: AmbiguousPolicy = "resend"
    max_consecutive_errors: int = 20
    #: for a batched provider: each variant as a provider template (None: it has logic, rendered per recipient)
    merge_variants: dict[int, MergeVariant | None] = field(default_factory=dict)


@dataclass
class Counters:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    throttled: int = 0
    suppressed: int = 0
    skipped: int = 0
    ambiguous_recovered: int = 0
    latencies: list[float] = field(default_factory=list)  # feeder pick-up -> provider answer, seconds (sampled)


@lru_cache(maxsize=65_536)
def _domain_keys(address: str, account_domain: str | None) -> tuple[int, ...]:
    domains = [account_domain] if account_domain else []
    host = normalise_domain(address.rsplit("@", 1)[1])
    domains += [d for d in (host.domain, host.registrable) if d]
    return tuple(text_key(d) for d in dict.fromkeys(domains))


class CampaignSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        plan: Plan,
        transport: Transport,
        limits: MessageLimits,
        writer: LedgerWriter,
        index: Callable[[], SuppressionIndex],
        signer: Signer,
        *,
        daily_cap: DailyCap | None = None,
        on_pause: Callable[[str], Coroutine[Any, Any, None]] | None = None,
        observe: Callable[[str, str, float | None], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool, self.plan, self.transport, self.limits = pool, plan, transport, limits
        self.writer, self.index, self.signer, self.daily_cap = writer, index, signer, daily_cap
        self._on_pause, self._clock, self._wall = on_pause, clock, wall
        #: (provider, outcome, seconds from pick-up to answer or None): the daemon's metrics
        self._observe = observe or (lambda provider, outcome, seconds: None)
        self._batch = max(1, getattr(transport, "batch_size", 1))
        self._queue: asyncio.Queue[tuple[float, float, Outgoing, Pending]] = asyncio.Queue(
            maxsize=max(2, 2 * transport.concurrency * self._batch)
        )
        # marked sending together, in one commit: while it commits, the workers empty the queue
        self._chunk = self._queue.maxsize
        # rows read per query: a batched provider takes thousands a second, so read them in thousands
        self._fetch_size = ledger.BATCH if self._batch == 1 else max(ledger.BATCH, 2 * self._batch)
        self._stopping: str | None = None
        self._stopped = asyncio.Event()
        self._faults = 0
        self._render_failures = 0
        self._hold_until = 0.0  # a throttled provider: nobody sends before this
        self.counters = Counters()
        self.in_flight = 0  # marked sending, no answer yet

    def stop(self, reason: str) -> None:
        """Stop feeding; workers finish what they hold, what is queued goes back to the ledger as queued."""
        if self._stopping is None:
            self._stopping = reason
            self._stopped.set()

    async def run(self) -> str:
        """Sends until every row is final ("completed") or it is stopped (the reason)."""
        # Outcomes of an earlier sender of this campaign may still be on their way to PostgreSQL (the writer
        # retries through an outage): judging rows "sending" before they land would call sent ones ambiguous.
        await self.writer.flushed()
        async with self.pool.acquire() as conn:
            self.counters.ambiguous_recovered = len(await ledger.recover(conn, self.plan.campaign_id,
                                                                         self.plan.ambiguous))  # fmt: skip
        await self.transport.open()
        workers = [asyncio.create_task(self._work(), name=f"email-{self.plan.campaign_id}-worker-{n}")
                   for n in range(self.transport.concurrency)]  # fmt: skip
        try:
            result = await self._feed()
            await self._drain()
            return result
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._requeue_waiting()
            await self.transport.close()

    # -- feeder ----------------------------------------------------------------------------------------------

    async def _feed(self) -> str:
        cursor = 0
        upcoming: asyncio.Task[list[Pending]] | None = None
        try:
            while self._stopping is None:
                rows = await upcoming if upcoming is not None else await self._fetch(cursor)
                upcoming = None
                if not rows:
                    if cursor == 0 and await self._idle():
                        return "completed"
                    cursor = 0
                    continue
                cursor = rows[-1].id
                # the next batch is read while this one is sent: a pause for the query would show in the rate
                upcoming = asyncio.create_task(self._fetch(cursor)) if len(rows) == self._fetch_size else None
                cursor = await self._feed_rows(rows, cursor)
                if upcoming is not None and cursor < rows[-1].id:  # held back (the day's cap): read again from there
                    upcoming.cancel()
                    upcoming = None
            return self._stopping
        finally:
            if upcoming is not None:
                upcoming.cancel()

    async def _fetch(self, cursor: int) -> list[Pending]:
        return await self._retrying(lambda: ledger.fetch_due(self.pool, self.plan.campaign_id, cursor,
                                                             self._fetch_size), [])  # fmt: skip

    async def _retrying(self, query: Callable[[], Awaitable[T]], stopped: T) -> T:
        """A ledger read through a database outage: retried with back-off, so the workers are never cancelled
        in the middle of a send (their rows would be left "sending"); ``stopped`` once the campaign stops."""
        delay = 0.5
        while True:
            try:
                return await query()
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                if self._stopping is not None:
                    return stopped
                log.warning("ledger read failed, retrying", campaign_id=self.plan.campaign_id, error=repr(exc))
                await self._wait(delay)
                delay = min(delay * 2, 10.0)

    async def _feed_rows(self, rows: list[Pending], cursor: int) -> int:
        """Prepares and hands over ``rows``; returns the cursor to go on from."""
        ready: list[tuple[float, float, Outgoing, Pending]] = []
        for row in rows:
            if self._stopping is not None:
                break
            item = self._prepare(row)
            if item is None:
                continue
            if not await self._take_daily():
                cursor = row.id - 1  # this row waits for tomorrow with the rest
                break
            ready.append(item)
            if len(ready) >= self._chunk:
                await self._hand_over(ready)
                ready = []
        if ready:
            await self._hand_over(ready)
        return cursor

    async def _idle(self) -> bool:
        """Nothing due now: True when every row is final and nothing is in flight; otherwise wait a little."""
        while self.in_flight or self.writer.pending or not self._queue.empty():  # noqa: ASYNC110 - a few polls
            await asyncio.sleep(0.05)
        stopped: float | None = 0.0  # a stopped campaign is not complete: "wait", and let the feeder see the stop
        wait = await self._retrying(lambda: ledger.next_due_at(self.pool, self.plan.campaign_id), stopped)
        if wait is None:
            return True
        await self._wait(min(max(wait, 0.05), IDLE_POLL_S))
        return False

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    def _prepare(self, row: Pending) -> tuple[float, float, Outgoing, Pending] | None:
        picked = self._clock()
        now = self._wall()
        target = EmailTarget(row.contact_id, text_key(row.to_email.lower()), None,
                             _domain_keys(row.to_email, row.account.get("domain")), row.consent, row.sent)  # fmt: skip
        decision = decide_email(self._compliance(row), target, self.index(), now)
        if not decision.allowed:
            reasons = "; ".join(reason.message for reason in decision.reasons)
            if decision.next_possible is not None:
                delay = max(60.0, (decision.next_possible - now).total_seconds())
                self.writer.finish(Finish(row.id, "retry", f"held: {reasons}", delay))
            else:
                self.counters.suppressed += 1
                self._observe(self.transport.name, "suppressed", None)
                self.writer.finish(Finish(row.id, "suppressed", reasons))
            return None
        variant = self.plan.variants.get(row.variant_id)
        if variant is None:
            self.writer.finish(Finish(row.id, "skipped", "the message's variant was removed"))
            return None
        if self._batch > 1:
            return self._prepare_merged(row, picked, variant)
        links = self._links(row.id)
        try:
            rendered = variant.render({"contact": row.contact, "account": row.account,
                                       "campaign": {"name": self.plan.name}}, links, self._click(row.id))  # fmt: skip
            identity = self.plan.identity
            data = build(Envelope(identity.from_name, identity.from_email, row.to_email, rendered.subject,
                                  f"{row.idempotency_key}@{identity.domain}", links["unsubscribe_url"],
                                  identity.reply_to, row.id), rendered.html, rendered.text)  # fmt: skip
        except (TemplateProblem, HeaderInjection) as exc:
            self._not_rendered(row, exc)
            return None
        self._render_failures = 0
        slot = 0.0  # booked by the worker that sends it (below)
        message = Outgoing(row.id, identity.from_email, row.to_email, f"{row.idempotency_key}@{identity.domain}", data)
        return slot, picked, message, row

    def _prepare_merged(self, row: Pending, picked: float,
                        variant: CompiledVariant) -> tuple[float, float, Outgoing, Pending] | None:  # fmt: skip
        """For a batched provider: the recipient's values for the variant's provider template (or, for a variant
        with logic, its own rendered parts)."""
        identity = self.plan.identity
        fields = {"contact": row.contact, "account": row.account, "campaign": {"name": self.plan.name}}
        template = self.plan.merge_variants.get(row.variant_id)
        try:
            if template is not None:
                token, base = self.signer.sign("m", row.id), self.plan.links_base
                unsubscribe = self.signer.sign("u", row.id)  # its own: a forwarded link must not unsubscribe
                links = {
                    "message_token": token,
                    "unsubscribe_token": unsubscribe,
                    "unsubscribe_url": f"{base}/e/u/{unsubscribe}",
                    "open_url": f"{base}/e/o/{token}.gif",
                    "postal_address": identity.postal_address,
                }
                merged = Merged(
                    template,
                    template.subject_for(fields, links),
                    template.values(fields, links, self._click(row.id)),
                    links["unsubscribe_url"],
                )
            else:
                links = self._links(row.id)
                rendered = variant.render(fields, links, self._click(row.id))
                merged = Merged(None, rendered.subject, [], links["unsubscribe_url"], rendered.html, rendered.text)
        except TemplateProblem as exc:
            self._not_rendered(row, exc)
            return None
        self._render_failures = 0
        slot = self.limits.reserve(row.to_email, self._clock())
        message = Outgoing(row.id, identity.from_email, row.to_email, f"{row.idempotency_key}@{identity.domain}",
                           b"", merged, identity.from_name, identity.reply_to)  # fmt: skip
        return slot, picked, message, row

    def _not_rendered(self, row: Pending, exc: Exception) -> None:
        """The recipient is skipped with the reason; enough in a row pause the campaign (a broken template)."""
        self.counters.skipped += 1
        self._observe(self.transport.name, "skipped", None)
        self.writer.finish(Finish(row.id, "skipped", f"not rendered: {exc}"[:500]))
        self._render_failures += 1
        if self._render_failures >= self.plan.max_consecutive_errors:
            self._pause(f"{self._render_failures} messages in a row failed to render; last: {exc}")

    def _compliance(self, row: Pending) -> EmailCampaign:
        return self.plan.compliance

    def _links(self, message_id: int) -> dict[str, str]:
        base = self.plan.links_base
        return {"unsubscribe_url": f"{base}/e/u/{self.signer.sign('u', message_id)}",
                "open_url": f"{base}/e/o/{self.signer.sign('o', message_id)}.gif",
                "postal_address": self.plan.identity.postal_address}  # fmt: skip

    def _click(self, message_id: int) -> Callable[[str], str]:
        base, sign = self.plan.links_base, self.signer.sign
        return lambda url: f"{base}/e/c/{sign('c', message_id, url)}"

    async def _take_daily(self) -> bool:
        """The warmup cap: False (after waiting for the stop or the next day) when today's is used up."""
        if self.daily_cap is None:
            return True
        today = self._wall().date().toordinal()
        if self.daily_cap.take(today):
            return True
        midnight = datetime.combine(self._wall().date(), datetime.min.time(), tzinfo=UTC).timestamp() + 86_400
        log.info("warmup cap reached for today", campaign_id=self.plan.campaign_id, sent=self.daily_cap.sent)
        await self._wait(min(IDLE_POLL_S * 30, max(1.0, midnight - self._wall().timestamp())))
        return False

    async def _hand_over(self, ready: list[tuple[float, float, Outgoing, Pending]]) -> None:
        await self.writer.mark_sending([item[2].ledger_id for item in ready])
        self.in_flight += len(ready)
        for item in ready:
            await self._queue.put(item)

    # -- workers ---------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        if self._batch > 1:
            await self._work_batches()
            return
        while True:
            _, picked, message, row = await self._queue.get()
            try:
                # the slot is booked when a worker is free to use it: one that waited on a slow answer does not
                # come back to a backlog of passed slots and send them at once
                slot = self.limits.reserve(row.to_email, self._clock())
                delay = max(slot, self._hold_until) - self._clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._stopping is not None:  # paused while it waited: it was not sent
                    self.writer.finish(Finish(message.ledger_id, "requeue", "not sent: the campaign stopped"))
                    continue
                result = await self.transport.send(message)
                self._record(result, row, seconds=self._clock() - picked)
            finally:
                self.in_flight -= 1

    async def _work_batches(self) -> None:
        """A batched provider: what is queued goes out together, up to the batch size, one template a request."""
        carry: tuple[float, float, Outgoing, Pending] | None = None
        try:
            await self._batches(carry_box := [carry])
        finally:
            if carry_box[0] is not None:  # cancelled holding the next request's first message: not sent
                self.in_flight -= 1
                self.writer.finish(Finish(carry_box[0][2].ledger_id, "requeue", "not sent: the campaign stopped"))

    async def _batches(self, carry_box: list[tuple[float, float, Outgoing, Pending] | None]) -> None:
        while True:
            carry = carry_box[0]
            first = carry if carry is not None else await self._queue.get()
            carry_box[0] = None
            batch = [first]
            addresses = {first[2].to_email}
            template = first[2].merged.template if first[2].merged else None
            while template is not None and len(batch) < self._batch and not self._queue.empty():
                item = self._queue.get_nowait()
                merged = item[2].merged
                if merged is None or merged.template is not template or item[2].to_email in addresses:
                    carry_box[0] = item  # another template (or the same address twice): the next request
                    break
                batch.append(item)
                addresses.add(item[2].to_email)
            try:
                delay = max(batch[-1][0], self._hold_until) - self._clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                if self._stopping is not None:
                    for _, _, message, _ in batch:
                        self.writer.finish(Finish(message.ledger_id, "requeue", "not sent: the campaign stopped"))
                    continue
                try:
                    results = await self.transport.send_batch([item[2] for item in batch])
                except Exception as exc:  # a bug of ours must not strand the batch as "sending"
                    log.exception("batch send failed", campaign_id=self.plan.campaign_id, recipients=len(batch))
                    results = [SendResult("temporary", f"not sent: {exc!r}"[:500], provider_fault=True)] * len(batch)
                now = self._clock()
                for n, ((_, picked, _, row), result) in enumerate(zip(batch, results, strict=True)):
                    # one request: one provider error at most
                    self._record(result, row, count_fault=n == 0, seconds=now - picked)
            finally:
                self.in_flight -= len(batch)

    def _record(self, result: SendResult, row: Pending, *, count_fault: bool = True, seconds: float = 0.0) -> None:
        if len(self.counters.latencies) < 200_000:
            self.counters.latencies.append(seconds)
        attempt = row.attempt_count + 1
        retried = result.kind == "temporary" or (result.provider_fault and result.kind != "throttled")
        outcome = {"sent": "sent", "throttled": "throttled"}.get(result.kind) or (
            "retry" if retried and attempt < MAX_ATTEMPTS else "failed"
        )
        self._observe(self.transport.name, outcome, seconds)
        if result.kind == "sent":
            self._faults = 0
            self.counters.sent += 1
            self.writer.finish(Finish(row.id, "sent", result.detail))
            return
        if result.kind == "throttled":
            self.counters.throttled += 1
            self._hold_until = self._clock() + (result.retry_after_s or THROTTLE_PAUSE_S)
            self.writer.finish(Finish(row.id, "retry", result.detail, result.retry_after_s or THROTTLE_PAUSE_S))
        elif (result.kind == "temporary" or result.provider_fault) and attempt < MAX_ATTEMPTS:
            # a permanent refusal that is the provider's fault (our account, our request) says nothing about the
            # recipient: retried like a temporary one while the campaign pauses itself
            self.counters.retried += 1
            self.writer.finish(Finish(row.id, "retry", result.detail, backoff_s(attempt)))
        else:
            self.counters.failed += 1
            self.writer.finish(Finish(row.id, "failed", result.detail))
        if not result.provider_fault:
            self._faults = 0
        elif count_fault:
            self._faults += 1
            if self._faults >= self.plan.max_consecutive_errors:
                self._pause(f"{self._faults} provider errors in a row; last: {result.detail}")

    def _pause(self, reason: str) -> None:
        if self._stopping is not None:
            return
        log.warning("campaign pausing itself", campaign_id=self.plan.campaign_id, reason=reason)
        self.stop(f"paused: {reason}")
        if self._on_pause is not None:
            asyncio.get_running_loop().create_task(self._on_pause(reason))

    async def _drain(self) -> None:
        """Let the workers answer what they hold; when stopping, what waits in the queue goes back."""
        while self.in_flight:
            if self._stopping is not None:
                self._requeue_waiting()
            await asyncio.sleep(0.02)

    def _requeue_waiting(self) -> None:
        while not self._queue.empty():
            _, _, message, _ = self._queue.get_nowait()
            self.in_flight -= 1
            self.writer.finish(Finish(message.ledger_id, "requeue", "not sent: the campaign stopped"))
