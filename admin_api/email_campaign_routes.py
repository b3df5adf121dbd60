"""E-mail campaigns: CRUD, audience, variants, the pre-flight checklist, lifecycle, the A/B winner. What they send
as is in ``email_sender_routes.py``; test sends and reports in ``pivotal/email_routes.py`` (they need the running
engine)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.campaign_routes import AudienceBody, ChecklistItemOut
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience.filters import FilterError
from crm.campaigns import store as phone_store
from crm.campaigns.lifecycle import CampaignAction, LifecycleError
from crm.campaigns.settings import AudienceRule
from crm.campaigns.store import BadReference, CampaignConflict, NotReady
from crm.compliance.campaign_rules import CampaignNotFound
from crm.roles import Role
from dispatch import campaigns, senders
from dispatch.campaigns import EmailCampaignFields, VariantRejected, VariantsBody
from dispatch.preflight import checklist

api = Api()
MANAGE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = MANAGE | {Role.SUPERVISOR, Role.QUALITY_ANALYST}
CONTENT = MANAGE | {Role.CONTENT_CREATOR}
ADMIN = {Role.ADMIN}


class VariantOut(BaseModel):
    key: str
    subject: str
    preheader: str
    html_body: str
    text_body: str
    split_share: Decimal
    is_winner: bool
    updated_at: datetime


class EmailCampaignOut(BaseModel):
    id: int
    name: str
    description: str
    status: str
    client_organisation_id: int | None
    sender_profile_id: int | None
    tracking_domain_id: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    ab_winner_criterion: str | None
    ab_test_share: Decimal | None
    ab_decide_after_minutes: int | None
    missing_fields: str
    domain_limits: dict[str, float]
    max_consecutive_errors: int
    ambiguous_policy: str
    max_bounce_rate: float
    max_complaint_rate: float
    test_sent_at: datetime | None
    audience: list[AudienceRule]
    variants: list[VariantOut]
    member_count: int = Field(description="contacts in the campaign's frozen audience")
    created_at: datetime
    updated_at: datetime


class EmailCampaignPage(Page[EmailCampaignOut]):
    pass


class EmailCampaignQuery(PageQuery):
    status: Literal["draft", "scheduled", "running", "paused", "completed", "archived"] | None = None


class PreflightOut(BaseModel):
    ready: bool = Field(description="every blocking item passes: sending may start")
    audience_size: int = Field(description="contacts the audience selects now that have an address")
    items: list[ChecklistItemOut]


_ERRORS = (CampaignNotFound, NotReady, CampaignConflict, LifecycleError, BadReference, VariantRejected, FilterError,
           senders.NotFound, senders.Conflict, senders.Invalid)  # fmt: skip


def problem_for(exc: Exception) -> Problem:
    if isinstance(exc, CampaignNotFound | senders.NotFound):
        return Problem(404, str(exc))
    if isinstance(exc, NotReady):
        return Problem(409, f"not ready to send: {exc}",
                       checklist=[{"key": i.key, "message": i.message} for i in exc.failures])  # fmt: skip
    if isinstance(exc, CampaignConflict | LifecycleError | senders.Conflict):
        return Problem(409, str(exc))
    if isinstance(exc, VariantRejected):
        p = exc.problem
        return Problem(422, str(exc), variant=exc.key, part=p.part, line=p.line, field=p.field)
    return Problem(422, str(exc))


def _current(req: ApiRequest) -> bool:
    return req.services.suppressions.healthy


@api.route("POST", "/api/email-campaigns", summary="Create an e-mail campaign (a draft)", tag="email",
           roles=MANAGE, body=EmailCampaignFields, response=EmailCampaignOut, status=201)  # fmt: skip
async def create_email_campaign(req: ApiRequest) -> EmailCampaignOut:
    try:
        return EmailCampaignOut.model_validate(await campaigns.create(req.services.pool, req.actor, req.body))
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("GET", "/api/email-campaigns", summary="E-mail campaigns", tag="email", roles=READ | CONTENT,
           query=EmailCampaignQuery, response=EmailCampaignPage)  # fmt: skip
async def list_email_campaigns(req: ApiRequest) -> EmailCampaignPage:
    query: EmailCampaignQuery = req.query
    rows = await campaigns.page(req.services.pool, limit=query.limit + 1, after_id=decode_cursor(query.cursor),
                                status=query.status)  # fmt: skip
    items, next_cursor = page_of([EmailCampaignOut.model_validate(r) for r in rows], query.limit, key=lambda c: c.id)
    return EmailCampaignPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/email-campaigns/{campaignId}", summary="An e-mail campaign with its variants", tag="email",
           roles=READ | CONTENT, response=EmailCampaignOut)  # fmt: skip
async def get_email_campaign(req: ApiRequest) -> EmailCampaignOut:
    try:
        return EmailCampaignOut.model_validate(await campaigns.get(req.services.pool, req.path_int("campaignId")))
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("PATCH", "/api/email-campaigns/{campaignId}", summary="Change an e-mail campaign's settings (draft, "
           "scheduled, paused)", tag="email", roles=MANAGE, body=EmailCampaignFields,
           response=EmailCampaignOut)  # fmt: skip
async def update_email_campaign(req: ApiRequest) -> EmailCampaignOut:
    try:
        row = await campaigns.update(req.services.pool, req.actor, req.path_int("campaignId"), req.body, _current(req))
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return EmailCampaignOut.model_validate(row)


@api.route("DELETE", "/api/email-campaigns/{campaignId}", summary="Delete a draft e-mail campaign", tag="email",
           roles=MANAGE, status=204)  # fmt: skip
async def delete_email_campaign(req: ApiRequest) -> None:
    try:
        await campaigns.delete(req.services.pool, req.actor, req.path_int("campaignId"))
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("PUT", "/api/email-campaigns/{campaignId}/audience", summary="Set the lists, segments and domain sets "
           "the audience includes and excludes", tag="email", roles=MANAGE, body=AudienceBody,
           response=EmailCampaignOut)  # fmt: skip
async def set_email_audience(req: ApiRequest) -> EmailCampaignOut:
    campaign_id = req.path_int("campaignId")
    try:
        await phone_store.set_audience(req.services.pool, req.actor, campaign_id, req.body.rules, "email")
        return EmailCampaignOut.model_validate(await campaigns.get(req.services.pool, campaign_id))
    except _ERRORS as exc:
        raise problem_for(exc) from None


@api.route("PUT", "/api/email-campaigns/{campaignId}/variants", summary="Replace the variants (subject, preheader, "
           "HTML, text, split share); each must compile", tag="email", roles=CONTENT, body=VariantsBody,
           response=EmailCampaignOut)  # fmt: skip
async def set_email_variants(req: ApiRequest) -> EmailCampaignOut:
    try:
        row = await campaigns.set_variants(req.services.pool, req.actor, req.path_int("campaignId"), req.body)
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return EmailCampaignOut.model_validate(row)


@api.route("POST", "/api/email-campaigns/{campaignId}/variants/{key}/winner", summary="Choose the A/B winner by "
           "hand; the rest of the audience gets it", tag="email", roles=MANAGE, response=EmailCampaignOut)  # fmt: skip
async def choose_email_winner(req: ApiRequest) -> EmailCampaignOut:
    key = req.request.match_info["key"]
    if len(key) != 1 or not "A" <= key <= "Z":
        raise Problem(404, "a variant key is one letter, A to Z")
    try:
        row = await campaigns.choose_winner(req.services.pool, req.actor, req.path_int("campaignId"), key)
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return EmailCampaignOut.model_validate(row)


@api.route("GET", "/api/email-campaigns/{campaignId}/checklist", summary="The pre-flight checklist: what must be "
           "fixed before sending", tag="email", roles=READ | CONTENT, response=PreflightOut)  # fmt: skip
async def email_checklist(req: ApiRequest) -> PreflightOut:
    try:
        async with req.services.pool.acquire() as conn:
            readiness = await campaigns.readiness(conn, req.path_int("campaignId"), _current(req))
    except _ERRORS as exc:
        raise problem_for(exc) from None
    items = checklist(readiness)
    return PreflightOut(
        ready=not any(i.blocking and not i.ok for i in items), audience_size=readiness.audience_size,
        items=[ChecklistItemOut(key=i.key, ok=i.ok, blocking=i.blocking, message=i.message) for i in items],
    )  # fmt: skip


@api.route("POST", "/api/email-campaigns/{campaignId}/actions/{action}", summary="schedule, unschedule, start, "
           "pause, resume, complete or archive an e-mail campaign", tag="email", roles=MANAGE,
           response=EmailCampaignOut)  # fmt: skip
async def email_campaign_action(req: ApiRequest) -> EmailCampaignOut:
    raw = req.request.match_info["action"]
    try:
        action = CampaignAction(raw)
    except ValueError:
        raise Problem(404, f"no action {raw!r}; use {', '.join(a.value for a in CampaignAction)}") from None
    try:
        row = await campaigns.act(req.services.pool, req.actor, req.path_int("campaignId"), action, _current(req))
    except _ERRORS as exc:
        raise problem_for(exc) from None
    return EmailCampaignOut.model_validate(row)
