"""The e-mail engine: one sender per running e-mail campaign, started and stopped as campaigns change.

A watcher looks at the campaigns table every second (a campaign started, paused or resumed through the API is
picked up within that). Starting a sender loads its plan (sender profile, variants compiled, compliance rules,
limits, the warmup cap rebuilt from the ledger's count of today), creates the ledger rows of members that have
none yet, and runs it. When a sender ends on its own the campaign is completed, or paused with the reason in
the audit log (consecutive provider errors, templates that fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from crm import audit
from crm.compliance import campaign_rules
from crm.compliance.suppression_index import SuppressionIndex
from dispatch import ab_test, ledger
from dispatch.ledger import AmbiguousPolicy, LedgerWriter
from dispatch.merge import MergeVariant, NotMergeable
from dispatch.mime import Envelope, build
from dispatch.providers.base import Merged, Outgoing, Transport
from dispatch.providers.capture import CaptureBox, CaptureTransport
from dispatch.providers.http_api import HttpOptions, MailgunTransport, SendGridTransport
from dispatch.providers.ses import SesTransport
from dispatch.providers.smtp import SmtpOptions, SmtpTransport
from dispatch.rates import MessageLimits, RateBook
from dispatch.sender import CampaignSender, Identity, Plan
from dispatch.templates import CompiledVariant, TemplateProblem
from dispatch.tokens import Signer
from pacing.warmup import DailyCap, WarmupPlan

log = structlog.get_logger("pivotal.email")

WATCH_S = 1.0
#: How often a campaign waiting for its A/B winner looks again (a manual choice is seen within this).
WINNER_POLL_S = 2.0
#: First key of the campaigns' advisory locks (pg_try_advisory_lock(int, int)): "EM".
LOCK_SPACE = 0x454D
#: A sender profile without max_per_second: SMTP relays take this comfortably; batched HTTP APIs far more.
DEFAULT_RATE_PER_S = 1000.0
DEFAULT_HTTP_RATE_PER_S = 100_000.0
HTTP_PROVIDERS: dict[str, tuple[type[SendGridTransport] | type[MailgunTransport], str]] = {
    "sendgrid": (SendGridTransport, "https://api.sendgrid.com"),
    "mailgun": (MailgunTransport, "https://api.mailgun.net"),
}

#: A campaign with its sender profile and tracking domain (the default one when it names none).
_CAMPAIGN = """SELECT c.id, c.name, c.settings, c.ab_test_share, p.id AS profile_id, p.from_name, p.from_email,
              p.reply_to, p.postal_address, p.provider::text AS provider, p.provider_settings,
              p.credentials_encrypted, p.max_per_second, t.domain AS tracking_domain
         FROM campaigns c JOIN sender_profiles p ON p.id = c.sender_profile_id AND p.deleted_at IS NULL
         LEFT JOIN tracking_domains t ON t.deleted_at IS NULL
              AND (t.id = c.tracking_domain_id OR (c.tracking_domain_id IS NULL AND t.is_default))
        WHERE c.id = $1"""

_VARIANTS = """SELECT id, variant_key, subject, preheader, html_body, text_body, split_share, is_winner
                 FROM email_variants WHERE campaign_id = $1 AND deleted_at IS NULL ORDER BY variant_key"""


@dataclass(frozen=True)
class TestResult:
    variant: str
    to: str
    result: str  # sent, permanent, temporary, throttled
    detail: str


@dataclass
class EngineOptions:
    links_base_url: str
    sandbox: bool = True
    ambiguous: AmbiguousPolicy = "resend"
    max_consecutive_errors: int = 20


@dataclass
class _Running:
    task: asyncio.Task[None] | None = None
    sender: CampaignSender | None = None
    stop: str | None = None  # asked to stop before its sender existed
    started: float = field(default_factory=time.monotonic)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, reason: str) -> None:
        self.stop = reason
        self.stopped.set()
        if self.sender is not None:
            self.sender.stop(reason)


class _Locks:
    """The campaigns' advisory locks, on one dedicated connection: a session lock on a pooled connection would
    hold that connection for the whole send (ten campaigns would take the pool) and leak if it went back
    unreleased (pooled connections are not reset). Losing the connection loses the locks: ``on_lost`` then stops
    every sender, and the watcher starts them again under new locks."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], on_lost: Callable[[], None]) -> None:
        self._connect, self._on_lost = connect, on_lost
        self._conn: asyncpg.Connection | None = None
        self._mutex = asyncio.Lock()
        self._closing = False

    async def try_lock(self, campaign_id: int) -> bool:
        async with self._mutex:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
                self._conn.add_termination_listener(lambda _conn: None if self._closing else self._on_lost())
            return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_SPACE, campaign_id))

    async def unlock(self, campaign_id: int) -> None:
        async with self._mutex:
            if self._conn is not None and not self._conn.is_closed():
                with contextlib.suppress(asyncpg.PostgresError, OSError):
                    await self._conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_SPACE, campaign_id)

    async def close(self) -> None:
        self._closing = True  # our own close is no loss
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


class EmailEngine:
    def __init__(
        self, pool: asyncpg.Pool, index: Callable[[], SuppressionIndex], signer: Signer, options: EngineOptions,
        open_secret: Callable[[bytes], str], connect: Callable[[], Awaitable[asyncpg.Connection]],
        box: CaptureBox | None = None, observe: Callable[[str, str, float | None], None] | None = None,
    ) -> None:  # fmt: skip
        self.pool, self._index, self.signer, self.options = pool, index, signer, options
        self._observe = observe
        self._locks = _Locks(connect, self._locks_lost)
        self._open_secret = open_secret
        self.box = box or CaptureBox()
        self.rates = RateBook()
        self.writer = LedgerWriter(pool)
        self.running: dict[int, _Running] = {}
        self._constant_links: dict[int, list[str]] = {}
        self._daily_caps: dict[int, tuple[int, DailyCap]] = {}  # per sender profile: (warmup plan, its cap)
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.writer.start()
        self._watcher = asyncio.create_task(self._watch(), name="email-campaign-watcher")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for running in list(self.running.values()):
            running.request_stop("shutting down")
        await asyncio.gather(*(r.task for r in self.running.values() if r.task), return_exceptions=True)
        await self._locks.close()
        await self.writer.close()

    def _locks_lost(self) -> None:
        log.warning("the campaign locks' connection was lost: senders stop and start again under new locks")
        for running in list(self.running.values()):
            running.request_stop("the campaign lock was lost")

    async def _watch(self) -> None:
        while True:
            try:
                await self._reconcile()
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("email watcher: database unavailable", error=repr(exc))
            await asyncio.sleep(WATCH_S)

    async def _reconcile(self) -> None:
        rows = await self.pool.fetch(
            """SELECT id FROM campaigns WHERE channel = 'email' AND status = 'running' AND deleted_at IS NULL"""
        )
        wanted = {row["id"] for row in rows}
        for campaign_id, running in list(self.running.items()):
            if campaign_id not in wanted:
                running.request_stop("the campaign is no longer running")
        for campaign_id in wanted - set(self.running):
            running = self.running[campaign_id] = _Running()
            running.task = asyncio.create_task(self._run(campaign_id, running), name=f"email-campaign-{campaign_id}")

    async def _run(self, campaign_id: int, running: _Running) -> None:
        """Sends the campaign while holding its advisory lock: one node at a time sends a campaign (a second
        daemon on the same database, or a restarted one whose old connection lingers, leaves it alone)."""
        try:
            if not await self._locks.try_lock(campaign_id):
                return
            try:
                await self._send(campaign_id, running)
            finally:
                await self._locks.unlock(campaign_id)
        except Exception:
            log.exception("email sender crashed", campaign_id=campaign_id)
        finally:
            self.running.pop(campaign_id, None)

    async def _send(self, campaign_id: int, running: _Running) -> None:
        while True:
            try:
                sender, testing = await self._sender(campaign_id)
            except (TemplateProblem, ValueError, LookupError) as exc:
                await self._auto_pause(campaign_id, f"cannot start sending: {exc}")
                return
            running.sender = sender
            if running.stop is not None:
                sender.stop(running.stop)
            result = await sender.run()
            if result != "completed" or not testing:
                break
            if not await self._await_winner(campaign_id, running):
                return  # stopped while waiting; a restart waits again
            # the winner is chosen: the next sender queues the rest of the audience with it
        if result == "completed":
            await self._complete(campaign_id, sender)
        elif result.startswith("paused: "):  # before the watcher looks again, or it would start it anew
            await self._auto_pause(campaign_id, result.removeprefix("paused: "))

    async def _await_winner(self, campaign_id: int, running: _Running) -> bool:
        """After the test cohort: wait until the winner is chosen (by the criterion once the wait after the last
        test message is over, or by hand). False if the campaign stopped meanwhile."""
        while running.stop is None:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    """SELECT c.ab_winner_criterion::text AS criterion, coalesce(c.ab_decide_after_minutes, 0) AS wait,
                              (SELECT max(m.sent_at) FROM email_messages m WHERE m.campaign_id = c.id) AS last_sent,
                              EXISTS (SELECT 1 FROM email_variants v WHERE v.campaign_id = c.id AND v.is_winner)
                                AS decided, now() AS now
                         FROM campaigns c WHERE c.id = $1""",
                    campaign_id,
                )
                if row is None:
                    return False
                if row["decided"]:
                    return True
                delay = WINNER_POLL_S
                if row["criterion"] not in (None, "manual"):
                    # nothing of the test went out: no evidence will come, decide now
                    due = row["last_sent"] + timedelta(minutes=row["wait"]) if row["last_sent"] else row["now"]
                    if row["now"] >= due:
                        await ab_test.decide(conn, campaign_id, row["criterion"])
                        continue
                    delay = min(delay, (due - row["now"]).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(running.stopped.wait(), delay)
        return False

    async def _sender(self, campaign_id: int) -> tuple[CampaignSender, bool]:
        """The campaign's sender, its ledger rows queued; True while it sends an A/B test's cohort."""
        async with self.pool.acquire() as conn:
            campaign = await conn.fetchrow(_CAMPAIGN, campaign_id)
            if campaign is None:
                raise LookupError("the campaign has no sender profile")
            variants = await conn.fetch(_VARIANTS, campaign_id)
            settings = _json(campaign["settings"])
            missing = settings.get("missing_fields", "error")
            compiled = {v["id"]: CompiledVariant(v["subject"], v["preheader"], v["html_body"], v["text_body"],
                                                 missing=missing) for v in variants}  # fmt: skip
            shares = [(v["id"], float(v["split_share"])) for v in variants if float(v["split_share"]) > 0]
            winner = next((v["id"] for v in variants if v["is_winner"]), None)
            cohort = None
            if winner is not None:  # the test is over: whoever has no message yet gets the winner
                shares = [(winner, 100.0)]
            elif len(shares) >= 2 and campaign["ab_test_share"] is not None:
                cohort = float(campaign["ab_test_share"])
            # Queuing looks at every member (a second per 200,000 even when nothing is new): done again only when
            # the audience grew (a refresh) or the A/B phase moved on, so a restart resumes sending at once.
            members = await conn.fetchval("SELECT count(*) FROM campaign_members WHERE campaign_id = $1", campaign_id)
            queued_for = {"members": members, "phase": f"winner:{winner}" if winner else "cohort" if cohort else "all"}
            if settings.get("ledger_rows") != queued_for:
                added = await ledger.create_rows(conn, campaign_id, campaign["profile_id"], campaign["provider"],
                                                 shares, cohort)  # fmt: skip
                await conn.execute(
                    "UPDATE campaigns SET settings = settings || jsonb_build_object('ledger_rows', $2::jsonb) "
                    "WHERE id = $1",
                    campaign_id, queued_for,
                )  # fmt: skip
                if added:
                    log.info("email audience queued", campaign_id=campaign_id, recipients=added)
            _, rules = await campaign_rules.load(conn, campaign_id)
            daily = await self._daily_cap(conn, campaign["profile_id"])
        provider_settings = _json(campaign["provider_settings"])
        transport = self._transport(campaign, provider_settings)
        default_rate = DEFAULT_RATE_PER_S if transport.batch_size == 1 else DEFAULT_HTTP_RATE_PER_S
        rate = float(campaign["max_per_second"] or provider_settings.get("max_per_second") or default_rate)
        account = provider_settings.get("account") or f"{campaign['provider']}:{provider_settings.get('host', '')}"
        fixed = [self.rates.limiter(f"provider:{account}", float(provider_settings.get("account_per_second", rate))),
                 self.rates.limiter(f"sender:{campaign['profile_id']}", rate)]  # fmt: skip
        limits = MessageLimits(self.rates, fixed, settings.get("domain_limits") or {})
        base = f"https://{campaign['tracking_domain']}" if campaign["tracking_domain"] else self.options.links_base_url
        plan = Plan(campaign_id, campaign["name"],
                    Identity(campaign["from_name"], campaign["from_email"], campaign["reply_to"],
                             campaign["postal_address"]), compiled, base,
                    rules.email(campaign_id), settings.get("ambiguous_policy", self.options.ambiguous),
                    int(settings.get("max_consecutive_errors", self.options.max_consecutive_errors)))  # fmt: skip
        if transport.batch_size > 1:
            plan.merge_variants = {v["id"]: _mergeable(v, missing, base) for v in variants}
        sender = CampaignSender(self.pool, plan, transport, limits, self.writer, self._index, self.signer,
                                daily_cap=daily, observe=self._observe)  # fmt: skip
        return sender, cohort is not None

    async def constant_link(self, message_id: int, number: int) -> str | None:
        """The target of a message's link ``number`` (a link without merge fields, as batched providers send)."""
        variant_id = await self.pool.fetchval("SELECT variant_id FROM email_messages WHERE id = $1", message_id)
        if variant_id is None:
            return None
        links = self._constant_links.get(variant_id)
        if links is None:
            html_body = await self.pool.fetchval("SELECT html_body FROM email_variants WHERE id = $1", variant_id)
            try:  # the numbering depends on the HTML alone; a variant's content no longer changes once it sends
                links = MergeVariant("-", "", html_body or "", "-", links_base="-").constant_links
            except (NotMergeable, TemplateProblem):
                links = []
            if len(self._constant_links) > 1000:
                self._constant_links.clear()
            self._constant_links[variant_id] = links
        return links[number] if 0 <= number < len(links) else None

    async def test_send(self, campaign_id: int, to: list[str], contact_id: int | None) -> list[TestResult]:
        """Every variant, rendered for one contact (the one given, else the audience's first), to each address,
        through the campaign's own provider (or the sandbox). No ledger row: the subject says "[Test A]"."""
        async with self.pool.acquire() as conn:
            campaign = await conn.fetchrow(_CAMPAIGN, campaign_id)
            if campaign is None:
                raise LookupError("choose a sender profile for the campaign first")
            variants = await conn.fetch(_VARIANTS, campaign_id)
            if not variants:
                raise LookupError("the campaign has no variant to test")
            sample = await ledger.sample_recipient(conn, campaign_id, contact_id)
        settings = _json(campaign["settings"])
        identity = Identity(campaign["from_name"], campaign["from_email"], campaign["reply_to"],
                            campaign["postal_address"])  # fmt: skip
        base = f"https://{campaign['tracking_domain']}" if campaign["tracking_domain"] else self.options.links_base_url
        links = {
            "unsubscribe_url": f"{base}/e/u/{self.signer.sign('u', 0)}",
            "open_url": f"{base}/e/o/{self.signer.sign('o', 0)}.gif",
            "postal_address": identity.postal_address,
        }
        fields = {"contact": sample.contact, "account": sample.account, "campaign": {"name": campaign["name"]}}
        messages = []
        for v in variants:  # every variant renders before anything is sent
            compiled = CompiledVariant(v["subject"], v["preheader"], v["html_body"], v["text_body"],
                                       missing=settings.get("missing_fields", "error"))  # fmt: skip
            try:
                rendered = compiled.render(fields, links, None)
            except TemplateProblem as exc:
                raise TemplateProblem(
                    exc.part, exc.line, f"variant {v['variant_key']}: {exc.reason}", exc.field
                ) from None
            for address in to:
                message_id = f"test.{uuid.uuid4().hex}@{identity.domain}"
                data = build(
                    Envelope(
                        identity.from_name,
                        identity.from_email,
                        address,
                        f"[Test {v['variant_key']}] {rendered.subject}",
                        message_id,
                        links["unsubscribe_url"],
                        identity.reply_to,
                    ),
                    rendered.html,
                    rendered.text,
                )
                merged = Merged(
                    None,
                    f"[Test {v['variant_key']}] {rendered.subject}",
                    [],
                    links["unsubscribe_url"],
                    rendered.html,
                    rendered.text,
                )  # a batched provider takes the parts
                messages.append(
                    (
                        v["variant_key"],
                        Outgoing(
                            0,
                            identity.from_email,
                            address,
                            message_id,
                            data,
                            merged,
                            identity.from_name,
                            identity.reply_to,
                        ),
                    )
                )
        transport = self._transport(campaign, _json(campaign["provider_settings"]))
        await transport.open()
        try:
            results = []
            for key, message in messages:
                result = await transport.send(message)
                results.append(TestResult(key, message.to_email, result.kind, result.detail))
        finally:
            await transport.close()
        return results

    def _transport(self, campaign: asyncpg.Record, provider_settings: dict[str, Any]) -> Transport:
        if self.options.sandbox:
            return CaptureTransport(self.box)
        password = self._open_secret(campaign["credentials_encrypted"]) if campaign["credentials_encrypted"] else None
        if campaign["provider"] in HTTP_PROVIDERS:  # SendGrid, Mailgun
            transport, default_url = HTTP_PROVIDERS[campaign["provider"]]
            if not password:
                raise ValueError(f"the sender profile has no {campaign['provider']} API key (its secret)")
            if campaign["provider"] == "mailgun" and not provider_settings.get("domain"):
                raise ValueError("a Mailgun sender profile needs provider_settings.domain")
            return transport(HttpOptions(
                base_url=str(provider_settings.get("base_url", default_url)), api_key=password,
                domain=str(provider_settings.get("domain", "")),
                batch_size=max(1, min(1000, int(provider_settings.get("batch_size", 1000)))),
                connections=max(1, min(64, int(provider_settings.get("connections", 4)))),
            ))  # fmt: skip
        if campaign["provider"] == "ses":
            access, _, secret = (password or "").partition(":")
            region = str(provider_settings.get("region", ""))
            if not access or not secret or not region:
                raise ValueError(
                    "an SES sender profile needs its secret as ACCESS_KEY_ID:SECRET_ACCESS_KEY and "
                    "provider_settings.region"
                )
            ses = HttpOptions(
                base_url=str(provider_settings.get("base_url", f"https://email.{region}.amazonaws.com")),
                api_key="", batch_size=max(1, min(50, int(provider_settings.get("batch_size", 50)))),
                connections=max(1, min(64, int(provider_settings.get("connections", 4)))),
            )  # fmt: skip
            return SesTransport(ses, access, secret, region, provider_settings.get("configuration_set"))
        if campaign["provider"] != "smtp":
            raise ValueError(f"the {campaign['provider']} provider is not available")
        options = SmtpOptions(
            host=str(provider_settings.get("host", "127.0.0.1")), port=int(provider_settings.get("port", 25)),
            username=provider_settings.get("username"), password=password,
            security=str(provider_settings.get("security", "starttls")),
            connections=int(provider_settings.get("connections", 8)),
            messages_per_connection=int(provider_settings.get("messages_per_connection", 1000)),
        )  # fmt: skip
        return SmtpTransport(options)

    async def _daily_cap(self, conn: asyncpg.Connection, profile_id: int) -> DailyCap | None:
        """The sender profile's active warmup plan, its count of today rebuilt from the ledger (UTC days)."""
        plan = await conn.fetchrow(
            """SELECT p.id, p.started_on, array_agg(d.daily_cap ORDER BY d.day_number) AS caps
                 FROM warmup_plans p JOIN warmup_plan_days d ON d.warmup_plan_id = p.id
                WHERE p.sender_profile_id = $1 AND p.status = 'active' GROUP BY p.id ORDER BY p.id DESC LIMIT 1""",
            profile_id,
        )
        if plan is None:
            return None
        shared = self._daily_caps.get(profile_id)
        if shared is not None and shared[0] == plan["id"]:
            return shared[1]  # every campaign of the profile on this node takes from the same day's cap
        today = datetime.now(UTC).date()
        sent_today = await conn.fetchval(  # each count through an index: sent_at per profile, sending per campaign
            """SELECT (SELECT count(*) FROM email_messages WHERE sender_profile_id = $1 AND sent_at >= $2::date)
                    + (SELECT count(*) FROM email_messages WHERE status = 'sending' AND sending_at >= $2::date
                          AND campaign_id IN (SELECT id FROM campaigns WHERE sender_profile_id = $1))""",
            profile_id, today,
        )  # fmt: skip
        cap = DailyCap(WarmupPlan(plan["started_on"].toordinal(), tuple(plan["caps"])))
        cap.rebuild(today.toordinal(), int(sent_today))
        self._daily_caps[profile_id] = (plan["id"], cap)
        return cap

    async def _auto_pause(self, campaign_id: int, reason: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            paused = await conn.fetchval(
                """UPDATE campaigns SET status = 'paused', updated_at = now() WHERE id = $1 AND status = 'running'
                   RETURNING id""",
                campaign_id,
            )
            if paused:
                await audit.record(conn, audit.SYSTEM, "campaign.auto_paused", "campaign", campaign_id,
                                   {"reason": reason[:1000]})  # fmt: skip
        log.warning("email campaign paused", campaign_id=campaign_id, reason=reason)

    async def _complete(self, campaign_id: int, sender: CampaignSender) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                """UPDATE campaigns SET status = 'completed', completed_at = now(), updated_at = now()
                    WHERE id = $1 AND status = 'running' RETURNING id""",
                campaign_id,
            )
            if done:
                c = sender.counters
                await audit.record(conn, audit.SYSTEM, "campaign.completed", "campaign", campaign_id,
                                   {"sent": c.sent, "failed": c.failed, "suppressed": c.suppressed,
                                    "skipped": c.skipped, "ambiguous_resent": c.ambiguous_recovered})  # fmt: skip
        log.info("email campaign completed", campaign_id=campaign_id, sent=sender.counters.sent)


def _mergeable(variant: asyncpg.Record, missing: Any, links_base: str) -> MergeVariant | None:
    """The variant as a batched provider's template, or None when it has logic (rendered per recipient)."""
    try:
        return MergeVariant(variant["subject"], variant["preheader"], variant["html_body"], variant["text_body"],
                            missing=missing, links_base=links_base)  # fmt: skip
    except NotMergeable:
        return None


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}
