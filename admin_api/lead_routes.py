"""Leads and their QA: entering and reading leads, the QA queue (next, claim, release) and the QA moves
(approve, reject, publish, reopen), each recorded with who, when and notes; the campaign's QA checklist and
the rejection-reason catalogue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from admin_api.api import Api, ApiRequest
from admin_api.lead_models import (
    ApproveBody,
    ChecklistBody,
    ChecklistOut,
    LeadBody,
    LeadOut,
    LeadPage,
    LeadQuery,
    LeadSummary,
    NextQuery,
    NotesBody,
    QaReport,
    ReasonBody,
    ReasonList,
    ReasonOut,
    ReasonPatch,
    ReasonQuery,
    RejectBody,
    ReportQuery,
)
from admin_api.pagination import decode_cursor, page_of
from admin_api.problems import Problem
from crm.leads import reports, store
from crm.leads.qa_workflow import Action, Move, Refused
from crm.orders import store as orders
from crm.orders.allocation import LeadFacts
from crm.roles import Role
from dialer import recordings

api = Api()
QA = {Role.QUALITY_ANALYST, Role.ADMIN}
READ = QA | {Role.CAMPAIGN_MANAGER, Role.SUPERVISOR}
ENTER = {Role.ADMIN, Role.CAMPAIGN_MANAGER, Role.QUALITY_ANALYST}
CONFIGURE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}


def _now(req: ApiRequest) -> datetime:
    return datetime.fromtimestamp(req.services.clock(), UTC)


async def _lead(req: ApiRequest, lead_id: int) -> LeadOut:
    try:
        lead = await store.detail(req.services.pool, lead_id)
    except store.LeadNotFound as exc:
        raise Problem(404, str(exc)) from None
    facts = LeadFacts(lead["id"], lead["campaign_id"], lead["contact_id"], lead["account_id"], lead["job_title"] or "",
                      lead["employee_count"], lead["industry"], lead["country"] or lead["account_country"])  # fmt: skip
    lead["may_serve"] = await orders.orders_for_lead(req.services.pool, lead["campaign_id"], facts,
                                                     req.services.clock(), req.services.servable_orders)  # fmt: skip
    return LeadOut.model_validate(lead)


@api.route("POST", "/api/leads", summary="Enter a lead", tag="leads", roles=ENTER, body=LeadBody, response=LeadOut,
           status=201)  # fmt: skip
async def create_lead(req: ApiRequest) -> LeadOut:
    """A lead for a contact in a campaign (status new, waiting for QA). Leads also come from agents' positive
    dispositions. 409 when the contact already has a lead in the campaign; 422 when something named does not
    exist."""
    body: LeadBody = req.body
    try:
        lead_id = await store.create(req.services.pool, req.actor, body.campaign_id, body.contact_id,
                                     body.form_answers, body.recording_url, body.notes, body.agent_user_id)  # fmt: skip
    except store.LeadExists as exc:
        raise Problem(409, str(exc)) from None
    except store.LeadConflict as exc:
        raise Problem(422, str(exc)) from None
    return await _lead(req, lead_id)


@api.route("GET", "/api/leads", summary="Leads, newest first", tag="leads", roles=READ, query=LeadQuery,
           response=LeadPage)  # fmt: skip
async def list_leads(req: ApiRequest) -> LeadPage:
    q: LeadQuery = req.query
    rows = await store.page(req.services.pool, status=q.status, campaign_id=q.campaign_id, agent_id=q.agent_id,
                            after=decode_cursor(q.cursor), limit=q.limit)  # fmt: skip
    items, cursor = page_of(rows, q.limit, lambda row: int(row["id"]))
    return LeadPage(items=[LeadSummary.model_validate(dict(row)) for row in items], next_cursor=cursor)


@api.route("GET", "/api/leads/{leadId}", summary="A lead with its contact, answers, checklist and QA history",
           tag="leads", roles=READ, response=LeadOut)  # fmt: skip
async def get_lead(req: ApiRequest) -> LeadOut:
    return await _lead(req, req.path_int("leadId"))


@api.route("POST", "/api/qa/next", summary="Claim the next lead to review", tag="qa", roles=QA, query=NextQuery,
           response=LeadOut)  # fmt: skip
async def next_lead(req: ApiRequest) -> LeadOut | None:
    """The lead the analyst already holds, else the oldest one whose claim expired, else the oldest new one,
    now claimed by the analyst for 15 minutes (renewed by claiming it again). Two analysts never get the same
    lead. 204 when nothing waits."""
    lead_id = await store.next_for(req.services.pool, req.actor, _now(req), req.query.campaign_id)
    return None if lead_id is None else await _lead(req, lead_id)


async def _move(req: ApiRequest, action: Action, **extra: Any) -> LeadOut:
    lead_id = req.path_int("leadId")
    move = Move(action, req.user.user_id, req.user.roles, _now(req), **extra)
    try:
        await store.apply(req.services.pool, lead_id, move)
    except store.LeadNotFound as exc:
        raise Problem(404, str(exc)) from None
    except Refused as exc:
        raise Problem(exc.status, str(exc)) from None
    return await _lead(req, lead_id)


@api.route("POST", "/api/leads/{leadId}/claim", summary="Claim a lead for review (or renew the claim)", tag="qa",
           roles=QA, response=LeadOut)  # fmt: skip
async def claim_lead(req: ApiRequest) -> LeadOut:
    """409 while another analyst's claim holds."""
    return await _move(req, "claim")


@api.route("POST", "/api/leads/{leadId}/release", summary="Give a claimed lead back to the queue", tag="qa",
           roles=QA, body=NotesBody, response=LeadOut)  # fmt: skip
async def release_lead(req: ApiRequest) -> LeadOut:
    return await _move(req, "release", notes=req.body.notes)


@api.route("POST", "/api/leads/{leadId}/approve", summary="Approve a lead under review", tag="qa", roles=QA,
           body=ApproveBody, response=LeadOut)  # fmt: skip
async def approve_lead(req: ApiRequest) -> LeadOut:
    """Every item of the campaign's checklist must be confirmed (true); 422 names the missing ones."""
    return await _move(req, "approve", checklist=req.body.checklist, notes=req.body.notes)


@api.route("POST", "/api/leads/{leadId}/reject", summary="Reject a lead under review", tag="qa", roles=QA,
           body=RejectBody, response=LeadOut)  # fmt: skip
async def reject_lead(req: ApiRequest) -> LeadOut:
    """The reason comes from the catalogue; `other` needs notes."""
    return await _move(req, "reject", reason_code=req.body.reason_code, notes=req.body.notes)


@api.route("POST", "/api/leads/{leadId}/publish", summary="Publish an approved lead (ready for delivery)", tag="qa",
           roles=QA, body=NotesBody, response=LeadOut)  # fmt: skip
async def publish_lead(req: ApiRequest) -> LeadOut:
    return await _move(req, "publish", notes=req.body.notes)


@api.route("POST", "/api/leads/{leadId}/reopen", summary="Send a rejected or approved lead back to QA",
           tag="qa", roles={Role.ADMIN}, body=NotesBody, response=LeadOut)  # fmt: skip
async def reopen_lead(req: ApiRequest) -> LeadOut:
    return await _move(req, "reopen", notes=req.body.notes)


@api.route("GET", "/api/campaigns/{campaignId}/qa-checklist", summary="The campaign's QA checklist", tag="qa",
           roles=READ, response=ChecklistOut)  # fmt: skip
async def get_qa_checklist(req: ApiRequest) -> ChecklistOut:
    campaign_id = await _campaign(req)
    return ChecklistOut.model_validate({"items": await store.checklist(req.services.pool, campaign_id)})


@api.route("PUT", "/api/campaigns/{campaignId}/qa-checklist", summary="Set the campaign's QA checklist", tag="qa",
           roles=CONFIGURE, body=ChecklistBody, response=ChecklistOut)  # fmt: skip
async def set_qa_checklist(req: ApiRequest) -> ChecklistOut:
    """What an analyst must confirm before approving one of the campaign's leads, in order."""
    campaign_id = await _campaign(req)
    items = [(item.key, item.label) for item in req.body.items]
    keys = [key for key, _ in items]
    if len(set(keys)) != len(keys):
        raise Problem(422, f"checklist keys must be unique: {sorted({k for k in keys if keys.count(k) > 1})}")
    await store.set_checklist(req.services.pool, req.actor, campaign_id, items)
    return ChecklistOut.model_validate({"items": await store.checklist(req.services.pool, campaign_id)})


async def _campaign(req: ApiRequest) -> int:
    campaign_id = req.path_int("campaignId")
    if not await req.services.pool.fetchval(
        "SELECT 1 FROM campaigns WHERE id = $1 AND deleted_at IS NULL", campaign_id
    ):
        raise Problem(404, f"campaign {campaign_id} does not exist")
    return campaign_id


@api.route("GET", "/api/qa/rejection-reasons", summary="The rejection-reason catalogue", tag="qa", roles=READ,
           query=ReasonQuery, response=ReasonList)  # fmt: skip
async def list_rejection_reasons(req: ApiRequest) -> ReasonList:
    return ReasonList.model_validate({"items": await store.reasons(req.services.pool, req.query.include_inactive)})


@api.route("POST", "/api/qa/rejection-reasons", summary="Add a rejection reason", tag="qa", roles={Role.ADMIN},
           body=ReasonBody, response=ReasonOut, status=201)  # fmt: skip
async def add_rejection_reason(req: ApiRequest) -> ReasonOut:
    try:
        return ReasonOut.model_validate(await store.add_reason(req.services.pool, req.actor, req.body.code,
                                                               req.body.label))  # fmt: skip
    except store.ReasonTaken as exc:
        raise Problem(409, str(exc)) from None


@api.route("PATCH", "/api/qa/rejection-reasons/{code}", summary="Relabel, retire or restore a rejection reason",
           tag="qa", roles={Role.ADMIN}, body=ReasonPatch, response=ReasonOut)  # fmt: skip
async def update_rejection_reason(req: ApiRequest) -> ReasonOut:
    code = req.request.match_info["code"]
    try:
        row = await store.update_reason(req.services.pool, req.actor, code, req.body.label, req.body.active)
    except LookupError as exc:
        raise Problem(404, str(exc)) from None
    return ReasonOut.model_validate(row)


@api.route("GET", "/api/qa/report", summary="Approval rates per campaign and agent, rejection reasons", tag="qa",
           roles=READ, query=ReportQuery, response=QaReport)  # fmt: skip
async def qa_report(req: ApiRequest) -> QaReport:
    q: ReportQuery = req.query
    for name, value in (("since", q.since), ("until", q.until)):
        if value is not None and value.tzinfo is None:
            raise Problem(422, f"{name}: give a time zone (e.g. 2026-11-24T00:00:00Z)")
    return QaReport.model_validate(await reports.qa_report(req.services.pool, q.campaign_id, q.since, q.until))


@api.route("GET", "/api/call-attempts/{attemptId}/recording", summary="A call's recording (MP3)", tag="leads",
           roles=READ, media_type="audio/mpeg")  # fmt: skip
async def call_recording(req: ApiRequest) -> web.StreamResponse:
    """Campaigns with `record_calls` record each conversation from the bridge; a lead links its call's."""
    attempt_id = req.path_int("attemptId")
    file = await req.services.pool.fetchval("SELECT recording_file FROM call_attempts WHERE id = $1", attempt_id)
    return recording_response(req, file, f"call {attempt_id} has no recording")


def recording_response(req: ApiRequest, file: str | None, missing: str) -> web.StreamResponse:
    path = None if file is None else recordings.path_of(req.services.recordings_dir, file)
    if path is None:
        raise Problem(404, missing)
    return web.FileResponse(path, headers={"Content-Type": "audio/mpeg" if path.suffix == ".mp3" else "audio/wav",
                                           "Cache-Control": "private, no-store"})  # fmt: skip
