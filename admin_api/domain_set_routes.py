"""Domain sets (ABM target or exclusion lists): upload domains or company names, match, report, make a list."""

from __future__ import annotations

import csv
import io
from typing import Literal

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience import domain_sets
from crm.audience.csv_reader import detect_encoding
from crm.audience.domain_sets import DomainSetNameTaken, DomainSetNotFound, parse_entries
from crm.audience.lists import ensure_list
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = WRITE | {Role.SUPERVISOR}


class DomainSetBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class DomainSetOut(BaseModel):
    id: int
    name: str
    matched: int
    unmatched: int
    ambiguous: int


class InvalidEntry(BaseModel):
    entry: str
    reason: str


class EntriesOut(BaseModel):
    added: int
    duplicates: int = Field(description="entries repeated in the upload or already in the set")
    invalid: list[InvalidEntry]
    matched: int
    unmatched: int
    ambiguous: int


class ItemsQuery(PageQuery):
    status: Literal["matched", "unmatched", "ambiguous"] | None = None


class ItemOut(BaseModel):
    id: int
    entry: str
    domain: str | None
    registrable_domain: str | None
    company_name: str | None
    match_status: str
    match_method: str | None
    confidence: float | None
    account_id: int | None
    candidate_account_ids: list[int]


class ItemPage(Page[ItemOut]):
    pass


class ToListBody(Strict):
    list: str = Field(min_length=1, max_length=200)


class ToListOut(BaseModel):
    list_id: int
    added: int


async def _set_id(req: ApiRequest) -> int:
    set_id = req.path_int("setId")
    try:
        await domain_sets.exists(req.services.pool, set_id)
    except DomainSetNotFound as exc:
        raise Problem(404, str(exc)) from None
    return set_id


async def _out(req: ApiRequest, set_id: int) -> DomainSetOut:
    name = await req.services.pool.fetchval("SELECT name FROM domain_sets WHERE id = $1", set_id)
    return DomainSetOut(id=set_id, name=name, **await domain_sets.counts(req.services.pool, set_id))


@api.route("POST", "/api/domain-sets", summary="Create a domain set", tag="domain sets", roles=WRITE,
           body=DomainSetBody, response=DomainSetOut, status=201)  # fmt: skip
async def create_domain_set(req: ApiRequest) -> DomainSetOut:
    try:
        set_id = await domain_sets.create(req.services.pool, req.actor, req.body.name, req.body.description)
    except DomainSetNameTaken as exc:
        raise Problem(409, str(exc)) from None
    return await _out(req, set_id)


@api.route("GET", "/api/domain-sets/{setId}", summary="A domain set with match counts", tag="domain sets",
           roles=READ, response=DomainSetOut)  # fmt: skip
async def get_domain_set(req: ApiRequest) -> DomainSetOut:
    return await _out(req, await _set_id(req))


@api.route("POST", "/api/domain-sets/{setId}/entries", summary="Upload domains or company names",
           tag="domain sets", roles=WRITE, response=EntriesOut, upload_media_type="text/plain")  # fmt: skip
async def add_domain_set_entries(req: ApiRequest) -> EntriesOut:
    """One entry a line (plain text), or the first column of a CSV (`Content-Type: text/csv`). Entries are
    normalised, validated and de-duplicated, then the whole set is matched against the accounts."""
    set_id = await _set_id(req)
    raw = await req.request.read()  # bounded by server.max_body_bytes
    encoding = detect_encoding(raw)
    try:
        text = raw.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        raise Problem(422, f"the upload is not valid {encoding} text: {exc.reason}") from None
    if req.request.content_type == "text/csv":
        lines = [row[0] for row in csv.reader(io.StringIO(text)) if row]
    else:
        lines = text.splitlines()
    parsed = parse_entries(lines)
    added = await domain_sets.add_entries(req.services.pool, req.actor, set_id, parsed)
    result = await domain_sets.match(req.services.pool, set_id)
    return EntriesOut(
        added=added,
        duplicates=parsed.duplicates + len(parsed.entries) - added,
        invalid=[InvalidEntry(entry=entry, reason=reason) for entry, reason in parsed.invalid],
        **result,
    )


@api.route("POST", "/api/domain-sets/{setId}/match", summary="Match the set again (after account changes)",
           tag="domain sets", roles=WRITE, response=DomainSetOut)  # fmt: skip
async def rematch_domain_set(req: ApiRequest) -> DomainSetOut:
    set_id = await _set_id(req)
    await domain_sets.match(req.services.pool, set_id)
    return await _out(req, set_id)


@api.route("GET", "/api/domain-sets/{setId}/items", summary="Entries and their matches", tag="domain sets",
           roles=READ, query=ItemsQuery, response=ItemPage)  # fmt: skip
async def list_domain_set_items(req: ApiRequest) -> ItemPage:
    set_id = await _set_id(req)
    query = req.query
    rows = await domain_sets.items(
        req.services.pool, set_id, status=query.status, limit=query.limit + 1, after_id=decode_cursor(query.cursor)
    )
    items, next_cursor = page_of(rows, query.limit, key=lambda row: int(row["id"]))
    return ItemPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("POST", "/api/domain-sets/{setId}/to-list", summary="Put the matched accounts' contacts on a list",
           tag="domain sets", roles=WRITE, body=ToListBody, response=ToListOut)  # fmt: skip
async def domain_set_to_list(req: ApiRequest) -> ToListOut:
    set_id = await _set_id(req)
    list_id = await ensure_list(req.services.pool, req.actor, req.body.list)
    return ToListOut(list_id=list_id, added=await domain_sets.to_list(req.services.pool, req.actor, set_id, list_id))
