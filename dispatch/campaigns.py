"""E-mail campaigns in PostgreSQL: create, read, edit, variants, the pre-flight checklist, lifecycle actions.

The lifecycle is the telemarketing one (``crm.campaigns.lifecycle``): draft -> scheduled -> running <-> paused
-> completed. Starting runs the pre-flight checklist (``dispatch.preflight``) and freezes the audience into
``campaign_members`` in one transaction; the engine notices the running campaign within a second and queues a
ledger row per member with an address.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm import audit
from crm.audience.domains import normalise_domain
from crm.audit import Actor
from crm.campaigns import store
from crm.campaigns.lifecycle import (
    CHECKED,
    EDITABLE,
    CampaignAction,
    CampaignStatus,
    Item,
    blocking_failures,
    next_status,
)
from crm.campaigns.store import BadReference, CampaignConflict, NotReady, lock
from crm.compliance.campaign_rules import CampaignNotFound
from dispatch.preflight import EmailReadiness, VariantFacts, checklist
from dispatch.templates import CompiledVariant, MissingPolicy, TemplateProblem

MAX_ID = 2**63 - 1
WinnerCriterion = Literal["open_rate", "click_rate", "manual"]
#: Kept in ``campaigns.settings``; the rest are columns.
IN_SETTINGS = ("missing_fields", "domain_limits", "max_consecutive_errors", "ambiguous_policy", "max_bounce_rate",
               "max_complaint_rate")  # fmt: skip
COLUMNS = ("name", "description", "client_organisation_id", "sender_profile_id", "tracking_domain_id", "starts_at",
           "ends_at", "ab_winner_criterion", "ab_test_share", "ab_decide_after_minutes")  # fmt: skip
DEFAULT_SETTINGS: dict[str, Any] = {"missing_fields": "error", "domain_limits": {}, "max_consecutive_errors": 20,
                                    "ambiguous_policy": "resend", "max_bounce_rate": 0.05,
                                    "max_complaint_rate": 0.003}  # fmt: skip
_REFERENCES = {"sender_profile_id": "sender_profiles", "tracking_domain_id": "tracking_domains",
               "client_organisation_id": "client_organisations"}  # fmt: skip


class EmailCampaignFields(BaseModel):
    """Every field optional: a create takes defaults for those left out, an update changes only those given."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S")
    description: str | None = Field(None, max_length=5000)
    client_organisation_id: int | None = Field(None, ge=1, le=MAX_ID)
    sender_profile_id: int | None = Field(None, ge=1, le=MAX_ID)
    tracking_domain_id: int | None = Field(None, ge=1, le=MAX_ID,
                                           description="null: the default tracking domain")  # fmt: skip
    starts_at: datetime | None = Field(None, description="when a scheduled campaign starts sending")
    ends_at: datetime | None = None
    ab_winner_criterion: WinnerCriterion | None = Field(
        None, description="how the winner of an A/B test is chosen: unique opens or clicks per message sent, "
        "or by hand (POST .../variants/{key}/winner)")  # fmt: skip
    ab_test_share: Decimal | None = Field(None, gt=0, le=100, max_digits=5, decimal_places=2,
                                          description="% of the audience in the test; the rest gets the winner. "
                                          "Null: the whole audience is split")  # fmt: skip
    ab_decide_after_minutes: int | None = Field(
        None, ge=1, le=43_200, description="wait after the test's last send before choosing"
    )
    missing_fields: Literal["error", "blank"] | None = Field(
        None, description="a merge field empty for a recipient: skip the recipient (error) or leave it blank"
    )
    domain_limits: dict[str, float] | None = Field(None, description='messages per second per recipient domain, '
                                                   'e.g. {"gmail.com": 50}')  # fmt: skip
    max_consecutive_errors: int | None = Field(
        None, ge=1, le=10_000, description="provider errors in a row that pause the campaign"
    )
    ambiguous_policy: Literal["resend", "skip"] | None = Field(
        None, description="messages in flight at a crash: send again (nobody misses it) or skip (nobody gets it twice)"
    )
    max_bounce_rate: float | None = Field(None, gt=0, le=1, description="hard bounces per message sent that pause it")
    max_complaint_rate: float | None = Field(None, gt=0, le=1, description="complaints per message sent that pause it")

    @field_validator("domain_limits")
    @classmethod
    def _domains(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        if len(value) > 200:
            raise ValueError("at most 200 domain limits")
        out = {}
        for domain, rate in value.items():
            normal = normalise_domain(domain).domain
            if normal is None:
                raise ValueError(f"{domain[:100]!r} is not a domain name")
            if not 0 < rate <= 100_000:
                raise ValueError(f"{normal}: a rate is between 0 and 100000 messages a second")
            out[normal] = float(rate)
        return out


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[A-Z]$", description="A, B, C ...")
    subject: str = Field(min_length=1, max_length=998, pattern=r"\S")
    preheader: str = Field("", max_length=500)
    html_body: str = Field(min_length=1, max_length=2_000_000)
    text_body: str = Field("", max_length=2_000_000, description="empty: derived from the HTML")
    split_share: Decimal = Field(Decimal(100), ge=0, le=100, max_digits=5, decimal_places=2)


class VariantsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variants: list[VariantIn] = Field(min_length=1, max_length=26)


class VariantRejected(ValueError):
    """A variant that does not compile: the variant, part, line and field named (422)."""

    def __init__(self, key: str, problem: TemplateProblem) -> None:
        super().__init__(f"variant {key}, {problem}")
        self.key, self.problem = key, problem


_SELECT = """SELECT c.id, c.status::text AS status, c.name, c.description, c.client_organisation_id,
                    c.sender_profile_id, c.tracking_domain_id, c.starts_at, c.ends_at, c.started_at, c.completed_at,
                    c.ab_winner_criterion::text AS ab_winner_criterion, c.ab_test_share, c.ab_decide_after_minutes,
                    c.settings, c.created_at, c.updated_at,
                    (SELECT count(*) FROM campaign_members m WHERE m.campaign_id = c.id) AS member_count,
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('mode', r.mode, 'list_id', r.list_id,
                            'segment_id', r.segment_id, 'domain_set_id', r.domain_set_id) ORDER BY r.id), '[]')
                       FROM campaign_audience_rules r WHERE r.campaign_id = c.id) AS audience,
                    (SELECT coalesce(jsonb_agg(jsonb_build_object('key', v.variant_key, 'subject', v.subject,
                            'preheader', v.preheader, 'html_body', v.html_body, 'text_body', v.text_body,
                            'split_share', v.split_share, 'is_winner', v.is_winner, 'updated_at', v.updated_at)
                            ORDER BY v.variant_key), '[]')
                       FROM email_variants v WHERE v.campaign_id = c.id AND v.deleted_at IS NULL) AS variants
               FROM campaigns c WHERE c.deleted_at IS NULL AND c.channel = 'email'"""


def _row(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    settings = out.pop("settings") or {}
    for name in IN_SETTINGS:
        out[name] = settings.get(name, DEFAULT_SETTINGS[name])
    out["test_sent_at"] = settings.get("test_sent_at")
    return out


async def get(conn: asyncpg.Pool | asyncpg.Connection, campaign_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(f"{_SELECT} AND c.id = $1", campaign_id)
    if row is None:
        raise CampaignNotFound(f"e-mail campaign {campaign_id} does not exist")
    return _row(row)


async def page(pool: asyncpg.Pool, *, limit: int, after_id: int | None, status: str | None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"{_SELECT} AND c.id > $1 AND ($2::text IS NULL OR c.status::text = $2) ORDER BY c.id LIMIT $3",
        after_id or 0, status, limit,
    )  # fmt: skip
    return [_row(row) for row in rows]


def _split(fields: EmailCampaignFields, *, creating: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    given = fields.model_dump(exclude_unset=True)
    columns = {k: v for k, v in given.items() if k in COLUMNS}
    settings = {k: v for k, v in given.items() if k in IN_SETTINGS and v is not None}
    if creating:
        settings = {**DEFAULT_SETTINGS, **settings}
    return columns, settings


async def create(pool: asyncpg.Pool, actor: Actor, fields: EmailCampaignFields) -> dict[str, Any]:
    columns, settings = _split(fields, creating=True)
    if not columns.get("name"):
        raise BadReference("name: required")
    names = [*columns, "channel", "settings", "created_by"]
    async with pool.acquire() as conn, conn.transaction():
        await store.check_references(conn, columns, _REFERENCES)
        try:
            campaign_id = await conn.fetchval(
                f"""INSERT INTO campaigns ({", ".join(names)})
                    VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING id""",
                *columns.values(), "email", settings, actor.user_id,
            )  # fmt: skip
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise BadReference(store.contradiction(exc)) from None
        await audit.record(conn, actor, "campaign.created", "campaign", campaign_id,
                           {"name": columns["name"], "channel": "email"})  # fmt: skip
        return await get(conn, campaign_id)


async def update(pool: asyncpg.Pool, actor: Actor, campaign_id: int, fields: EmailCampaignFields,
                 suppressions_current: bool) -> dict[str, Any]:  # fmt: skip
    columns, settings = _split(fields, creating=False)
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id, "email")
        if CampaignStatus(current["status"]) not in EDITABLE:
            raise CampaignConflict(f"a {current['status']} campaign cannot be edited; pause it first")
        if current["status"] == "paused" and set(columns) & {"sender_profile_id", "ab_test_share"}:
            raise CampaignConflict("the sender profile and the test cohort cannot change once sending started")
        await store.check_references(conn, columns, _REFERENCES)
        if columns or settings:
            assignments = [f"{name} = ${i}" for i, name in enumerate(columns, start=2)]
            assignments.append(f"settings = settings || ${len(columns) + 2}::jsonb")
            try:
                await conn.execute(
                    f"UPDATE campaigns SET {', '.join(assignments)}, updated_at = now() WHERE id = $1",
                    campaign_id, *columns.values(), settings,
                )  # fmt: skip
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise BadReference(store.contradiction(exc)) from None
            await audit.record(conn, actor, "campaign.updated", "campaign", campaign_id,
                               {"fields": sorted([*columns, *settings])})  # fmt: skip
        if current["status"] == "scheduled":  # it must stay ready to send at its time
            failures = blocking_failures(checklist(await readiness(conn, campaign_id, suppressions_current)))
            if failures:
                raise NotReady(failures)
        return await get(conn, campaign_id)


async def delete(pool: asyncpg.Pool, actor: Actor, campaign_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id, "email")
        if current["status"] != "draft":
            raise CampaignConflict(f"only a draft can be deleted; this one is {current['status']} (archive it)")
        await conn.execute("UPDATE campaigns SET deleted_at = now() WHERE id = $1", campaign_id)
        await audit.record(conn, actor, "campaign.deleted", "campaign", campaign_id)


async def set_variants(pool: asyncpg.Pool, actor: Actor, campaign_id: int, body: VariantsBody) -> dict[str, Any]:
    """Replace the variants (draft or scheduled only: once sending started, recipients are bound to them).
    Each must compile; the first failure is refused naming the variant, part, line and field."""
    keys = [v.key for v in body.variants]
    if len(set(keys)) != len(keys):
        raise BadReference("variants: each key once")
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id, "email")
        if current["status"] not in ("draft", "scheduled"):
            raise CampaignConflict(f"a {current['status']} campaign's content cannot change")
        missing: MissingPolicy = (await conn.fetchval("SELECT settings->>'missing_fields' FROM campaigns WHERE id = $1",
                                       campaign_id)) or "error"  # fmt: skip
        for v in body.variants:
            try:
                CompiledVariant(v.subject, v.preheader, v.html_body, v.text_body, missing=missing)
            except TemplateProblem as exc:
                raise VariantRejected(v.key, exc) from None
        existing = {r["variant_key"]: r for r in await conn.fetch(
            """SELECT id, variant_key, subject, preheader, html_body, text_body, split_share FROM email_variants
                WHERE campaign_id = $1 AND deleted_at IS NULL""", campaign_id)}  # fmt: skip
        for key, row in existing.items():
            if key not in keys:
                await conn.execute("UPDATE email_variants SET deleted_at = now() WHERE id = $1", row["id"])
        for v in body.variants:
            old = existing.get(v.key)
            values = (v.subject, v.preheader, v.html_body, v.text_body, v.split_share)
            if old is None:
                await conn.execute(
                    """INSERT INTO email_variants (campaign_id, variant_key, subject, preheader, html_body,
                                                  text_body, split_share, created_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                    campaign_id, v.key, *values, actor.user_id,
                )  # fmt: skip
            elif tuple(old[n] for n in ("subject", "preheader", "html_body", "text_body", "split_share")) != values:
                await conn.execute(
                    """UPDATE email_variants SET subject = $2, preheader = $3, html_body = $4, text_body = $5,
                              split_share = $6, updated_at = now() WHERE id = $1""",
                    old["id"], *values,
                )  # fmt: skip
        await conn.execute("UPDATE campaigns SET updated_at = now() WHERE id = $1", campaign_id)
        await audit.record(conn, actor, "campaign.variants_changed", "campaign", campaign_id, {"keys": keys})
        return await get(conn, campaign_id)


async def choose_winner(pool: asyncpg.Pool, actor: Actor, campaign_id: int, key: str) -> dict[str, Any]:
    """A manager picks the A/B winner by hand (criterion manual, or to end a test early)."""
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id, "email")
        if current["status"] not in ("running", "paused"):
            raise CampaignConflict("a winner is chosen while the campaign is sending")
        variant_id = await conn.fetchval(
            "SELECT id FROM email_variants WHERE campaign_id = $1 AND variant_key = $2 AND deleted_at IS NULL",
            campaign_id, key,
        )  # fmt: skip
        if variant_id is None:
            raise CampaignNotFound(f"the campaign has no variant {key}")
        if await conn.fetchval("SELECT 1 FROM email_variants WHERE campaign_id = $1 AND is_winner", campaign_id):
            raise CampaignConflict("the winner was already chosen")
        await conn.execute("UPDATE email_variants SET is_winner = true, updated_at = now() WHERE id = $1", variant_id)
        await audit.record(conn, actor, "campaign.ab_winner", "campaign", campaign_id, {"key": key, "by": "hand"})
        return await get(conn, campaign_id)


async def readiness(conn: asyncpg.Connection, campaign_id: int, suppressions_current: bool) -> EmailReadiness:
    c = await get(conn, campaign_id)
    profile = await conn.fetchrow(
        """SELECT p.is_active, p.postal_address, split_part(p.from_email, '@', 2) AS domain,
                  d.spf_status::text AS spf, d.dkim_status::text AS dkim, d.dmarc_status::text AS dmarc
             FROM sender_profiles p
             LEFT JOIN email_domains d ON d.deleted_at IS NULL AND d.domain = lower(split_part(p.from_email, '@', 2))
            WHERE p.id = $1 AND p.deleted_at IS NULL""",
        c["sender_profile_id"],
    )
    tracking = await conn.fetchval(
        """SELECT domain FROM tracking_domains WHERE deleted_at IS NULL
              AND (id = $1 OR ($1::bigint IS NULL AND is_default))""",
        c["tracking_domain_id"],
    )
    selection, params = await store.audience_sql(conn, campaign_id, first_param=1)
    size = 0
    if selection:
        size = await conn.fetchval(
            f"""SELECT count(*) FROM contacts c WHERE c.deleted_at IS NULL AND c.email IS NOT NULL
                   AND c.id IN ({selection})""",
            *params,
        )
    includes = await conn.fetchval(
        "SELECT count(*) FROM campaign_audience_rules WHERE campaign_id = $1 AND mode = 'include'", campaign_id
    )
    test_sent = c["test_sent_at"]
    return EmailReadiness(
        sender_profile_active=bool(profile and profile["is_active"]),
        postal_address=(profile["postal_address"] if profile else "").strip(),
        from_domain=profile["domain"].lower() if profile else None,
        domain_records=(profile["spf"], profile["dkim"], profile["dmarc"]) if profile and profile["spf"] else None,
        tracking_domain=tracking, suppressions_current=suppressions_current, audience_rules=includes,
        audience_size=size,
        variants=tuple(VariantFacts(v["key"], v["subject"], v["preheader"], v["html_body"], v["text_body"],
                                    Decimal(str(v["split_share"])), _timestamp(v["updated_at"]))
                       for v in c["variants"]),
        test_sent_at=_timestamp(test_sent) if test_sent else None, missing_fields=c["missing_fields"],
        ab_winner_criterion=c["ab_winner_criterion"], ab_test_share=c["ab_test_share"],
        ab_decide_after_minutes=c["ab_decide_after_minutes"],
    )  # fmt: skip


def _timestamp(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value).astimezone(UTC)


async def act(pool: asyncpg.Pool, actor: Actor, campaign_id: int, action: CampaignAction,
              suppressions_current: bool) -> dict[str, Any]:  # fmt: skip
    """Move the campaign through its lifecycle; the checklist must pass to schedule and start (resuming sends to
    the frozen audience and needs only the suppressions current)."""
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id, "email")
        target = next_status(CampaignStatus(current["status"]), action)
        if action in CHECKED:
            items = checklist(await readiness(conn, campaign_id, suppressions_current))
            if action is CampaignAction.RESUME:
                items = [i for i in items if i.key in ("sender_profile", "suppressions")]
            failures: list[Item] = blocking_failures(items)
            if action is CampaignAction.SCHEDULE and (await get(conn, campaign_id))["starts_at"] is None:
                raise CampaignConflict("set starts_at before scheduling")
            if failures:
                raise NotReady(failures)
        details: dict[str, Any] = {"from": current["status"], "to": target.value}
        if action is CampaignAction.START:
            details["added"], details["members"] = await store.snapshot(conn, actor, campaign_id)
        await conn.execute(
            f"""UPDATE campaigns SET status = $2, updated_at = now()
                {", started_at = coalesce(started_at, now())" if target is CampaignStatus.RUNNING else ""}
                {", completed_at = now()" if target is CampaignStatus.COMPLETED else ""}
                WHERE id = $1""",
            campaign_id, target.value,
        )  # fmt: skip
        await audit.record(conn, actor, f"campaign.{action.value}", "campaign", campaign_id, details)
        return await get(conn, campaign_id)


async def record_test_send(conn: asyncpg.Connection, actor: Actor, campaign_id: int, to: list[str],
                           at: datetime) -> None:  # fmt: skip
    await conn.execute(
        """UPDATE campaigns SET settings = settings || jsonb_build_object('test_sent_at', $2::text)
            WHERE id = $1""",
        campaign_id, at.isoformat(),
    )  # fmt: skip
    await audit.record(conn, actor, "campaign.test_sent", "campaign", campaign_id, {"to": to})
