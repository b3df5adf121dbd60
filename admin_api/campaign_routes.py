"""Telemarketing campaigns: CRUD, audience rules, the pre-start checklist, lifecycle actions; and the content
they use: call scripts, qualification forms, disposition catalogues."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience.filters import FilterError
from crm.campaigns import content, store
from crm.campaigns.content import (
    CatalogueBody,
    ContentConflict,
    ContentInvalid,
    ContentNotFound,
    FormBody,
    ScriptBody,
)
from crm.campaigns.forms import FormField
from crm.campaigns.lifecycle import CampaignAction, LifecycleError, checklist
from crm.campaigns.settings import AudienceRule, CampaignFields
from crm.compliance.campaign_rules import CampaignNotFound
from crm.roles import Role

api = Api()
MANAGE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = MANAGE | {Role.SUPERVISOR, Role.QUALITY_ANALYST}
CONTENT = MANAGE | {Role.CONTENT_CREATOR}


class CampaignOut(BaseModel):
    id: int
    name: str
    description: str
    channel: str
    status: str
    dial_mode: str
    max_abandon_rate: Decimal
    lines_per_agent: Decimal
    ring_timeout_secs: int
    amd_mode: str
    amd_machine_action: str
    machine_message: str | None
    abandon_message: str
    caller_id_e164: str | None
    local_presence: bool
    telephony_connection_id: int | None
    script_id: int | None
    qualification_form_id: int | None
    disposition_catalogue_id: int | None
    client_organisation_id: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    account_cap_mode: str | None
    account_cap: int | None
    wrap_up_seconds: int
    record_calls: bool
    amd_false_positive_rate: float
    hopper_size: int
    audience: list[AudienceRule]
    member_count: int = Field(description="contacts in the campaign's frozen audience")
    created_at: datetime
    updated_at: datetime


class CampaignPage(Page[CampaignOut]):
    pass


class CampaignQuery(PageQuery):
    status: Literal["draft", "scheduled", "running", "paused", "completed", "archived"] | None = None


class AudienceBody(BaseModel):
    rules: list[AudienceRule] = Field(max_length=50)


class ChecklistItemOut(BaseModel):
    key: str
    ok: bool
    blocking: bool
    message: str


class ChecklistOut(BaseModel):
    ready: bool = Field(description="every blocking item passes: the campaign may start")
    audience_size: int
    items: list[ChecklistItemOut]


class RefreshOut(BaseModel):
    added: int
    member_count: int


def _campaign_problem(exc: Exception) -> Problem:
    if isinstance(exc, CampaignNotFound | ContentNotFound):
        return Problem(404, str(exc))
    if isinstance(exc, store.NotReady):
        return Problem(409, f"not ready to start: {exc}",
                       checklist=[{"key": i.key, "message": i.message} for i in exc.failures])  # fmt: skip
    if isinstance(exc, store.CampaignConflict | LifecycleError | ContentConflict):
        return Problem(409, str(exc))
    return Problem(422, str(exc))


_ERRORS = (CampaignNotFound, ContentNotFound, store.NotReady, store.CampaignConflict, LifecycleError,
           ContentConflict, store.BadReference, ContentInvalid, FilterError)  # fmt: skip


@api.route("POST", "/api/campaigns", summary="Create a telemarketing campaign (a draft)", tag="campaigns",
           roles=MANAGE, body=CampaignFields, response=CampaignOut, status=201)  # fmt: skip
async def create_campaign(req: ApiRequest) -> CampaignOut:
    try:
        return CampaignOut.model_validate(await store.create(req.services.pool, req.actor, req.body))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("GET", "/api/campaigns", summary="Telemarketing campaigns", tag="campaigns", roles=READ,
           query=CampaignQuery, response=CampaignPage)  # fmt: skip
async def list_campaigns(req: ApiRequest) -> CampaignPage:
    query: CampaignQuery = req.query
    rows = await store.page(req.services.pool, limit=query.limit + 1, after_id=decode_cursor(query.cursor),
                            status=query.status)  # fmt: skip
    items, next_cursor = page_of([CampaignOut.model_validate(r) for r in rows], query.limit, key=lambda c: c.id)
    return CampaignPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/campaigns/{campaignId}", summary="A campaign", tag="campaigns", roles=READ,
           response=CampaignOut)  # fmt: skip
async def get_campaign(req: ApiRequest) -> CampaignOut:
    try:
        return CampaignOut.model_validate(await store.get(req.services.pool, req.path_int("campaignId")))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("PATCH", "/api/campaigns/{campaignId}", summary="Change a campaign's settings (draft, scheduled, paused)",
           tag="campaigns", roles=MANAGE, body=CampaignFields, response=CampaignOut)  # fmt: skip
async def update_campaign(req: ApiRequest) -> CampaignOut:
    try:
        row = await store.update(req.services.pool, req.actor, req.path_int("campaignId"), req.body)
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None
    return CampaignOut.model_validate(row)


@api.route("DELETE", "/api/campaigns/{campaignId}", summary="Delete a draft campaign", tag="campaigns",
           roles=MANAGE, status=204)  # fmt: skip
async def delete_campaign(req: ApiRequest) -> None:
    try:
        await store.delete(req.services.pool, req.actor, req.path_int("campaignId"))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("PUT", "/api/campaigns/{campaignId}/audience", summary="Set the lists, segments and domain sets the "
           "audience includes and excludes", tag="campaigns", roles=MANAGE, body=AudienceBody,
           response=CampaignOut)  # fmt: skip
async def set_campaign_audience(req: ApiRequest) -> CampaignOut:
    campaign_id = req.path_int("campaignId")
    try:
        await store.set_audience(req.services.pool, req.actor, campaign_id, req.body.rules)
        return CampaignOut.model_validate(await store.get(req.services.pool, campaign_id))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("POST", "/api/campaigns/{campaignId}/audience/refresh", summary="Add contacts that joined the audience "
           "since it was frozen", tag="campaigns", roles=MANAGE, response=RefreshOut)  # fmt: skip
async def refresh_campaign_audience(req: ApiRequest) -> RefreshOut:
    try:
        added, members = await store.refresh_audience(req.services.pool, req.actor, req.path_int("campaignId"))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None
    return RefreshOut(added=added, member_count=members)


@api.route("GET", "/api/campaigns/{campaignId}/checklist", summary="What must be fixed before the campaign can "
           "start", tag="campaigns", roles=READ, response=ChecklistOut)  # fmt: skip
async def campaign_checklist(req: ApiRequest) -> ChecklistOut:
    campaign_id = req.path_int("campaignId")
    try:
        async with req.services.pool.acquire() as conn:
            readiness = await store.readiness(conn, campaign_id)
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None
    items = checklist(readiness, datetime.fromtimestamp(req.services.clock(), UTC))
    return ChecklistOut(
        ready=not any(i.blocking and not i.ok for i in items), audience_size=readiness.audience_size,
        items=[ChecklistItemOut(key=i.key, ok=i.ok, blocking=i.blocking, message=i.message) for i in items],
    )  # fmt: skip


@api.route("POST", "/api/campaigns/{campaignId}/actions/{action}", summary="schedule, unschedule, start, pause, "
           "resume, complete or archive a campaign", tag="campaigns", roles=MANAGE, response=CampaignOut)  # fmt: skip
async def campaign_action(req: ApiRequest) -> CampaignOut:
    raw = req.request.match_info["action"]
    try:
        action = CampaignAction(raw)
    except ValueError:
        raise Problem(404, f"no action {raw!r}; use {', '.join(a.value for a in CampaignAction)}") from None
    now = datetime.fromtimestamp(req.services.clock(), UTC)
    try:
        row = await store.act(req.services.pool, req.actor, req.path_int("campaignId"), action, now)
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None
    return CampaignOut.model_validate(row)


# -- scripts and forms -------------------------------------------------------------------------------------------


class ScriptOut(BaseModel):
    id: int
    name: str
    body: str
    version: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class FormOut(BaseModel):
    id: int
    name: str
    description: str
    fields: list[FormField]
    version: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class ScriptPage(Page[ScriptOut]):
    pass


class FormPage(Page[FormOut]):
    pass


def _values(kind: str, body: Any) -> dict[str, Any]:
    if kind == "script":
        return {"name": body.name, "body": body.body}
    return {"name": body.name, "description": body.description,
            "fields": [f.model_dump(exclude_none=True) for f in body.fields]}  # fmt: skip


@api.route("POST", "/api/scripts", summary="Create a call script", tag="content", roles=CONTENT, body=ScriptBody,
           response=ScriptOut, status=201)  # fmt: skip
async def create_script(req: ApiRequest) -> ScriptOut:
    try:
        return ScriptOut.model_validate(await content.save(req.services.pool, req.actor, "script",
                                                           _values("script", req.body), None))  # fmt: skip
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("GET", "/api/scripts", summary="Call scripts", tag="content", roles=READ | CONTENT, query=PageQuery,
           response=ScriptPage)  # fmt: skip
async def list_scripts(req: ApiRequest) -> ScriptPage:
    rows = await content.page(req.services.pool, "script", limit=req.query.limit + 1,
                              after_id=decode_cursor(req.query.cursor))  # fmt: skip
    items, next_cursor = page_of([ScriptOut.model_validate(r) for r in rows], req.query.limit, key=lambda s: s.id)
    return ScriptPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/scripts/{scriptId}", summary="A call script", tag="content", roles=READ | CONTENT,
           response=ScriptOut)  # fmt: skip
async def get_script(req: ApiRequest) -> ScriptOut:
    try:
        return ScriptOut.model_validate(await content.get(req.services.pool, "script", req.path_int("scriptId")))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("PUT", "/api/scripts/{scriptId}", summary="Replace a call script (its version goes up)", tag="content",
           roles=CONTENT, body=ScriptBody, response=ScriptOut)  # fmt: skip
async def replace_script(req: ApiRequest) -> ScriptOut:
    try:
        return ScriptOut.model_validate(
            await content.save(
                req.services.pool, req.actor, "script", _values("script", req.body), req.path_int("scriptId")
            )
        )
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("DELETE", "/api/scripts/{scriptId}", summary="Delete a call script no live campaign uses", tag="content",
           roles=CONTENT, status=204)  # fmt: skip
async def delete_script(req: ApiRequest) -> None:
    try:
        await content.delete(req.services.pool, req.actor, "script", req.path_int("scriptId"))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("POST", "/api/forms", summary="Create a qualification form", tag="content", roles=CONTENT, body=FormBody,
           response=FormOut, status=201)  # fmt: skip
async def create_form(req: ApiRequest) -> FormOut:
    try:
        return FormOut.model_validate(await content.save(req.services.pool, req.actor, "form",
                                                         _values("form", req.body), None))  # fmt: skip
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("GET", "/api/forms", summary="Qualification forms", tag="content", roles=READ | CONTENT, query=PageQuery,
           response=FormPage)  # fmt: skip
async def list_forms(req: ApiRequest) -> FormPage:
    rows = await content.page(req.services.pool, "form", limit=req.query.limit + 1,
                              after_id=decode_cursor(req.query.cursor))  # fmt: skip
    items, next_cursor = page_of([FormOut.model_validate(r) for r in rows], req.query.limit, key=lambda f: f.id)
    return FormPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/forms/{formId}", summary="A qualification form", tag="content", roles=READ | CONTENT,
           response=FormOut)  # fmt: skip
async def get_form(req: ApiRequest) -> FormOut:
    try:
        return FormOut.model_validate(await content.get(req.services.pool, "form", req.path_int("formId")))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("PUT", "/api/forms/{formId}", summary="Replace a qualification form (its version goes up)",
           tag="content", roles=CONTENT, body=FormBody, response=FormOut)  # fmt: skip
async def replace_form(req: ApiRequest) -> FormOut:
    try:
        return FormOut.model_validate(
            await content.save(req.services.pool, req.actor, "form", _values("form", req.body), req.path_int("formId"))
        )
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


@api.route("DELETE", "/api/forms/{formId}", summary="Delete a qualification form no live campaign uses",
           tag="content", roles=CONTENT, status=204)  # fmt: skip
async def delete_form(req: ApiRequest) -> None:
    try:
        await content.delete(req.services.pool, req.actor, "form", req.path_int("formId"))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None


# -- dispositions --------------------------------------------------------------------------------------------------


class DispositionOut(BaseModel):
    id: int
    code: str
    label: str
    is_positive: bool
    is_dnc: bool
    is_callback: bool
    is_final: bool
    is_system: bool
    retry_after_minutes: int | None
    hotkey: str | None
    sort_order: int


class CatalogueOut(BaseModel):
    id: int
    code: str
    name: str
    description: str
    dispositions: list[DispositionOut]


class CataloguesOut(BaseModel):
    items: list[CatalogueOut]


@api.route("GET", "/api/disposition-catalogues", summary="Disposition catalogues with their outcomes",
           tag="content", roles=READ | CONTENT, response=CataloguesOut)  # fmt: skip
async def list_catalogues(req: ApiRequest) -> CataloguesOut:
    return CataloguesOut.model_validate({"items": await content.catalogues(req.services.pool)})


@api.route("POST", "/api/disposition-catalogues", summary="Create a disposition catalogue (from a copy, and/or "
           "with outcomes of its own)", tag="content", roles=MANAGE, body=CatalogueBody, response=CatalogueOut,
           status=201)  # fmt: skip
async def create_catalogue(req: ApiRequest) -> CatalogueOut:
    try:
        return CatalogueOut.model_validate(await content.create_catalogue(req.services.pool, req.actor, req.body))
    except _ERRORS as exc:
        raise _campaign_problem(exc) from None
