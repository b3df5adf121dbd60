"""Contacts: read one; bulk field update and soft delete over ids or a filter (every match, one transaction)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Selection
from admin_api.problems import Problem
from crm.audience import bulk
from crm.audience.bulk import BulkError
from crm.audience.filters import FilterError
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = WRITE | {Role.SUPERVISOR}


class BulkUpdateBody(Selection):
    field: str = Field(description="first_name, last_name, job_title, country, timezone or custom.<name>")
    value: str | None = Field(description="null clears the field")


class BulkUpdateOut(BaseModel):
    matched: int
    changed: int = Field(description="contacts whose value differed and was written")


class BulkDeleteOut(BaseModel):
    deleted: int


class ContactDetail(BaseModel):
    id: int
    account_id: int | None
    first_name: str
    last_name: str
    job_title: str
    email: str | None
    email_original: str | None
    email_invalid_reason: str | None
    phone_e164: str | None
    phone_extension: str | None
    phone_original: str | None
    phone_country: str | None
    phone_line_type: str
    phone_invalid_reason: str | None
    country: str | None
    timezone: str | None
    custom_fields: dict[str, Any]
    source_id: int | None
    last_source_id: int | None
    field_sources: dict[str, Any]


@api.route("GET", "/api/contacts/{contactId}", summary="A contact with its provenance", tag="contacts",
           roles=READ, response=ContactDetail)  # fmt: skip
async def get_contact(req: ApiRequest) -> ContactDetail:
    contact_id = req.path_int("contactId")
    row = await req.services.pool.fetchrow(
        f"SELECT {', '.join(ContactDetail.model_fields)} FROM contacts WHERE id = $1 AND deleted_at IS NULL",
        contact_id,
    )
    if row is None:
        raise Problem(404, f"contact {contact_id} does not exist")
    return ContactDetail.model_validate(dict(row))


@api.route("POST", "/api/contacts/bulk-update", summary="Set one field on many contacts", tag="contacts",
           roles=WRITE, body=BulkUpdateBody, response=BulkUpdateOut)  # fmt: skip
async def bulk_update_contacts(req: ApiRequest) -> BulkUpdateOut:
    body = req.body
    try:
        matched, changed = await bulk.update_field(
            req.services.pool, req.actor, field=body.field, value=body.value,
            contact_ids=body.contact_ids, definition=body.filter,
        )  # fmt: skip
    except (BulkError, FilterError) as exc:
        raise Problem(422, str(exc)) from None
    return BulkUpdateOut(matched=matched, changed=changed)


@api.route("POST", "/api/contacts/bulk-delete", summary="Soft-delete many contacts", tag="contacts",
           roles=WRITE, body=Selection, response=BulkDeleteOut)  # fmt: skip
async def bulk_delete_contacts(req: ApiRequest) -> BulkDeleteOut:
    """Deleted contacts leave lists, segments, exports and search; their history stays."""
    try:
        deleted = await bulk.soft_delete(
            req.services.pool, req.actor, contact_ids=req.body.contact_ids, definition=req.body.filter
        )
    except FilterError as exc:
        raise Problem(422, str(exc)) from None
    return BulkDeleteOut(deleted=deleted)
