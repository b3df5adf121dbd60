"""Static lists: create, read, delete, add and remove members by ids or by filter, page through members."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import ReadModel, Selection, Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from admin_api.segment_routes import ContactOut
from crm.audience import lists
from crm.audience.filters import FilterError
from crm.audience.lists import ListNameTaken, ListNotFound
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = WRITE | {Role.SUPERVISOR}


class ListBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class ListOut(ReadModel):
    id: int
    name: str
    description: str
    member_count: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime


class ListPage(Page[ListOut]):
    pass


class MemberPage(Page[ContactOut]):
    pass


class ChangedOut(BaseModel):
    changed: int = Field(description="members added or removed (already-present or absent ones not counted)")
    member_count: int


async def _list_id(req: ApiRequest) -> int:
    list_id = req.path_int("listId")
    try:
        await lists.get(req.services.pool, list_id)
    except ListNotFound as exc:
        raise Problem(404, str(exc)) from None
    return list_id


@api.route("POST", "/api/lists", summary="Create a static list", tag="lists", roles=WRITE, body=ListBody,
           response=ListOut, status=201)  # fmt: skip
async def create_list(req: ApiRequest) -> ListOut:
    try:
        return ListOut.of(await lists.create(req.services.pool, req.actor, req.body.name, req.body.description))
    except ListNameTaken as exc:
        raise Problem(409, str(exc)) from None


@api.route("GET", "/api/lists", summary="Static lists with member counts", tag="lists", roles=READ,
           query=PageQuery, response=ListPage)  # fmt: skip
async def list_lists(req: ApiRequest) -> ListPage:
    rows = await lists.page(req.services.pool, limit=req.query.limit + 1, after_id=decode_cursor(req.query.cursor))
    items, next_cursor = page_of(rows, req.query.limit, key=lambda item: item.id)
    return ListPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/lists/{listId}", summary="A static list", tag="lists", roles=READ, response=ListOut)
async def get_list(req: ApiRequest) -> ListOut:
    return ListOut.of(await lists.get(req.services.pool, await _list_id(req)))


@api.route("DELETE", "/api/lists/{listId}", summary="Delete a static list (soft)", tag="lists", roles=WRITE)
async def delete_list(req: ApiRequest) -> None:
    await lists.delete(req.services.pool, req.actor, await _list_id(req))


@api.route("GET", "/api/lists/{listId}/members", summary="Members of a list", tag="lists", roles=READ,
           query=PageQuery, response=MemberPage)  # fmt: skip
async def list_members(req: ApiRequest) -> MemberPage:
    list_id = await _list_id(req)
    rows = await lists.members_page(
        req.services.pool, list_id, limit=req.query.limit + 1, after_id=decode_cursor(req.query.cursor)
    )
    items, next_cursor = page_of(rows, req.query.limit, key=lambda row: row.id)
    return MemberPage.model_validate({"items": items, "next_cursor": next_cursor})


async def _change(req: ApiRequest, add: bool) -> ChangedOut:
    list_id = await _list_id(req)
    body = req.body
    change = lists.add_members if add else lists.remove_members
    try:
        changed = await change(
            req.services.pool, req.actor, list_id, contact_ids=body.contact_ids, definition=body.filter
        )
    except FilterError as exc:
        raise Problem(422, str(exc)) from None
    return ChangedOut(changed=changed, member_count=(await lists.get(req.services.pool, list_id)).member_count)


@api.route("POST", "/api/lists/{listId}/members", summary="Add contacts by ids or by filter", tag="lists",
           roles=WRITE, body=Selection, response=ChangedOut)  # fmt: skip
async def add_list_members(req: ApiRequest) -> ChangedOut:
    """With a filter, every matching contact is added in one transaction, however many pages they span."""
    return await _change(req, add=True)


@api.route("POST", "/api/lists/{listId}/members/remove", summary="Remove contacts by ids or by filter",
           tag="lists", roles=WRITE, body=Selection, response=ChangedOut)  # fmt: skip
async def remove_list_members(req: ApiRequest) -> ChangedOut:
    return await _change(req, add=False)
