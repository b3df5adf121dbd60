"""A campaign's compliance settings: stored in its columns and ``settings->'compliance'``, validated here.

Columns: calling_window, consent_required, max_attempts, default_retry_minutes, abandon_rule,
abandon_lockout_hours. The rest lives in ``campaigns.settings.compliance``: max_attempts_per_day,
retry_minutes (by outcome), timezone_fallback, email caps. The 72-hour lock after an abandoned call applies
under the UK rule, or under any rule when ``abandon_lockout`` is switched on.
"""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm import audit
from crm.audience.rows import known_zone
from crm.audit import Actor
from crm.compliance.decision import EmailCampaign, PhoneCampaign
from crm.compliance.rules import OUTCOMES, AttemptRules, EmailCaps
from crm.compliance.windows import CallingWindow, WindowError


class CampaignNotFound(LookupError):
    pass


class EmailCapsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_day: int | None = Field(1, ge=0, le=1000)
    per_week: int | None = Field(3, ge=0, le=1000)
    per_month: int | None = Field(8, ge=0, le=10000)


class CampaignCompliance(BaseModel):
    """What the decision functions need from a campaign."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    calling_window: dict[str, Any] = Field(
        default_factory=dict,
        description='{"mon": [["08:00","21:00"]], ..., "holidays": ["2026-12-25"]} in the contact\'s local time; '
        "{} = 08:00-21:00 Monday to Friday",
    )
    timezone_fallback: str | None = Field(None, description="zone for contacts whose local time is unknown")
    consent_required: bool = False
    max_attempts: int = Field(5, ge=1, le=100)
    max_attempts_per_day: int = Field(3, ge=1, le=100)
    default_retry_minutes: int = Field(240, ge=0, le=525_600)
    retry_minutes: dict[Literal[OUTCOMES], int] = Field(  # type: ignore[valid-type]
        default_factory=dict, description=f"minimum minutes before the next attempt after: {', '.join(OUTCOMES)}"
    )
    abandon_rule: Literal["us_fcc", "uk_ofcom"] = "us_fcc"
    abandon_lockout_hours: int = Field(72, ge=0, le=24 * 365)
    abandon_lockout: bool = Field(False, description="apply the lock after an abandoned call under the US rule too")
    one_call_per_account: bool = Field(
        True, description="never call two lines of one account at once (US multi-line rule, 47 CFR 64.1200(a)(6))"
    )
    email_caps: EmailCapsModel = Field(default_factory=EmailCapsModel)

    @field_validator("calling_window")
    @classmethod
    def _window(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            CallingWindow.from_json(value)
        except WindowError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone_fallback")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not known_zone(value):
            raise ValueError("not an IANA time zone")
        return value

    @field_validator("retry_minutes")
    @classmethod
    def _minutes(cls, value: dict[str, int]) -> dict[str, int]:
        for outcome, minutes in value.items():
            if not 0 <= minutes <= 525_600:
                raise ValueError(f"{outcome}: minutes must be between 0 and 525600")
        return value

    def phone(self, campaign_id: int) -> PhoneCampaign:
        lockout = self.abandon_lockout_hours if self.abandon_rule == "uk_ofcom" or self.abandon_lockout else 0
        return PhoneCampaign(
            campaign_id,
            CallingWindow.from_json(self.calling_window),
            self.consent_required,
            AttemptRules(
                self.max_attempts,
                self.max_attempts_per_day,
                dict(self.retry_minutes),
                self.default_retry_minutes,
                lockout,
            ),
            self.one_call_per_account,
        )

    def email(self, campaign_id: int) -> EmailCampaign:
        caps = self.email_caps
        return EmailCampaign(campaign_id, self.consent_required, EmailCaps(caps.per_day, caps.per_week, caps.per_month))


_COLUMNS = ("calling_window", "consent_required", "max_attempts", "default_retry_minutes", "abandon_rule",
            "abandon_lockout_hours")  # fmt: skip


async def load(conn: asyncpg.Connection | asyncpg.Pool, campaign_id: int) -> tuple[str, CampaignCompliance]:
    """The campaign's channel and compliance settings."""
    row = await conn.fetchrow(
        f"""SELECT channel::text, settings->'compliance' AS extra, {", ".join(_COLUMNS)}
              FROM campaigns WHERE id = $1 AND deleted_at IS NULL""",
        campaign_id,
    )
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    values = {name: row[name] for name in _COLUMNS} | dict(row["extra"] or {})
    return row["channel"], CampaignCompliance.model_validate(values)


async def save(pool: asyncpg.Pool, actor: Actor, campaign_id: int, rules: CampaignCompliance) -> None:
    data = rules.model_dump(mode="json")
    extra = {key: value for key, value in data.items() if key not in _COLUMNS}
    async with pool.acquire() as conn, conn.transaction():
        updated = await conn.fetchval(
            """UPDATE campaigns SET calling_window = $2, consent_required = $3, max_attempts = $4,
                      default_retry_minutes = $5, abandon_rule = $6, abandon_lockout_hours = $7,
                      settings = settings || jsonb_build_object('compliance', $8::jsonb), updated_at = now()
                WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
            campaign_id, data["calling_window"], data["consent_required"], data["max_attempts"],
            data["default_retry_minutes"], data["abandon_rule"], data["abandon_lockout_hours"], extra,
        )  # fmt: skip
        if updated is None:
            raise CampaignNotFound(f"campaign {campaign_id} does not exist")
        await audit.record(conn, actor, "campaign.compliance_changed", "campaign", campaign_id, data)
