"""Reading the audit log: admin only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from admin_api.api import Api, ApiRequest
from admin_api.models import ReadModel
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from crm import audit
from crm.roles import Role

api = Api()


class AuditQuery(PageQuery):
    entity_type: str | None = Field(None, max_length=64, description="e.g. `user`")
    entity_id: str | None = Field(None, max_length=64)
    actor_id: int | None = Field(None, ge=1, description="Only changes made by this user.")


class AuditEntryOut(ReadModel):
    id: int
    at: datetime
    actor_id: int | None
    actor_email: str | None
    action: str
    entity_type: str
    entity_id: str | None
    detail: dict[str, Any]
    request_id: str | None
    client_ip: str | None


class AuditPage(Page[AuditEntryOut]):
    pass


@api.route(
    "GET",
    "/api/audit",
    summary="The audit log, newest first",
    tag="audit",
    roles={Role.ADMIN},
    query=AuditQuery,
    response=AuditPage,
)
async def list_audit(req: ApiRequest) -> AuditPage:
    query = req.query
    entries = await audit.list_entries(
        req.services.pool,
        limit=query.limit + 1,
        before_id=decode_cursor(query.cursor),
        entity_type=query.entity_type,
        entity_id=query.entity_id,
        actor_id=query.actor_id,
    )
    page, next_cursor = page_of(entries, query.limit, key=lambda entry: entry.id)
    return AuditPage.model_validate({"items": page, "next_cursor": next_cursor})
