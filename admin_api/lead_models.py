"""Request and response bodies of leads and their QA (admin_api/lead_routes.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from admin_api.models import Strict
from admin_api.pagination import Page, PageQuery

LeadStatus = Literal["new", "under_review", "approved", "rejected", "published", "returned"]


class LeadBody(Strict):
    campaign_id: int = Field(gt=0, le=2**63 - 1)
    contact_id: int = Field(gt=0, le=2**63 - 1)
    agent_user_id: int | None = Field(None, gt=0, le=2**63 - 1, description="the agent the lead is credited to")
    form_answers: dict[str, Any] = Field(default_factory=dict, description="qualification answers")
    recording_url: str | None = Field(None, max_length=2000, pattern=r"^https?://\S+$")
    notes: str = Field("", max_length=4000)


class LeadQuery(PageQuery):
    status: LeadStatus | None = None
    campaign_id: int | None = Field(None, gt=0, le=2**63 - 1)
    agent_id: int | None = Field(None, gt=0, le=2**63 - 1)


class LeadSummary(BaseModel):
    id: int
    status: str
    campaign_id: int
    contact_id: int
    contact_name: str
    account_id: int | None
    account_name: str | None
    agent_user_id: int | None
    claimed_by: int | None
    created_at: datetime
    status_changed_at: datetime


class LeadPage(Page[LeadSummary]):
    pass


class ChecklistItem(Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    label: str = Field(min_length=1, max_length=300, pattern=r"\S")


class QaEvent(BaseModel):
    id: int
    at: datetime
    analyst_id: int | None
    analyst_name: str | None
    from_status: str | None
    to_status: str
    reason: str | None
    detail: dict[str, Any]


class ServableOrder(BaseModel):
    order_id: int
    name: str
    client_organisation_id: int


class LeadOut(BaseModel):
    id: int
    status: str
    campaign_id: int
    campaign_name: str
    contact_id: int
    first_name: str | None
    last_name: str | None
    job_title: str | None
    email: str | None
    phone_e164: str | None
    country: str | None
    account_id: int | None
    account_name: str | None
    account_domain: str | None
    industry: str | None
    employee_count: int | None
    account_country: str | None
    agent_user_id: int | None
    agent_name: str | None
    call_attempt_id: int | None
    recording_url: str | None
    form_answers: dict[str, Any]
    notes: str
    client_organisation_id: int | None
    claimed_by: int | None
    claimed_until: datetime | None
    status_reason: str | None
    rejection_reason: str | None
    replacement_owed: bool
    published_at: datetime | None
    created_at: datetime
    status_changed_at: datetime
    created_by: int | None
    campaign_order_id: int | None = Field(description="the order the lead was given to (allocation)")
    allocated_at: datetime | None
    may_serve: list[ServableOrder] = Field(description="active orders of the campaign whose filters the lead fits")
    checklist: list[ChecklistItem] = Field(description="what approval needs confirmed (the campaign's checklist)")
    history: list[QaEvent] = Field(description="every status change: who, when, from, to, reason, notes")


class NextQuery(BaseModel):
    campaign_id: int | None = Field(None, gt=0, le=2**63 - 1, description="only this campaign's leads")


class NotesBody(Strict):
    notes: str = Field("", max_length=4000)


class ApproveBody(Strict):
    checklist: dict[str, bool] = Field(default_factory=dict, description="every checklist item's key: true")
    notes: str = Field("", max_length=4000)


class RejectBody(Strict):
    reason_code: str = Field(max_length=40, description="from GET /api/qa/rejection-reasons")
    notes: str = Field("", max_length=4000)


class ChecklistBody(Strict):
    items: list[ChecklistItem] = Field(max_length=50)


class ChecklistOut(BaseModel):
    items: list[ChecklistItem]


class ReasonBody(Strict):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,39}$")
    label: str = Field(min_length=1, max_length=300, pattern=r"\S")


class ReasonPatch(Strict):
    label: str | None = Field(None, min_length=1, max_length=300, pattern=r"\S")
    active: bool | None = None


class ReasonOut(BaseModel):
    code: str
    label: str
    active: bool


class ReasonList(BaseModel):
    items: list[ReasonOut]


class ReasonQuery(BaseModel):
    include_inactive: bool = False


class ReportQuery(BaseModel):
    campaign_id: int | None = Field(None, gt=0, le=2**63 - 1)
    since: datetime | None = Field(None, description="leads created at or after (ISO 8601 with a zone)")
    until: datetime | None = Field(None, description="leads created before")


class QaCounts(BaseModel):
    leads: int
    waiting: int = Field(description="new or under review")
    passed: int = Field(description="approved by QA, whatever followed (published, returned)")
    rejected: int
    published: int
    returned: int
    approval_rate: float | None = Field(description="passed / (passed + rejected); null before any decision")


class CampaignQa(QaCounts):
    campaign_id: int
    campaign_name: str


class AgentQa(QaCounts):
    agent_user_id: int | None = Field(description="null: leads entered without an agent")
    agent_name: str | None
    agent_email: str | None


class ReasonCount(BaseModel):
    code: str
    label: str
    leads: int


class QaReport(BaseModel):
    campaigns: list[CampaignQa]
    agents: list[AgentQa]
    rejection_reasons: list[ReasonCount]
