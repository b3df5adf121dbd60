"""Client orders and the client portal through the API: clients place orders, managers link and activate them,
published leads are allocated by the orders' filters, clients pull, export and return their leads - and never
see another organisation's: every client route called with another organisation's ids answers 404."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from tests.conftest import PASSWORD, bearer, login

TITLES = ["CTO", "VP Engineering", "Senior Software Engineer", "Head of Engineering", "CMO", "=HYPERLINK(evil)"]


@pytest.fixture
async def portal_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await clean_db.execute(
        """TRUNCATE campaigns, leads, lead_qa_events, contacts, accounts, campaign_orders, order_campaigns,
                    client_organisations RESTART IDENTITY CASCADE"""
    )
    await clean_db.execute("INSERT INTO accounts (name, domain, industry, employee_count) "
                           "VALUES ('Acme', 'acme.example', 'Software', 800)")  # fmt: skip
    await clean_db.executemany(
        "INSERT INTO contacts (account_id, first_name, last_name, job_title, email) VALUES (1, $1, 'L', $2, $3)",
        [(f"F{n}", title, f"p{n}@acme.example") for n, title in enumerate(TITLES, start=1)],
    )
    await clean_db.execute("INSERT INTO campaigns (name, channel) VALUES ('Outbound', 'phone')")
    return clean_db


async def _ok(response: Any, status: int = 200) -> Any:
    body = await response.json()
    assert response.status == status, body
    return body


async def _publish(pool: asyncpg.Pool, contact_ids: list[int]) -> None:
    await pool.executemany(
        """INSERT INTO leads (campaign_id, contact_id, account_id, status, published_at, form_answers)
           VALUES (1, $1, 1, 'published', now() + make_interval(secs => $2), '{"budget": "approved"}')""",
        [(contact_id, float(contact_id)) for contact_id in contact_ids],
    )


async def test_clients_order_receive_return_and_see_only_their_own(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    admin = bearer(await login(client, "admin@test.example"))
    manager = bearer(await login(client, "campaign_manager@test.example"))
    orgs = [await _ok(await client.post("/api/client-organisations", headers=admin, json={"name": name}), 201)
            for name in ("Buyer A", "Buyer B")]  # fmt: skip
    for n, org in enumerate(orgs):
        await _ok(await client.post("/api/users", headers=admin, json={
            "email": f"client{n}@buyer.example", "password": PASSWORD, "roles": ["client"],
            "client_organisation_id": org["id"]}), 201)  # fmt: skip
    no_org = await client.post("/api/users", headers=admin, json={"email": "x@buyer.example", "password": PASSWORD,
                                                                  "roles": ["client"]})  # fmt: skip
    assert no_org.status == 422
    a, b = [bearer(await login(client, f"client{n}@buyer.example")) for n in range(2)]

    engineering = {"name": "Engineering leaders", "quantity": 3, "price_per_lead": "120.00", "returns_window_days": 7,
                   "filters": {"job_functions": ["engineering"], "min_employees": 100, "countries": None}}  # fmt: skip
    order_a = await _ok(await client.post("/api/portal/orders", headers=a, json=engineering), 201)
    assert (order_a["status"], order_a["client_organisation_id"], order_a["quantity"]) == ("draft", orgs[0]["id"], 3)
    order_b = await _ok(await client.post("/api/portal/orders", headers=b, json={
        "name": "Marketing", "quantity": 10, "filters": {"job_functions": ["marketing"]}}), 201)  # fmt: skip
    emperor = {"name": "x", "quantity": 1, "filters": {"seniorities": ["emperor"]}}
    bad = await client.post("/api/portal/orders", headers=a, json=emperor)
    assert bad.status == 422
    for order in (order_a, order_b):
        refused = await client.post(f"/api/orders/{order['id']}/actions/activate", headers=manager)
        assert refused.status == 409  # no campaign linked yet
        await _ok(await client.put(f"/api/orders/{order['id']}/campaigns", headers=manager, json={"campaign_ids": [1]}))
        await _ok(await client.post(f"/api/orders/{order['id']}/actions/activate", headers=manager))

    await _publish(portal_db, [1, 2, 3, 4, 5, 6])
    allocated = await _ok(await client.post("/api/orders/allocate", headers=manager))
    assert allocated == {"allocated": 4}  # three engineers to A (its quantity), the CMO to B
    mine = await _ok(await client.get("/api/portal/leads", headers=a))
    assert sorted(lead["first_name"] for lead in mine["items"]) == ["F1", "F2", "F3"]
    assert {lead["order_id"] for lead in mine["items"]} == {order_a["id"]}
    theirs = await _ok(await client.get("/api/portal/leads", headers=b))
    assert [lead["first_name"] for lead in theirs["items"]] == ["F5"]
    progress = await _ok(await client.get(f"/api/portal/orders/{order_a['id']}", headers=a))
    assert (progress["delivered"], progress["behind_pace"], progress["status"]) == (3, 0, "active")

    # tenant isolation: A with B's ids, on every client route
    b_order, b_lead = order_b["id"], theirs["items"][0]["id"]
    for method, path, body in [
        ("GET", f"/api/portal/orders/{b_order}", None),
        ("PUT", f"/api/portal/orders/{b_order}/terms", engineering),
        ("GET", f"/api/portal/orders/{b_order}/leads.csv", None),
        ("GET", f"/api/portal/leads?order_id={b_order}", None),
        ("GET", f"/api/portal/leads/{b_lead}", None),
        ("POST", f"/api/portal/leads/{b_lead}/return", {"reason": "not mine"}),
    ]:
        response = await client.request(method, path, headers=a, json=body)
        assert response.status == 404, (method, path, await response.text())
    assert (await _ok(await client.get(f"/api/portal/leads/{b_lead}", headers=b)))["status"] == "published"

    # a return within the window: the order owes a replacement and gets the fourth engineer
    returned_id = mine["items"][0]["id"]
    returned = await _ok(await client.post(f"/api/portal/leads/{returned_id}/return", headers=a,
                                           json={"reason": "left the company"}))  # fmt: skip
    assert (returned["status"], returned["return_reason"]) == ("returned", "left the company")
    again = await client.post(f"/api/portal/leads/{returned_id}/return", headers=a, json={"reason": "again"})
    assert again.status == 409
    assert await _ok(await client.post("/api/orders/allocate", headers=manager)) == {"allocated": 1}
    progress = await _ok(await client.get(f"/api/portal/orders/{order_a['id']}", headers=a))
    assert (progress["delivered"], progress["returned"]) == (3, 1)

    # past the window: refused
    late_id = next(lead["id"] for lead in mine["items"] if lead["id"] != returned_id)
    await portal_db.execute("UPDATE leads SET allocated_at = $2 WHERE id = $1", late_id,
                            datetime.now(UTC) - timedelta(days=8))  # fmt: skip
    late = await client.post(f"/api/portal/leads/{late_id}/return", headers=a, json={"reason": "too late"})
    assert late.status == 409
    assert "returns window closed" in (await late.json())["detail"]

    # the CSV export: every lead of the order, a header, cells that cannot run as formulas
    export = await client.get(f"/api/portal/orders/{order_a['id']}/leads.csv", headers=a)
    assert export.status == 200
    rows = list(csv.DictReader(io.StringIO(await export.text())))
    assert sorted(row["first_name"] for row in rows) == ["F1", "F2", "F3", "F4"]
    assert {row["status"] for row in rows} == {"published", "returned"}
    assert await portal_db.fetchval("SELECT count(*) FROM leads WHERE delivered_at IS NOT NULL") >= 4


async def test_an_order_s_client_wide_scope_and_pace_hold_back_leads(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    admin = bearer(await login(client, "admin@test.example"))
    org = await _ok(await client.post("/api/client-organisations", headers=admin, json={"name": "Buyer C"}), 201)
    first = await _ok(await client.post("/api/orders", headers=admin, json={
        "client_organisation_id": org["id"], "name": "Q3", "quantity": 10}), 201)  # fmt: skip
    today = datetime.now(UTC).date()
    second = await _ok(await client.post("/api/orders", headers=admin, json={
        "client_organisation_id": org["id"], "name": "Q4", "quantity": 10, "dedupe_scope": "client",
        "weekly_pace": 2, "starts_on": today.isoformat()}), 201)  # fmt: skip
    await _ok(await client.put(f"/api/orders/{first['id']}/campaigns", headers=admin, json={"campaign_ids": [1]}))
    await _ok(await client.post(f"/api/orders/{first['id']}/actions/activate", headers=admin))
    await _publish(portal_db, [1])
    assert await _ok(await client.post("/api/orders/allocate", headers=admin)) == {"allocated": 1}
    await _ok(await client.post(f"/api/orders/{first['id']}/actions/pause", headers=admin))

    # contact 1 went to Q3: the client-wide scope keeps it out of Q4; a new lead for the same person waits
    await portal_db.execute("INSERT INTO campaigns (name, channel) VALUES ('Second wave', 'phone')")
    await portal_db.execute(
        """INSERT INTO leads (campaign_id, contact_id, account_id, status, published_at)
           VALUES (2, 1, 1, 'published', now())"""
    )
    await _publish(portal_db, [2, 3, 4])
    await _ok(await client.put(f"/api/orders/{second['id']}/campaigns", headers=admin, json={"campaign_ids": [1, 2]}))
    await _ok(await client.post(f"/api/orders/{second['id']}/actions/activate", headers=admin))
    assert await _ok(await client.post("/api/orders/allocate", headers=admin)) == {"allocated": 2}  # the pace: 2
    held = await portal_db.fetch("SELECT contact_id FROM leads WHERE campaign_order_id = $1 ORDER BY contact_id",
                                 second["id"])  # fmt: skip
    assert [row["contact_id"] for row in held] == [2, 3]
    order = await _ok(await client.get(f"/api/orders/{second['id']}", headers=admin))
    assert (order["due_by_now"], order["delivered"], order["behind_pace"]) == (2, 2, 0)
