"""A campaign's compliance settings, and "why is (or isn't) this contact reached?"."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Id
from admin_api.problems import Problem
from crm.compliance import campaign_rules, facts
from crm.compliance.campaign_rules import CampaignCompliance, CampaignNotFound
from crm.roles import Role

api = Api()
MANAGE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = MANAGE | {Role.SUPERVISOR, Role.QUALITY_ANALYST}


@api.route("GET", "/api/campaigns/{campaignId}/compliance", summary="A campaign's compliance settings",
           tag="compliance", roles=READ, response=CampaignCompliance)  # fmt: skip
async def get_campaign_compliance(req: ApiRequest) -> CampaignCompliance:
    try:
        _, rules = await campaign_rules.load(req.services.pool, req.path_int("campaignId"))
    except CampaignNotFound as exc:
        raise Problem(404, str(exc)) from None
    return rules


@api.route("PUT", "/api/campaigns/{campaignId}/compliance", summary="Set a campaign's compliance settings",
           tag="compliance", roles=MANAGE, body=CampaignCompliance, response=CampaignCompliance)  # fmt: skip
async def put_campaign_compliance(req: ApiRequest) -> CampaignCompliance:
    try:
        await campaign_rules.save(req.services.pool, req.actor, req.path_int("campaignId"), req.body)
    except CampaignNotFound as exc:
        raise Problem(404, str(exc)) from None
    return req.body  # type: ignore[no-any-return]


class DecisionQuery(BaseModel):
    contact_id: Id
    campaign_id: Id


class ReasonOut(BaseModel):
    code: str
    message: str
    until: datetime | None = Field(description="when this reason stops applying; null if it does not by itself")


class DecisionOut(BaseModel):
    contact_id: int
    campaign_id: int
    channel: str
    allowed: bool
    reasons: list[ReasonOut]
    next_possible: datetime | None = Field(description="when every reason has lifted; null while one is permanent")
    local_time_zones: list[str] | None
    local_time_source: str | None = Field(description="contact, account_office, account_country, phone_number, ...")
    facts: dict[str, Any]


@api.route("GET", "/api/compliance/decision", summary="May this campaign reach this contact now? Every reason if not",
           tag="compliance", roles=READ, query=DecisionQuery, response=DecisionOut)  # fmt: skip
async def explain_decision(req: ApiRequest) -> DecisionOut:
    query: DecisionQuery = req.query
    now = datetime.fromtimestamp(req.services.clock(), UTC)
    try:
        found = await facts.explain(req.services.pool, req.services.suppressions.index, query.contact_id,
                                    query.campaign_id, now)  # fmt: skip
    except (facts.ContactNotFound, CampaignNotFound) as exc:
        raise Problem(404, str(exc)) from None
    decision = found.decision

    def utc(moment: datetime | None) -> datetime | None:
        return moment.astimezone(UTC) if moment is not None else None

    shown = {
        key: asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
        for key, value in found.facts.items()
    }
    return DecisionOut(
        contact_id=query.contact_id,
        campaign_id=query.campaign_id,
        channel=found.channel,
        allowed=decision.allowed,
        reasons=[ReasonOut(code=r.code, message=r.message, until=utc(r.until)) for r in decision.reasons],
        next_possible=utc(decision.next_possible),
        local_time_zones=list(found.zones.zones) if found.zones else None,
        local_time_source=found.zones.source if found.zones else None,
        facts=shown,
    )
