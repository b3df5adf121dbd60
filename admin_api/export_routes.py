"""Streaming CSV exports of contacts (all, a list, a segment, or a filter) and accounts."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Strict
from admin_api.problems import Problem
from crm.audience import segments
from crm.audience.export import accounts_query, contacts_query, export_csv
from crm.audience.filters import FilterError
from crm.audience.segments import SegmentNotFound
from crm.roles import Role

api = Api()
READ = {Role.ADMIN, Role.CAMPAIGN_MANAGER, Role.SUPERVISOR}


class ContactExportQuery(BaseModel):
    list_id: int | None = Field(None, ge=1, description="only members of this static list")
    segment_id: int | None = Field(None, ge=1, description="only contacts the segment matches now")


class FilterExportBody(Strict):
    filter: dict[str, Any] = Field(description="a segment filter (see the README)")


async def _stream(req: ApiRequest, filename: str, query: str, params: list[Any]) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{filename}"'}
    )
    await response.prepare(req.request)
    await export_csv(req.services.pool, query, params, response.write)
    await response.write_eof()
    return response


@api.route("GET", "/api/contacts/export", summary="Export contacts as CSV", tag="exports", roles=READ,
           query=ContactExportQuery, media_type="text/csv")  # fmt: skip
async def export_contacts(req: ApiRequest) -> web.StreamResponse:
    """All live contacts, or a list's members, or a segment's matches (both: the intersection). Streamed;
    cells a spreadsheet would run as formulas are prefixed with an apostrophe."""
    definition = None
    if req.query.segment_id is not None:
        try:
            definition = (await segments.get(req.services.pool, req.query.segment_id)).filter_definition
        except SegmentNotFound as exc:
            raise Problem(404, str(exc)) from None
    query, params = contacts_query(list_id=req.query.list_id, definition=definition)
    return await _stream(req, "contacts.csv", query, params)


@api.route("POST", "/api/contacts/export", summary="Export the contacts a filter matches as CSV",
           tag="exports", roles=READ, body=FilterExportBody, media_type="text/csv")  # fmt: skip
async def export_filtered_contacts(req: ApiRequest) -> web.StreamResponse:
    try:
        query, params = contacts_query(definition=req.body.filter)
    except FilterError as exc:
        raise Problem(422, str(exc)) from None
    return await _stream(req, "contacts.csv", query, params)


@api.route("GET", "/api/accounts/export", summary="Export accounts as CSV", tag="exports", roles=READ,
           media_type="text/csv")  # fmt: skip
async def export_accounts(req: ApiRequest) -> web.StreamResponse:
    query, params = accounts_query()
    return await _stream(req, "accounts.csv", query, params)
