"""Segments: preview a filter, save it, snapshot it into a static list. Writes: admin, campaign_manager."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import ReadModel, Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience import segments
from crm.audience.filters import FilterError
from crm.audience.lists import ensure_list
from crm.audience.segments import SegmentNameTaken, SegmentNotFound
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = WRITE | {Role.SUPERVISOR}

FILTER_DOC = (
    'A condition {"field", "op", "value"} or a group {"all": [...]} / {"any": [...]}; '
    "see the README for fields and operators."
)


class ContactOut(ReadModel):
    id: int
    first_name: str
    last_name: str
    job_title: str
    email: str | None
    phone_e164: str | None
    account_id: int | None
    account_name: str | None
    account_domain: str | None


class PreviewBody(Strict):
    filter: dict[str, Any] = Field(description=FILTER_DOC)
    limit: int = Field(25, ge=1, le=200)


class PreviewOut(BaseModel):
    count: int
    items: list[ContactOut]


class SegmentBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    filter: dict[str, Any] = Field(description=FILTER_DOC)


class SegmentOut(ReadModel):
    id: int
    name: str
    description: str
    filter_definition: dict[str, Any]
    last_count: int | None
    last_evaluated_at: datetime | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class SegmentPage(Page[SegmentOut]):
    pass


class SnapshotBody(Strict):
    list: str = Field(min_length=1, max_length=200, description="static list to add to (created if missing)")


class SnapshotOut(BaseModel):
    list_id: int
    added: int = Field(description="contacts added (those already on the list are not counted)")


def _filter_problem(exc: FilterError) -> Problem:
    return Problem(422, str(exc), errors=[{"loc": ["body", *exc.path.split(".")], "msg": exc.message}])


async def _segment_id(req: ApiRequest) -> int:
    segment_id = req.path_int("segmentId")
    try:
        await segments.get(req.services.pool, segment_id)
    except SegmentNotFound as exc:
        raise Problem(404, str(exc)) from None
    return segment_id


@api.route("POST", "/api/segments/preview", summary="Count and list the contacts a filter matches",
           tag="segments", roles=READ, body=PreviewBody, response=PreviewOut)  # fmt: skip
async def preview_segment(req: ApiRequest) -> PreviewOut:
    try:
        count, rows = await segments.preview(req.services.pool, req.body.filter, limit=req.body.limit)
    except FilterError as exc:
        raise _filter_problem(exc) from None
    return PreviewOut.model_validate({"count": count, "items": rows}, from_attributes=True)


@api.route("POST", "/api/segments", summary="Save a segment", tag="segments", roles=WRITE, body=SegmentBody,
           response=SegmentOut, status=201)  # fmt: skip
async def create_segment(req: ApiRequest) -> SegmentOut:
    body = req.body
    try:
        segment = await segments.create(
            req.services.pool, req.actor, name=body.name, description=body.description, definition=body.filter
        )
    except FilterError as exc:
        raise _filter_problem(exc) from None
    except SegmentNameTaken as exc:
        raise Problem(409, str(exc)) from None
    return SegmentOut.of(segment)


@api.route("GET", "/api/segments", summary="Segments", tag="segments", roles=READ, query=PageQuery,
           response=SegmentPage)  # fmt: skip
async def list_segments(req: ApiRequest) -> SegmentPage:
    query = req.query
    rows = await segments.page(req.services.pool, limit=query.limit + 1, after_id=decode_cursor(query.cursor))
    items, next_cursor = page_of(rows, query.limit, key=lambda segment: segment.id)
    return SegmentPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/segments/{segmentId}", summary="A segment", tag="segments", roles=READ,
           response=SegmentOut)  # fmt: skip
async def get_segment(req: ApiRequest) -> SegmentOut:
    return SegmentOut.of(await segments.get(req.services.pool, await _segment_id(req)))


@api.route("DELETE", "/api/segments/{segmentId}", summary="Delete a segment (soft)", tag="segments", roles=WRITE)
async def delete_segment(req: ApiRequest) -> None:
    await segments.delete(req.services.pool, req.actor, await _segment_id(req))


@api.route("POST", "/api/segments/{segmentId}/snapshot", summary="Copy a segment's contacts into a static list",
           tag="segments", roles=WRITE, body=SnapshotBody, response=SnapshotOut)  # fmt: skip
async def snapshot_segment(req: ApiRequest) -> SnapshotOut:
    segment_id = await _segment_id(req)
    list_id = await ensure_list(req.services.pool, req.actor, req.body.list)
    added = await segments.snapshot(req.services.pool, req.actor, segment_id, list_id)
    return SnapshotOut(list_id=list_id, added=added)
