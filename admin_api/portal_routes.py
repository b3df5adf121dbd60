"""The client portal: a client user sees and changes only its own organisation's orders and leads.

Every route finds the caller's organisation first and filters by it in the query itself, so another
organisation's order or lead answers 404 exactly like one that does not exist (tests/test_client_portal.py
calls every route with another organisation's ids)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.lead_routes import recording_response
from admin_api.models import Strict
from admin_api.order_models import OrderOut, OrderPage, OrderQuery, OrderReport, OrderTerms
from admin_api.order_routes import today
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience.csv_writer import write_rows
from crm.leads.qa_workflow import Move, Refused
from crm.orders import deliveries, portal, reports, store
from crm.orders.push import url_problem
from crm.roles import Role

api = Api()
CLIENT = {Role.CLIENT}


class PortalLead(BaseModel):
    id: int
    order_id: int
    status: str = Field(description="published, or returned")
    first_name: str | None
    last_name: str | None
    job_title: str | None
    email: str | None
    phone_e164: str | None
    country: str | None
    account_name: str | None
    account_domain: str | None
    industry: str | None
    employee_count: int | None
    form_answers: dict[str, Any]
    recording_url: str | None
    delivered_at: datetime | None = Field(description="when it was given to the order")
    returnable_until: datetime | None
    returned_at: datetime | None
    return_reason: str | None


class PortalLeadPage(Page[PortalLead]):
    pass


class PortalLeadQuery(PageQuery):
    order_id: int | None = Field(None, gt=0, le=2**63 - 1)
    status: str | None = Field(None, pattern="^(published|returned)$")


class WebhookBody(Strict):
    url: str = Field(max_length=2000, description="https; every push is signed with the secret (see the README)")
    secret: str = Field(min_length=16, max_length=200, description="write-only; sealed at rest")


class DeliveryOut(BaseModel):
    id: int
    lead_id: int
    order_id: int
    status: str = Field(description="pending, delivered or failed (after 12 attempts)")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(Page[DeliveryOut]):
    pass


class DeliveryQuery(PageQuery):
    order_id: int | None = Field(None, gt=0, le=2**63 - 1)


class ReturnBody(Strict):
    reason: str = Field(min_length=1, max_length=2000)


def no_internal_lists(terms: OrderTerms) -> None:
    """Account lists and domain sets are the agency's own (unowned, shared): a client names accounts through its
    account manager, who attaches them (staff routes)."""
    for name in ("account_list_id", "domain_set_id"):
        if getattr(terms.filters, name) is not None:
            raise Problem(422, f"filters.{name}: ask your account manager to attach a target account list")


async def organisation(req: ApiRequest) -> int:
    client_id = await req.services.pool.fetchval(
        "SELECT client_organisation_id FROM users WHERE id = $1", req.user.user_id
    )
    if client_id is None:
        raise Problem(403, "your account belongs to no client organisation; ask your account manager")
    return int(client_id)


async def _order(req: ApiRequest, order_id: int, client_id: int) -> OrderOut:
    req.services.servable_orders.clear()  # read or changed: what leads may serve is looked up afresh
    try:
        return OrderOut.of(await store.get(req.services.pool, order_id, today(req), client_id))
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None


@api.route("POST", "/api/portal/orders", summary="Place an order", tag="client portal", roles=CLIENT,
           body=OrderTerms, response=OrderOut, status=201)  # fmt: skip
async def place_order(req: ApiRequest) -> OrderOut:
    """A draft your account manager reviews, links to campaigns and activates."""
    client_id = await organisation(req)
    no_internal_lists(req.body)
    order_id = await store.create(req.services.pool, req.actor, client_id, req.body.columns(), None)
    return await _order(req, order_id, client_id)


@api.route("GET", "/api/portal/orders", summary="Your orders with their progress", tag="client portal",
           roles=CLIENT, query=OrderQuery, response=OrderPage)  # fmt: skip
async def my_orders(req: ApiRequest) -> OrderPage:
    client_id = await organisation(req)
    q: OrderQuery = req.query
    rows = await store.page(req.services.pool, today(req), client_id, q.status, decode_cursor(q.cursor), q.limit)
    items, cursor = page_of(rows, q.limit, lambda row: int(row["id"]))
    return OrderPage(items=[OrderOut.of(row) for row in items], next_cursor=cursor)


@api.route("GET", "/api/portal/orders/{orderId}", summary="One of your orders", tag="client portal", roles=CLIENT,
           response=OrderOut)  # fmt: skip
async def my_order(req: ApiRequest) -> OrderOut:
    return await _order(req, req.path_int("orderId"), await organisation(req))


@api.route("PUT", "/api/portal/orders/{orderId}/terms", summary="Change a draft order", tag="client portal",
           roles=CLIENT, body=OrderTerms, response=OrderOut)  # fmt: skip
async def change_my_order(req: ApiRequest) -> OrderOut:
    client_id, order_id = await organisation(req), req.path_int("orderId")
    no_internal_lists(req.body)
    try:
        await store.update_terms(req.services.pool, req.actor, order_id, req.body.columns(), client_id)
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None
    except store.OrderConflict as exc:
        raise Problem(409, str(exc)) from None
    return await _order(req, order_id, client_id)


@api.route("GET", "/api/portal/leads", summary="Your delivered leads, newest first", tag="client portal",
           roles=CLIENT, query=PortalLeadQuery, response=PortalLeadPage)  # fmt: skip
async def my_leads(req: ApiRequest) -> PortalLeadPage:
    """The API pull: page through with `cursor`; each page marks its leads delivered by pull."""
    client_id = await organisation(req)
    q: PortalLeadQuery = req.query
    if q.order_id is not None:
        await _order(req, q.order_id, client_id)  # 404 unless it is the caller's
    rows = await portal.leads(req.services.pool, client_id, q.order_id, q.status, decode_cursor(q.cursor), q.limit)
    items, cursor = page_of(rows, q.limit, lambda row: int(row["id"]))
    await portal.mark_delivered(req.services.pool, [row["id"] for row in items])
    return PortalLeadPage(items=[PortalLead.model_validate(row) for row in items], next_cursor=cursor)


@api.route("GET", "/api/portal/leads/{leadId}", summary="One of your leads", tag="client portal", roles=CLIENT,
           response=PortalLead)  # fmt: skip
async def my_lead(req: ApiRequest) -> PortalLead:
    client_id, lead_id = await organisation(req), req.path_int("leadId")
    row = await portal.lead(req.services.pool, client_id, lead_id)
    if row is None:
        raise Problem(404, f"lead {lead_id} does not exist")
    return PortalLead.model_validate(row)


@api.route("GET", "/api/portal/orders/{orderId}/leads.csv", summary="An order's leads as CSV", tag="client portal",
           roles=CLIENT, media_type="text/csv")  # fmt: skip
async def export_my_leads(req: ApiRequest) -> web.StreamResponse:
    client_id, order_id = await organisation(req), req.path_int("orderId")
    await _order(req, order_id, client_id)  # 404 unless it is the caller's
    disposition = f'attachment; filename="order-{order_id}-leads.csv"'
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": disposition})  # fmt: skip
    await response.prepare(req.request)
    out = io.StringIO()
    write_rows(out, [portal.CSV_COLUMNS])  # formula-safe cells, CRLF line ends
    await response.write(out.getvalue().encode())  # the header even for an order with no lead yet
    after = None
    while rows := await portal.leads(req.services.pool, client_id, order_id, None, after, 1000):
        rows = rows[:1000]
        out.seek(0)
        out.truncate()
        write_rows(out, ([row.get(column) for column in portal.CSV_COLUMNS] for row in rows))
        await response.write(out.getvalue().encode())  # written before it counts as delivered
        await portal.mark_delivered(req.services.pool, [row["id"] for row in rows])
        after = rows[-1]["id"]
    await response.write_eof()
    return response


@api.route("POST", "/api/portal/leads/{leadId}/return", summary="Return a lead within the order's window",
           tag="client portal", roles=CLIENT, body=ReturnBody, response=PortalLead)  # fmt: skip
async def return_lead(req: ApiRequest) -> PortalLead:
    """A replacement is owed: the order no longer counts the lead. 409 past the returns window."""
    client_id, lead_id = await organisation(req), req.path_int("leadId")
    now = datetime.fromtimestamp(req.services.clock(), UTC)
    move = Move("return", req.user.user_id, req.user.roles, now, reason=req.body.reason)
    try:
        await portal.return_lead(req.services.pool, client_id, lead_id, move)
    except LookupError as exc:
        raise Problem(404, str(exc)) from None
    except Refused as exc:
        raise Problem(exc.status, str(exc)) from None
    returned: PortalLead = await my_lead(req)
    return returned


@api.route("PUT", "/api/portal/orders/{orderId}/webhook", summary="Have an order's leads pushed to your webhook",
           tag="client portal", roles=CLIENT, body=WebhookBody, response=OrderOut)  # fmt: skip
async def set_my_webhook(req: ApiRequest) -> OrderOut:
    """Each lead given to the order from now on is POSTed, signed (HMAC-SHA256 over the timestamp and the body),
    and retried with back-off until the webhook answers 2xx."""
    client_id, order_id = await organisation(req), req.path_int("orderId")
    await _order(req, order_id, client_id)
    body: WebhookBody = req.body
    problem = url_problem(body.url, req.services.webhook_allow_private)
    if problem is not None:
        raise Problem(422, f"url: {problem}")
    await store.set_webhook(req.services.pool, req.actor, order_id, body.url, req.services.sealer.seal(body.secret))
    return await _order(req, order_id, client_id)


@api.route("DELETE", "/api/portal/orders/{orderId}/webhook", summary="Stop pushing an order's leads",
           tag="client portal", roles=CLIENT, response=OrderOut)  # fmt: skip
async def remove_my_webhook(req: ApiRequest) -> OrderOut:
    client_id, order_id = await organisation(req), req.path_int("orderId")
    await _order(req, order_id, client_id)
    await store.set_webhook(req.services.pool, req.actor, order_id, None, None)
    return await _order(req, order_id, client_id)


@api.route("GET", "/api/portal/deliveries", summary="Webhook pushes of your leads", tag="client portal",
           roles=CLIENT, query=DeliveryQuery, response=DeliveryPage)  # fmt: skip
async def my_deliveries(req: ApiRequest) -> DeliveryPage:
    client_id = await organisation(req)
    q: DeliveryQuery = req.query
    if q.order_id is not None:
        await _order(req, q.order_id, client_id)
    rows = await deliveries.page(req.services.pool, client_id, q.order_id, decode_cursor(q.cursor), q.limit)
    items, cursor = page_of(rows, q.limit, lambda row: int(row["id"]))
    return DeliveryPage(items=[DeliveryOut.model_validate(row) for row in items], next_cursor=cursor)


@api.route("GET", "/api/portal/orders/{orderId}/report", summary="Your order's delivery against goal and pace",
           tag="client portal", roles=CLIENT, response=OrderReport)  # fmt: skip
async def my_order_report(req: ApiRequest) -> OrderReport:
    client_id, order_id = await organisation(req), req.path_int("orderId")
    try:
        order = await store.get(req.services.pool, order_id, today(req), client_id)
    except store.OrderNotFound as exc:
        raise Problem(404, str(exc)) from None
    report = await reports.order_report(req.services.pool, order, today(req))
    report["rejections"] = []  # the linked campaigns' QA serves other clients' orders too
    return OrderReport.model_validate(report)


@api.route("GET", "/api/portal/leads/{leadId}/recording", summary="Your lead's call recording (MP3)",
           tag="client portal", roles=CLIENT, media_type="audio/mpeg")  # fmt: skip
async def my_lead_recording(req: ApiRequest) -> web.StreamResponse:
    client_id, lead_id = await organisation(req), req.path_int("leadId")
    file = await portal.recording_file(req.services.pool, client_id, lead_id)
    return recording_response(req, file, f"lead {lead_id} has no recording")
