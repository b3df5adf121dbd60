"""Orders as staff see them: every client's orders, their terms, the campaigns working for them, their
lifecycle, and allocation on demand; client organisations."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import asyncpg
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Strict
from admin_api.order_models import OrderOut, OrderPage, OrderQuery, OrderReport, OrderTerms
from admin_api.pagination import decode_cursor, page_of
from admin_api.problems import Problem
from crm import audit
from crm.orders import reports, store
from crm.roles import Role

api = Api()
MANAGE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = MANAGE | {Role.SUPERVISOR, Role.QUALITY_ANALYST}


class StaffOrderQuery(OrderQuery):
    client_organisation_id: int | None = Field(None, gt=0, le=2**63 - 1)


class StaffOrderBody(OrderTerms):
    client_organisation_id: int = Field(gt=0, le=2**63 - 1)


class CampaignLinks(Strict):
    campaign_ids: list[Annotated[int, Field(gt=0, le=2**63 - 1)]] = Field(max_length=200)


class AllocationOut(BaseModel):
    allocated: int = Field(description="published leads given to orders by this run")
    steered: int = Field(description="campaign members whose priority or hold changed (orders steer dialling)")


class OrganisationBody(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    contact_name: str = Field("", max_length=200)
    contact_email: Annotated[str, AfterValidator(str.lower)] | None = Field(
        None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )


class OrganisationOut(BaseModel):
    id: int
    name: str
    status: str
    contact_name: str
    contact_email: str | None
    created_at: datetime


class OrganisationList(BaseModel):
    items: list[OrganisationOut]


def today(req: ApiRequest) -> date:
    return datetime.fromtimestamp(req.services.clock(), UTC).date()


async def check_filters(req: ApiRequest, terms: OrderTerms) -> None:
    """The account list and domain set an order names exist (422 otherwise)."""
    f = terms.filters
    for column, table, value in (("account_list_id", "static_lists", f.account_list_id),
                                 ("domain_set_id", "domain_sets", f.domain_set_id)):  # fmt: skip
        query = f"SELECT 1 FROM {table} WHERE id = $1 AND deleted_at IS NULL"
        if value is not None and not await req.services.pool.fetchval(query, value):
            raise Problem(422, f"filters.{column}: {value} does not exist")


async def _order(req: ApiRequest, order_id: int) -> OrderOut:
    req.services.servable_orders.clear()  # read or changed: what leads may serve is looked up afresh
    try:
        return OrderOut.of(await store.get(req.services.pool, order_id, today(req)))
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None


@api.route("GET", "/api/orders", summary="Orders of every client, newest first", tag="orders", roles=READ,
           query=StaffOrderQuery, response=OrderPage)  # fmt: skip
async def list_orders(req: ApiRequest) -> OrderPage:
    q: StaffOrderQuery = req.query
    rows = await store.page(req.services.pool, today(req), q.client_organisation_id, q.status,
                            decode_cursor(q.cursor), q.limit)  # fmt: skip
    items, cursor = page_of(rows, q.limit, lambda row: int(row["id"]))
    return OrderPage(items=[OrderOut.of(row) for row in items], next_cursor=cursor)


@api.route("POST", "/api/orders", summary="Enter an order for a client", tag="orders", roles=MANAGE,
           body=StaffOrderBody, response=OrderOut, status=201)  # fmt: skip
async def create_order(req: ApiRequest) -> OrderOut:
    body: StaffOrderBody = req.body
    if not await req.services.pool.fetchval("SELECT 1 FROM client_organisations WHERE id = $1",
                                            body.client_organisation_id):  # fmt: skip
        raise Problem(422, f"client_organisation_id: {body.client_organisation_id} does not exist")
    await check_filters(req, body)
    order_id = await store.create(req.services.pool, req.actor, body.client_organisation_id, body.columns(), None)
    return await _order(req, order_id)


@api.route("GET", "/api/orders/{orderId}", summary="An order with its progress", tag="orders", roles=READ,
           response=OrderOut)  # fmt: skip
async def get_order(req: ApiRequest) -> OrderOut:
    return await _order(req, req.path_int("orderId"))


@api.route("PUT", "/api/orders/{orderId}/terms", summary="Change an order's terms", tag="orders", roles=MANAGE,
           body=OrderTerms, response=OrderOut)  # fmt: skip
async def set_order_terms(req: ApiRequest) -> OrderOut:
    order_id = req.path_int("orderId")
    await check_filters(req, req.body)
    try:
        await store.update_terms(req.services.pool, req.actor, order_id, req.body.columns())
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None
    return await _order(req, order_id)


@api.route("PUT", "/api/orders/{orderId}/campaigns", summary="Link campaigns to an order", tag="orders",
           roles=MANAGE, body=CampaignLinks, response=OrderOut)  # fmt: skip
async def link_order_campaigns(req: ApiRequest) -> OrderOut:
    """The complete set of campaigns working for the order (a campaign may work for several orders)."""
    order_id = req.path_int("orderId")
    try:
        await store.link_campaigns(req.services.pool, req.actor, order_id, req.body.campaign_ids)
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None
    except store.OrderConflict as exc:
        raise Problem(422, str(exc)) from None
    return await _order(req, order_id)


class ActionQuery(BaseModel):
    if_updated_at: AwareDatetime | None = Field(
        None,
        description="the order's updated_at as you read it: refused (412) if it changed since, e.g. terms the "
        "client edited after you reviewed them",
    )


@api.route("POST", "/api/orders/{orderId}/actions/{action}", summary="Activate, pause, cancel or fulfil an order",
           tag="orders", roles=MANAGE, query=ActionQuery, response=OrderOut)  # fmt: skip
async def act_on_order(req: ApiRequest) -> OrderOut:
    order_id = req.path_int("orderId")
    action = req.request.match_info["action"]
    if action not in ("activate", "pause", "cancel", "fulfil"):
        raise Problem(404, f"no action {action!r}: activate, pause, cancel or fulfil")
    try:
        await store.act(req.services.pool, req.actor, order_id, action, read_at=req.query.if_updated_at)
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None
    except store.OrderChanged as exc:
        raise Problem(412, str(exc)) from None
    except store.OrderConflict as exc:
        raise Problem(409, str(exc)) from None
    return await _order(req, order_id)


@api.route("POST", "/api/orders/allocate", summary="Give published leads to orders now", tag="orders",
           roles=MANAGE, response=AllocationOut)  # fmt: skip
async def allocate_now(req: ApiRequest) -> AllocationOut:
    """The daemon does this every few seconds by itself; this runs it at once, then sets the priority and hold
    of the linked campaigns' members from what the orders still need."""
    now = datetime.fromtimestamp(req.services.clock(), UTC)
    allocated = await store.allocate_published(req.services.pool, now)
    steered = await store.steer_campaigns(req.services.pool, now.date())
    return AllocationOut(allocated=allocated or 0, steered=steered)


@api.route("POST", "/api/client-organisations", summary="Add a client organisation", tag="orders",
           roles={Role.ADMIN}, body=OrganisationBody, response=OrganisationOut, status=201)  # fmt: skip
async def create_organisation(req: ApiRequest) -> OrganisationOut:
    body: OrganisationBody = req.body
    async with req.services.pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                """INSERT INTO client_organisations (name, contact_name, contact_email) VALUES ($1, $2, $3)
                   RETURNING id, name, status::text AS status, contact_name, contact_email, created_at""",
                body.name, body.contact_name, body.contact_email,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise Problem(409, f"a client organisation named {body.name!r} exists") from None
        await audit.record(conn, req.actor, "client_organisation.create", "client_organisation", row["id"],
                           {"name": body.name})  # fmt: skip
    return OrganisationOut.model_validate(dict(row))


@api.route("GET", "/api/client-organisations", summary="Client organisations", tag="orders", roles=READ,
           response=OrganisationList)  # fmt: skip
async def list_organisations(req: ApiRequest) -> OrganisationList:
    rows = await req.services.pool.fetch(
        """SELECT id, name, status::text AS status, contact_name, contact_email, created_at
             FROM client_organisations WHERE deleted_at IS NULL ORDER BY name"""
    )
    return OrganisationList.model_validate({"items": [dict(r) for r in rows]})


@api.route("GET", "/api/orders/{orderId}/report", summary="An order's delivery against goal and pace", tag="orders",
           roles=READ, response=OrderReport)  # fmt: skip
async def order_report(req: ApiRequest) -> OrderReport:
    order_id = req.path_int("orderId")
    try:
        order = await store.get(req.services.pool, order_id, today(req))
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None
    return OrderReport.model_validate(await reports.order_report(req.services.pool, order, today(req)))
