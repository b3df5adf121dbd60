"""Suppressions: add or renew, list, check, lift, import."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.import_routes import UPLOAD_TYPES, ImportOut
from admin_api.models import Id, Moment, ReadModel, Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience.domains import normalise_domain
from crm.audience.import_service import ImportRefused
from crm.compliance import suppressions
from crm.compliance.compact_sets import text_key
from crm.compliance.suppression_import import SuppressionImport
from crm.compliance.suppression_index import key_of
from crm.compliance.suppressions import SuppressionError, SuppressionNotFound
from crm.roles import Role

api = Api()
MANAGE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
ADD = MANAGE | {Role.SUPERVISOR}
READ = MANAGE | {Role.SUPERVISOR, Role.QUALITY_ANALYST}

Channel = Literal["phone", "email", "domain"]


def _field_problem(exc: SuppressionError | ValueError, field: str = "value") -> Problem:
    name = getattr(exc, "field", field)
    return Problem(422, str(exc), errors=[{"loc": ["body", name], "msg": str(exc)}])


class SuppressionIn(Strict):
    channel: Channel
    value: str = Field(min_length=1, max_length=320, description="a number in any format, an address or a domain")
    country: str | None = Field(
        None, pattern=r"^[A-Z]{2}$", description="how to read a number without a country code (default: settings)"
    )
    scope: Literal["global", "campaign"] = "global"
    campaign_id: Id | None = None
    reason: str = Field("", max_length=500)
    expires_at: Moment = Field(None, description="in force until then; never when null")
    detail: dict[str, str] = Field(default_factory=dict, description="evidence (request reference, ticket...)")


class SuppressionOut(ReadModel):
    id: int
    channel: str
    scope: str
    campaign_id: int | None
    value: str
    source: str
    reason: str
    detail: dict[str, Any]
    added_by: int | None
    added_at: datetime
    expires_at: datetime | None
    lifted_at: datetime | None
    lifted_by: int | None
    lift_reason: str | None


class SuppressionAdded(SuppressionOut):
    created: bool = Field(description="false when an entry in force was renewed")


class SuppressionPage(Page[SuppressionOut]):
    pass


class SuppressionQuery(PageQuery):
    channel: Channel | None = None
    scope: Literal["global", "campaign"] | None = None
    campaign_id: Id | None = None
    value: str | None = Field(None, max_length=320, description="values starting with this (normalised form)")
    include_lifted: bool = False


class LiftIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class CheckQuery(BaseModel):
    value: str = Field(min_length=1, max_length=320)
    channel: Channel
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="for a number without a country code")
    campaign_id: Id | None = None


class CheckOut(BaseModel):
    channel: str
    value: str = Field(description="normalised")
    suppressed: bool
    in_memory_scopes: list[str] = Field(description="what this node enforces right now")
    entries: list[SuppressionOut] = Field(description="the entries in force in PostgreSQL, the e-mail's domain too")


@api.route("POST", "/api/suppressions", summary="Add (or renew) a suppression; durable and on every node in ~1 s",
           tag="compliance", roles=ADD, body=SuppressionIn, response=SuppressionAdded, status=201)  # fmt: skip
async def add_suppression(req: ApiRequest) -> SuppressionAdded:
    body: SuppressionIn = req.body
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise Problem(422, "expires_at: must be in the future", errors=[{"loc": ["body", "expires_at"], "msg": ""}])
    try:
        region = body.country or req.services.default_phone_region
        value = suppressions.normalise_value(body.channel, body.value, region)
        async with req.services.pool.acquire() as conn:
            added, created = await suppressions.add(
                conn, req.actor, channel=body.channel, value=value, scope=body.scope, campaign_id=body.campaign_id,
                source="api", reason=body.reason, expires_at=body.expires_at, detail=dict(body.detail),
            )  # fmt: skip
    except SuppressionError as exc:
        raise _field_problem(exc) from None
    return SuppressionAdded.model_validate({**vars_of(added), "created": created})


def vars_of(item: object) -> dict[str, Any]:
    return {name: getattr(item, name) for name in SuppressionOut.model_fields}


@api.route("GET", "/api/suppressions", summary="Suppressions, newest first", tag="compliance", roles=READ,
           query=SuppressionQuery, response=SuppressionPage)  # fmt: skip
async def list_suppressions(req: ApiRequest) -> SuppressionPage:
    query: SuppressionQuery = req.query
    found = await suppressions.search(
        req.services.pool, channel=query.channel, scope=query.scope, campaign_id=query.campaign_id,
        value_prefix=query.value, include_lifted=query.include_lifted, limit=query.limit + 1,
        after_id=decode_cursor(query.cursor),
    )  # fmt: skip
    items, next_cursor = page_of(found, query.limit, key=lambda entry: entry.id)
    return SuppressionPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/suppressions/check", summary="Is a number, address or domain suppressed, and by what?",
           tag="compliance", roles=READ, query=CheckQuery, response=CheckOut)  # fmt: skip
async def check_suppression(req: ApiRequest) -> CheckOut:
    query: CheckQuery = req.query
    try:
        region = query.country or req.services.default_phone_region
        value = suppressions.normalise_value(query.channel, query.value, region)
    except SuppressionError as exc:
        raise Problem(422, str(exc), errors=[{"loc": ["query", "value"], "msg": str(exc)}]) from None
    index = req.services.suppressions.index
    now = req.services.clock()
    scopes = index.scopes(query.channel, key_of(query.channel, value), query.campaign_id, now)
    values: list[tuple[str, str]] = [(query.channel, value)]
    if query.channel == "email":  # an address is also blocked by its company's domain, as the decision does
        host = normalise_domain(value.rsplit("@", 1)[1])
        for domain in dict.fromkeys(d for d in (host.domain, host.registrable) if d):
            values.append(("domain", domain))
            for scope in index.scopes("domain", text_key(domain), query.campaign_id, now):
                if f"domain_{scope}" not in scopes:
                    scopes.append(f"domain_{scope}")
    entries = await suppressions.in_force_for(req.services.pool, values, query.campaign_id)
    return CheckOut(
        channel=query.channel,
        value=value,
        suppressed=bool(scopes or entries),
        in_memory_scopes=scopes,
        entries=[SuppressionOut.model_validate(vars_of(entry)) for entry in entries],
    )


class SuppressionImportQuery(BaseModel):
    channel: Channel
    scope: Literal["global", "campaign"] = "global"
    campaign_id: Id | None = None
    reason: str = Field("", max_length=500)
    expires_at: Moment = None
    column: str | None = Field(None, max_length=200, description="header of the value column; default: the first")
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="for numbers without a country code")
    file_name: str = Field("suppressions.csv", min_length=1, max_length=255)


@api.route("POST", "/api/suppressions/import", summary="Import a suppression list (CSV or one value a line)",
           tag="compliance", roles=MANAGE, query=SuppressionImportQuery, response=ImportOut, status=202,
           upload_media_type="text/csv")  # fmt: skip
async def import_suppression_list(req: ApiRequest) -> ImportOut:
    """Send the file as the raw body. Runs in the background: follow it with `GET /api/imports/{importId}`,
    rejected rows at `GET /api/imports/{importId}/rejects`."""
    if req.request.content_type not in UPLOAD_TYPES:
        raise Problem(415, f"send the file as the raw body with Content-Type {UPLOAD_TYPES[0]}")
    query: SuppressionImportQuery = req.query
    if (query.scope == "campaign") != (query.campaign_id is not None):
        raise Problem(422, "campaign_id: required for a campaign list, and only for one",
                      errors=[{"loc": ["query", "campaign_id"], "msg": "required with scope=campaign"}])  # fmt: skip
    if query.campaign_id is not None and not await req.services.pool.fetchval(
        "SELECT 1 FROM campaigns WHERE id = $1 AND deleted_at IS NULL", query.campaign_id
    ):
        raise Problem(422, f"campaign_id: campaign {query.campaign_id} does not exist",
                      errors=[{"loc": ["query", "campaign_id"], "msg": "no such campaign"}])  # fmt: skip
    if query.expires_at is not None and query.expires_at <= datetime.now(UTC):
        raise Problem(422, "expires_at: must be in the future",
                      errors=[{"loc": ["query", "expires_at"], "msg": "invalid"}])  # fmt: skip
    options = SuppressionImport(query.channel, query.scope, query.campaign_id, query.reason, query.expires_at,
                                query.column, query.country)  # fmt: skip
    try:
        job = await req.services.imports.import_suppressions(
            req.actor, query.file_name, req.request.content.iter_chunked(64 * 1024), options
        )
    except ImportRefused as exc:
        raise Problem(exc.status, str(exc)) from None
    return ImportOut.of(job)


@api.route("GET", "/api/suppressions/{suppressionId}", summary="A suppression", tag="compliance", roles=READ,
           response=SuppressionOut)  # fmt: skip
async def get_suppression(req: ApiRequest) -> SuppressionOut:
    try:
        found = await suppressions.get(req.services.pool, req.path_int("suppressionId"))
    except SuppressionNotFound as exc:
        raise Problem(404, str(exc)) from None
    return SuppressionOut.model_validate(vars_of(found))


@api.route("POST", "/api/suppressions/{suppressionId}/lift", summary="Lift (remove) a suppression; the row is kept",
           tag="compliance", roles=MANAGE, body=LiftIn, response=SuppressionOut)  # fmt: skip
async def lift_suppression(req: ApiRequest) -> SuppressionOut:
    try:
        lifted = await suppressions.lift(req.services.pool, req.actor, req.path_int("suppressionId"), req.body.reason)
    except SuppressionNotFound as exc:
        raise Problem(404, str(exc)) from None
    except SuppressionError as exc:
        raise Problem(409, str(exc)) from None
    return SuppressionOut.model_validate(vars_of(lifted))
