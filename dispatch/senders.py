"""What e-mail is sent as and through: sender profiles, sending domains, tracking domains, warmup plans.

A sender profile binds a From identity to one provider account; its secret (SMTP password or API key) is sealed
at rest and never returned. A sending domain records its SPF, DKIM and DMARC status (the pre-flight checklist
requires all three valid). A warmup plan ramps a sender profile's daily volume: one cap per day from the day it
is activated; the senders count today's messages from the ledger, so a restart never grants a day twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm import audit
from crm.audit import Actor

MAX_ID = 2**63 - 1
Provider = Literal["smtp", "sendgrid", "ses", "mailgun"]
RecordStatus = Literal["unchecked", "valid", "invalid", "missing"]
MAX_WARMUP_DAYS = 120


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class Invalid(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SenderProfileIn(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S")
    from_name: str | None = Field(None, max_length=200)
    from_email: str | None = Field(None, max_length=254, pattern=r"^[^@\s<>\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
    reply_to: str | None = Field(None, max_length=254, pattern=r"^[^@\s<>\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
    provider: Provider | None = None
    secret: str | None = Field(None, max_length=2000, description="SMTP password or API key: write-only, stored "
                               "encrypted; an empty string removes it")  # fmt: skip
    provider_settings: dict[str, Any] | None = Field(
        None, description='smtp: {"host", "port", "security": "starttls"|"tls"|"none", "username", "connections"}; '
        'sendgrid/mailgun/ses: {"base_url", "domain" (mailgun), "region" (ses), "batch_size"}')  # fmt: skip
    postal_address: str | None = Field(None, max_length=500, description="the physical address every message shows")
    max_per_second: float | None = Field(None, gt=0, le=100_000)
    daily_cap: int | None = Field(None, ge=1)
    is_active: bool | None = None

    @model_validator(mode="after")
    def _settings_size(self) -> SenderProfileIn:
        if self.provider_settings is not None and len(str(self.provider_settings)) > 4000:
            raise ValueError("provider_settings is too large")
        if self.provider_settings and any(k in self.provider_settings for k in ("password", "api_key", "secret")):
            raise ValueError("put the password or API key in secret (stored encrypted), not in provider_settings")
        return self


_PROFILE = """SELECT id, name, from_name, from_email, reply_to, provider::text AS provider, provider_settings,
                     credentials_encrypted IS NOT NULL AS has_secret, postal_address, max_per_second, daily_cap,
                     is_active, email_domain_id, created_at, updated_at
                FROM sender_profiles WHERE deleted_at IS NULL"""
_PROFILE_COLUMNS = ("name", "from_name", "from_email", "reply_to", "provider", "provider_settings", "postal_address",
                    "max_per_second", "daily_cap", "is_active")  # fmt: skip


async def profile(conn: asyncpg.Pool | asyncpg.Connection, profile_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(f"{_PROFILE} AND id = $1", profile_id)
    if row is None:
        raise NotFound(f"sender profile {profile_id} does not exist")
    return dict(row)


async def profiles(pool: asyncpg.Pool, *, limit: int, after_id: int | None) -> list[dict[str, Any]]:
    return [dict(r) for r in await pool.fetch(f"{_PROFILE} AND id > $1 ORDER BY id LIMIT $2", after_id or 0, limit)]


async def save_profile(pool: asyncpg.Pool, actor: Actor, seal: Any, body: SenderProfileIn,
                       profile_id: int | None) -> dict[str, Any]:  # fmt: skip
    """Create (profile_id None) or change a sender profile; ``seal`` encrypts the secret."""
    values = {k: v for k, v in body.model_dump(exclude_unset=True).items() if k in _PROFILE_COLUMNS}
    if profile_id is None:
        missing = [k for k in ("name", "from_email", "provider") if not values.get(k)]
        if missing:
            raise Invalid(f"required: {', '.join(missing)}")
    for required in ("name", "from_email", "provider", "provider_settings", "from_name", "postal_address",
                     "is_active"):  # fmt: skip
        if required in values and values[required] is None:
            raise Invalid(f"{required} cannot be null")
    if "from_email" in values:
        values["from_email"] = values["from_email"].lower()
    if "secret" in body.model_fields_set:
        values["credentials_encrypted"] = seal(body.secret) if body.secret else None
    async with pool.acquire() as conn, conn.transaction():
        if "from_email" in values:
            values["email_domain_id"] = await conn.fetchval(
                "SELECT id FROM email_domains WHERE domain = $1 AND deleted_at IS NULL",
                values["from_email"].rsplit("@", 1)[1],
            )
        try:
            if profile_id is None:
                names = list(values)
                profile_id = await conn.fetchval(
                    f"""INSERT INTO sender_profiles ({", ".join(names)})
                        VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING id""",
                    *values.values(),
                )
                action = "sender_profile.created"
            else:
                assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, start=2))
                changed = await conn.fetchval(
                    f"""UPDATE sender_profiles SET {assignments}{", " if values else ""}updated_at = now()
                         WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
                    profile_id, *values.values(),
                )  # fmt: skip
                if changed is None:
                    raise NotFound(f"sender profile {profile_id} does not exist")
                action = "sender_profile.updated"
        except asyncpg.UniqueViolationError:
            raise Conflict("a sender profile with that name exists") from None
        except (asyncpg.CheckViolationError, asyncpg.DataError) as exc:
            raise Invalid(f"not accepted: {getattr(exc, 'detail', None) or exc}") from None
        await audit.record(conn, actor, action, "sender_profile", profile_id,
                           {"fields": sorted(k for k in values if k != "credentials_encrypted")
                            + (["secret"] if "credentials_encrypted" in values else [])})  # fmt: skip
        return await profile(conn, profile_id)


async def delete_profile(pool: asyncpg.Pool, actor: Actor, profile_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        live = await conn.fetchval(
            """SELECT count(*) FROM campaigns WHERE sender_profile_id = $1 AND deleted_at IS NULL
                  AND status IN ('scheduled', 'running', 'paused')""",
            profile_id,
        )
        if live:
            raise Conflict(f"{live} scheduled, running or paused campaign(s) send with this profile")
        gone = await conn.fetchval(
            "UPDATE sender_profiles SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING id",
            profile_id,
        )
        if gone is None:
            raise NotFound(f"sender profile {profile_id} does not exist")
        await audit.record(conn, actor, "sender_profile.deleted", "sender_profile", profile_id)


# -- sending and tracking domains ---------------------------------------------------------------------------------


class EmailDomainIn(_Strict):
    domain: str | None = Field(None, min_length=3, max_length=253, pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
    spf_status: RecordStatus | None = None
    dkim_status: RecordStatus | None = None
    dmarc_status: RecordStatus | None = None
    dkim_selector: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class TrackingDomainIn(_Strict):
    domain: str | None = Field(None, min_length=3, max_length=253, pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
    is_default: bool | None = None


_DOMAIN_TABLES = {
    "email": ("email_domains", "domain, spf_status::text AS spf_status, dkim_status::text AS dkim_status, "
              "dmarc_status::text AS dmarc_status, dkim_selector"),
    "tracking": ("tracking_domains", "domain, cname_status::text AS cname_status, is_default"),
}  # fmt: skip


async def domain(conn: asyncpg.Pool | asyncpg.Connection, kind: str, domain_id: int) -> dict[str, Any]:
    table, columns = _DOMAIN_TABLES[kind]
    row = await conn.fetchrow(
        f"SELECT id, {columns}, created_at, updated_at FROM {table} WHERE id = $1 AND deleted_at IS NULL", domain_id
    )
    if row is None:
        raise NotFound(f"{kind} domain {domain_id} does not exist")
    return dict(row)


async def domains(pool: asyncpg.Pool, kind: str) -> list[dict[str, Any]]:
    table, columns = _DOMAIN_TABLES[kind]
    rows = await pool.fetch(
        f"SELECT id, {columns}, created_at, updated_at FROM {table} WHERE deleted_at IS NULL ORDER BY domain LIMIT 1000"
    )
    return [dict(r) for r in rows]


async def save_domain(pool: asyncpg.Pool, actor: Actor, kind: str, body: EmailDomainIn | TrackingDomainIn,
                      domain_id: int | None) -> dict[str, Any]:  # fmt: skip
    table, _ = _DOMAIN_TABLES[kind]
    values = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "domain" in values:
        values["domain"] = values["domain"].lower()
    if domain_id is None and "domain" not in values:
        raise Invalid("required: domain")
    async with pool.acquire() as conn, conn.transaction():
        if values.get("is_default"):
            await conn.execute("UPDATE tracking_domains SET is_default = false WHERE is_default")
        status_columns = [k for k in values if k.endswith("_status")]
        try:
            if domain_id is None:
                names = list(values)
                domain_id = await conn.fetchval(
                    f"""INSERT INTO {table} ({", ".join(names)})
                        VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING id""",
                    *values.values(),
                )
            else:
                assignments = [f"{name} = ${i}" for i, name in enumerate(values, start=2)]
                if status_columns:
                    assignments.append("last_checked_at = now()")
                changed = await conn.fetchval(
                    f"""UPDATE {table} SET {", ".join([*assignments, "updated_at = now()"])}
                         WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
                    domain_id, *values.values(),
                )  # fmt: skip
                if changed is None:
                    raise NotFound(f"{kind} domain {domain_id} does not exist")
        except asyncpg.UniqueViolationError:
            raise Conflict(f"the {kind} domain {values.get('domain')} is recorded already") from None
        except (asyncpg.CheckViolationError, asyncpg.DataError) as exc:
            raise Invalid(f"not accepted: {getattr(exc, 'detail', None) or exc}") from None
        if kind == "email":  # profiles sending from it now point at it
            await conn.execute(
                """UPDATE sender_profiles SET email_domain_id = $1
                    WHERE deleted_at IS NULL AND lower(split_part(from_email, '@', 2)) =
                          (SELECT domain FROM email_domains WHERE id = $1)""",
                domain_id,
            )
        await audit.record(conn, actor, f"{kind}_domain.saved", f"{kind}_domain", domain_id,
                           {k: str(v) for k, v in values.items()})  # fmt: skip
        return await domain(conn, kind, domain_id)


# -- warmup plans -------------------------------------------------------------------------------------------------


class WarmupPlanIn(_Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    sender_profile_id: int = Field(ge=1, le=MAX_ID)
    daily_caps: list[int] | None = Field(None, min_length=1, max_length=MAX_WARMUP_DAYS,
                                         description="the cap of day 0, 1, 2 ...")  # fmt: skip
    start: int | None = Field(None, ge=1, le=10_000_000, description="or: day 0's cap ...")
    growth: float | None = Field(None, gt=1, le=10, description="... multiplied by this each day ...")
    target: int | None = Field(None, ge=1, le=100_000_000, description="... until it reaches this")
    max_bounce_rate: float = Field(0.03, ge=0, le=1)
    max_complaint_rate: float = Field(0.001, ge=0, le=1)

    @model_validator(mode="after")
    def _one_schedule(self) -> WarmupPlanIn:
        ramp = (self.start, self.growth, self.target)
        if self.daily_caps is None and None in ramp:
            raise ValueError("give daily_caps, or start, growth and target")
        if self.daily_caps is not None and any(v is not None for v in ramp):
            raise ValueError("give daily_caps or start/growth/target, not both")
        if self.daily_caps is not None and any(cap < 0 for cap in self.daily_caps):
            raise ValueError("a daily cap is zero or more")
        return self

    def caps(self) -> list[int]:
        if self.daily_caps is not None:
            return list(self.daily_caps)
        if self.start is None or self.growth is None or self.target is None:
            raise ValueError("no schedule")  # the validator makes this unreachable
        return exponential_ramp(self.start, self.growth, self.target)


def exponential_ramp(start: int, growth: float, target: int) -> list[int]:
    """Day caps from ``start``, times ``growth`` a day, ending with ``target`` (at most MAX_WARMUP_DAYS days)."""
    caps: list[int] = []
    cap = float(start)
    while cap < target and len(caps) < MAX_WARMUP_DAYS - 1:
        caps.append(int(cap))
        cap *= growth
    caps.append(target)
    return caps


_PLAN = """SELECT p.id, p.name, p.status::text AS status, p.sender_profile_id, p.started_on, p.max_bounce_rate,
                  p.max_complaint_rate, p.created_at, p.updated_at,
                  (SELECT array_agg(d.daily_cap ORDER BY d.day_number) FROM warmup_plan_days d
                    WHERE d.warmup_plan_id = p.id) AS daily_caps
             FROM warmup_plans p"""


async def plan(conn: asyncpg.Pool | asyncpg.Connection, plan_id: int, today: date | None = None) -> dict[str, Any]:
    row = await conn.fetchrow(f"{_PLAN} WHERE p.id = $1", plan_id)
    if row is None:
        raise NotFound(f"warmup plan {plan_id} does not exist")
    out = dict(row)
    out["daily_caps"] = list(out["daily_caps"] or [])
    day = (today - out["started_on"]).days if today and out["started_on"] else None
    out["today_cap"] = out["daily_caps"][day] if day is not None and 0 <= day < len(out["daily_caps"]) else None
    return out


async def plans(pool: asyncpg.Pool, today: date) -> list[dict[str, Any]]:
    ids = await pool.fetch("SELECT id FROM warmup_plans ORDER BY id LIMIT 1000")
    return [await plan(pool, r["id"], today) for r in ids]


async def create_plan(pool: asyncpg.Pool, actor: Actor, body: WarmupPlanIn) -> dict[str, Any]:
    caps = body.caps()
    async with pool.acquire() as conn, conn.transaction():
        await profile(conn, body.sender_profile_id)
        plan_id = await conn.fetchval(
            """INSERT INTO warmup_plans (name, sender_profile_id, max_bounce_rate, max_complaint_rate)
               VALUES ($1, $2, $3, $4) RETURNING id""",
            body.name, body.sender_profile_id, body.max_bounce_rate, body.max_complaint_rate,
        )  # fmt: skip
        await conn.executemany(
            "INSERT INTO warmup_plan_days (warmup_plan_id, day_number, daily_cap) VALUES ($1, $2, $3)",
            [(plan_id, day, cap) for day, cap in enumerate(caps)],
        )
        await audit.record(conn, actor, "warmup_plan.created", "warmup_plan", plan_id, {"days": len(caps)})
        return await plan(conn, plan_id)


async def plan_action(pool: asyncpg.Pool, actor: Actor, plan_id: int, action: str, today: date) -> dict[str, Any]:
    """activate (day 0 is today; one active plan per sender profile), pause, resume, complete."""
    moves = {"activate": ("draft", "active"), "pause": ("active", "paused"), "resume": ("paused", "active"),
             "complete": (None, "completed")}  # fmt: skip
    if action not in moves:
        raise NotFound(f"no action {action!r}; use {', '.join(moves)}")
    source, target = moves[action]
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT status::text AS status, sender_profile_id FROM warmup_plans WHERE id = $1 FOR UPDATE", plan_id
        )
        if row is None:
            raise NotFound(f"warmup plan {plan_id} does not exist")
        if (source is not None and row["status"] != source) or row["status"] == "completed":
            raise Conflict(f"a {row['status']} plan cannot {action}")
        if target == "active" and await conn.fetchval(
            """SELECT 1 FROM warmup_plans WHERE sender_profile_id = $1 AND status = 'active' AND id <> $2""",
            row["sender_profile_id"], plan_id,
        ):  # fmt: skip
            raise Conflict("the sender profile has an active warmup plan already")
        await conn.execute(
            f"""UPDATE warmup_plans SET status = $2, updated_at = now()
                {", started_on = $3" if action == "activate" else ""} WHERE id = $1""",
            plan_id, target, *([today] if action == "activate" else []),
        )  # fmt: skip
        await audit.record(conn, actor, f"warmup_plan.{action}", "warmup_plan", plan_id)
        return await plan(conn, plan_id, today)
