"""What e-mail campaigns send as: sender profiles (secrets write-only), sending and tracking domains, warmup
plans."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.email_campaign_routes import ADMIN, CONTENT, MANAGE, READ, problem_for
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from dispatch import senders
from dispatch.senders import EmailDomainIn, SenderProfileIn, TrackingDomainIn, WarmupPlanIn

api = Api()
_ERRORS = (senders.NotFound, senders.Conflict, senders.Invalid)


# -- sender profiles --------------------------------------------------------------------------------------------


class SenderProfileOut(BaseModel):
    id: int
    name: str
    from_name: str
    from_email: str
    reply_to: str | None
    provider: str
    provider_settings: dict[str, Any]
    has_secret: bool = Field(description="the secret itself is never returned")
    postal_address: str
    max_per_second: Decimal | None
    daily_cap: int | None
    is_active: bool
    email_domain_id: int | None = Field(description="the recorded sending domain of from_email, if any")
    created_at: datetime
    updated_at: datetime


class SenderProfilePage(Page[SenderProfileOut]):
    pass


@api.route("POST", "/api/sender-profiles", summary="Create a sender profile (From identity and provider account)",
           tag="email", roles=ADMIN, body=SenderProfileIn, response=SenderProfileOut, status=201)  # fmt: skip
async def create_sender_profile(req: ApiRequest) -> SenderProfileOut:
    try:
        row = await senders.save_profile(req.services.pool, req.actor, req.services.sealer.seal, req.body, None)
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return SenderProfileOut.model_validate(row)


@api.route("GET", "/api/sender-profiles", summary="Sender profiles", tag="email", roles=READ | CONTENT,
           query=PageQuery, response=SenderProfilePage)  # fmt: skip
async def list_sender_profiles(req: ApiRequest) -> SenderProfilePage:
    rows = await senders.profiles(
        req.services.pool, limit=req.query.limit + 1, after_id=decode_cursor(req.query.cursor)
    )
    items, next_cursor = page_of([SenderProfileOut.model_validate(r) for r in rows], req.query.limit,
                                 key=lambda p: p.id)  # fmt: skip
    return SenderProfilePage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/sender-profiles/{profileId}", summary="A sender profile", tag="email", roles=READ | CONTENT,
           response=SenderProfileOut)  # fmt: skip
async def get_sender_profile(req: ApiRequest) -> SenderProfileOut:
    try:
        return SenderProfileOut.model_validate(await senders.profile(req.services.pool, req.path_int("profileId")))
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("PATCH", "/api/sender-profiles/{profileId}", summary="Change a sender profile", tag="email",
           roles=ADMIN, body=SenderProfileIn, response=SenderProfileOut)  # fmt: skip
async def update_sender_profile(req: ApiRequest) -> SenderProfileOut:
    try:
        row = await senders.save_profile(req.services.pool, req.actor, req.services.sealer.seal, req.body,
                                         req.path_int("profileId"))  # fmt: skip
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return SenderProfileOut.model_validate(row)


@api.route("DELETE", "/api/sender-profiles/{profileId}", summary="Delete a sender profile no live campaign uses",
           tag="email", roles=ADMIN, status=204)  # fmt: skip
async def delete_sender_profile(req: ApiRequest) -> None:
    try:
        await senders.delete_profile(req.services.pool, req.actor, req.path_int("profileId"))
    except _ERRORS as exc:
        raise problem_for(exc) from None


# -- domains ------------------------------------------------------------------------------------------------------


class EmailDomainOut(BaseModel):
    id: int
    domain: str
    spf_status: str
    dkim_status: str
    dmarc_status: str
    dkim_selector: str | None
    created_at: datetime
    updated_at: datetime


class TrackingDomainOut(BaseModel):
    id: int
    domain: str
    cname_status: str
    is_default: bool
    created_at: datetime
    updated_at: datetime


class EmailDomainsOut(BaseModel):
    items: list[EmailDomainOut]


class TrackingDomainsOut(BaseModel):
    items: list[TrackingDomainOut]


@api.route("POST", "/api/email-domains", summary="Record a sending domain and its SPF, DKIM and DMARC status",
           tag="email", roles=ADMIN, body=EmailDomainIn, response=EmailDomainOut, status=201)  # fmt: skip
async def create_email_domain(req: ApiRequest) -> EmailDomainOut:
    try:
        return EmailDomainOut.model_validate(await senders.save_domain(req.services.pool, req.actor, "email",
                                                                       req.body, None))  # fmt: skip
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("GET", "/api/email-domains", summary="Sending domains", tag="email", roles=READ | CONTENT,
           response=EmailDomainsOut)  # fmt: skip
async def list_email_domains(req: ApiRequest) -> EmailDomainsOut:
    return EmailDomainsOut.model_validate({"items": await senders.domains(req.services.pool, "email")})


@api.route("PATCH", "/api/email-domains/{domainId}", summary="Record a sending domain's checked SPF, DKIM, DMARC",
           tag="email", roles=ADMIN, body=EmailDomainIn, response=EmailDomainOut)  # fmt: skip
async def update_email_domain(req: ApiRequest) -> EmailDomainOut:
    try:
        return EmailDomainOut.model_validate(await senders.save_domain(req.services.pool, req.actor, "email",
                                                                       req.body, req.path_int("domainId")))  # fmt: skip
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("POST", "/api/tracking-domains", summary="Record a tracking domain (a CNAME to this daemon)",
           tag="email", roles=ADMIN, body=TrackingDomainIn, response=TrackingDomainOut, status=201)  # fmt: skip
async def create_tracking_domain(req: ApiRequest) -> TrackingDomainOut:
    try:
        return TrackingDomainOut.model_validate(await senders.save_domain(req.services.pool, req.actor, "tracking",
                                                                          req.body, None))  # fmt: skip
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("GET", "/api/tracking-domains", summary="Tracking domains", tag="email", roles=READ | CONTENT,
           response=TrackingDomainsOut)  # fmt: skip
async def list_tracking_domains(req: ApiRequest) -> TrackingDomainsOut:
    return TrackingDomainsOut.model_validate({"items": await senders.domains(req.services.pool, "tracking")})


@api.route("PATCH", "/api/tracking-domains/{domainId}", summary="Change a tracking domain (make it the default)",
           tag="email", roles=ADMIN, body=TrackingDomainIn, response=TrackingDomainOut)  # fmt: skip
async def update_tracking_domain(req: ApiRequest) -> TrackingDomainOut:
    try:
        return TrackingDomainOut.model_validate(await senders.save_domain(
            req.services.pool, req.actor, "tracking", req.body, req.path_int("domainId")))  # fmt: skip
    except _ERRORS as exc:
        raise problem_for(exc) from None


# -- warmup plans -------------------------------------------------------------------------------------------------


class WarmupPlanOut(BaseModel):
    id: int
    name: str
    status: str
    sender_profile_id: int
    started_on: Any = Field(description="day 0 (the day it was activated)")
    daily_caps: list[int]
    today_cap: int | None = Field(description="today's cap, while the plan runs")
    max_bounce_rate: Decimal
    max_complaint_rate: Decimal
    created_at: datetime
    updated_at: datetime


class WarmupPlansOut(BaseModel):
    items: list[WarmupPlanOut]


def _today(req: ApiRequest) -> Any:
    return datetime.fromtimestamp(req.services.clock(), UTC).date()


@api.route("POST", "/api/warmup-plans", summary="Create a warmup plan for a sender profile: daily caps, or an "
           "exponential ramp", tag="email", roles=MANAGE, body=WarmupPlanIn, response=WarmupPlanOut,
           status=201)  # fmt: skip
async def create_warmup_plan(req: ApiRequest) -> WarmupPlanOut:
    try:
        return WarmupPlanOut.model_validate(await senders.create_plan(req.services.pool, req.actor, req.body))
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("GET", "/api/warmup-plans", summary="Warmup plans with today's cap", tag="email", roles=READ,
           response=WarmupPlansOut)  # fmt: skip
async def list_warmup_plans(req: ApiRequest) -> WarmupPlansOut:
    return WarmupPlansOut.model_validate({"items": await senders.plans(req.services.pool, _today(req))})


@api.route("POST", "/api/warmup-plans/{planId}/actions/{action}", summary="activate (day 0 is today), pause, "
           "resume or complete a warmup plan", tag="email", roles=MANAGE, response=WarmupPlanOut)  # fmt: skip
async def warmup_plan_action(req: ApiRequest) -> WarmupPlanOut:
    try:
        row = await senders.plan_action(req.services.pool, req.actor, req.path_int("planId"),
                                        req.request.match_info["action"], _today(req))  # fmt: skip
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return WarmupPlanOut.model_validate(row)
