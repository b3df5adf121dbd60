"""Client orders and the client portal through the API: clients place orders, managers link and activate them,
published leads are allocated by the orders' filters, clients pull, export and return their leads - and never
see another organisation's: every client route called with another organisation's ids answers 404."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from admin_api.services import SERVICES
from crm.orders.push import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from crm.roles import Role
from dialer.hopper import claim
from pivotal.lead_allocator import LeadAllocator
from pivotal.lead_pusher import PublicOnlyResolver
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
    # contact 1's and contact 5's conversations were recorded
    recordings = client.app[SERVICES].recordings_dir
    (recordings / "2026-11").mkdir(parents=True)
    for contact in (1, 5):
        (recordings / "2026-11" / f"{contact}.mp3").write_bytes(b"ID3 recording of contact %d" % contact)
        attempt = await portal_db.fetchval(
            """INSERT INTO call_attempts (campaign_id, contact_id, attempt_number, to_e164, from_e164, dial_command_id,
                                          recording_file)
               VALUES (1, $1, 1, '+12125550100', '+12125550199', $2, $3) RETURNING id""",
            contact, f"dial-{contact}", f"2026-11/{contact}.mp3",
        )  # fmt: skip
        await portal_db.execute("UPDATE leads SET call_attempt_id = $1 WHERE contact_id = $2", attempt, contact)
    allocated = await _ok(await client.post("/api/orders/allocate", headers=manager))
    assert allocated["allocated"] == 4  # three engineers to A (its quantity), the CMO to B
    mine = await _ok(await client.get("/api/portal/leads", headers=a))
    assert sorted(lead["first_name"] for lead in mine["items"]) == ["F1", "F2", "F3"]
    assert {lead["order_id"] for lead in mine["items"]} == {order_a["id"]}
    theirs = await _ok(await client.get("/api/portal/leads", headers=b))
    assert [lead["first_name"] for lead in theirs["items"]] == ["F5"]
    progress = await _ok(await client.get(f"/api/portal/orders/{order_a['id']}", headers=a))
    assert (progress["delivered"], progress["behind_pace"], progress["status"]) == (3, 0, "active")
    first = next(lead for lead in mine["items"] if lead["first_name"] == "F1")
    assert first["recording_url"] == f"/api/portal/leads/{first['id']}/recording"
    audio = await client.get(first["recording_url"], headers=a)
    assert audio.status == 200
    assert await audio.read() == b"ID3 recording of contact 1"

    # tenant isolation: A with B's ids, on every client route
    b_order, b_lead = order_b["id"], theirs["items"][0]["id"]
    for method, path, body in [
        ("GET", f"/api/portal/orders/{b_order}", None),
        ("PUT", f"/api/portal/orders/{b_order}/terms", engineering),
        ("GET", f"/api/portal/orders/{b_order}/leads.csv", None),
        ("GET", f"/api/portal/leads?order_id={b_order}", None),
        ("GET", f"/api/portal/leads/{b_lead}", None),
        ("POST", f"/api/portal/leads/{b_lead}/return", {"reason": "not mine"}),
        ("PUT", f"/api/portal/orders/{b_order}/webhook", {"url": "https://a.example/hook", "secret": "s" * 16}),
        ("DELETE", f"/api/portal/orders/{b_order}/webhook", None),
        ("GET", f"/api/portal/deliveries?order_id={b_order}", None),
        ("GET", f"/api/portal/orders/{b_order}/report", None),
        ("GET", f"/api/portal/leads/{b_lead}/recording", None),
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
    assert (await _ok(await client.post("/api/orders/allocate", headers=manager)))["allocated"] == 1
    progress = await _ok(await client.get(f"/api/portal/orders/{order_a['id']}", headers=a))
    assert (progress["delivered"], progress["returned"]) == (3, 1)

    report = await _ok(await client.get(f"/api/portal/orders/{order_a['id']}/report", headers=a))
    assert (report["quantity"], report["delivered"], report["returned"], report["remaining"]) == (3, 3, 1, 0)
    assert report["returns"] == [{"reason": "left the company", "code": None, "label": None, "leads": 1}]
    (week,) = report["by_week"]
    assert (week["delivered"], week["returned"], week["cumulative"]) == (4, 1, 3)
    assert report == await _ok(await client.get(f"/api/orders/{order_a['id']}/report", headers=manager))

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
    for row in rows:  # times in ISO 8601 with their offset, as importers read them
        assert "T" in row["delivered_at"]
        assert datetime.fromisoformat(row["delivered_at"]).utcoffset() is not None
    assert await portal_db.fetchval("SELECT count(*) FROM leads WHERE delivered_at IS NOT NULL") >= 4


async def test_a_manager_activates_only_the_terms_they_read(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    """With ``if_updated_at`` an action is refused (412, nothing changed) when the order changed since the caller
    read it - here the client raised the quantity while the manager was reviewing the draft."""
    client = await make_client()
    manager = bearer(await login(client, "campaign_manager@test.example"))
    buyer = bearer(await login(client, "client@test.example"))
    order = await _ok(await client.post("/api/portal/orders", headers=buyer, json={"name": "CTOs", "quantity": 5}),
                      201)  # fmt: skip
    await _ok(await client.put(f"/api/orders/{order['id']}/campaigns", headers=manager, json={"campaign_ids": [1]}))
    reviewed = await _ok(await client.get(f"/api/orders/{order['id']}", headers=manager))
    await _ok(await client.put(f"/api/portal/orders/{order['id']}/terms", headers=buyer, json={
        "name": "CTOs", "quantity": 500}))  # fmt: skip
    activate = f"/api/orders/{order['id']}/actions/activate"
    stale = await client.post(activate, headers=manager, params={"if_updated_at": reviewed["updated_at"]})
    assert stale.status == 412
    assert stale.content_type == "application/problem+json"
    assert "changed since you read it" in (await stale.json())["detail"]
    assert (await _ok(await client.get(f"/api/orders/{order['id']}", headers=manager)))["status"] == "draft"
    for bad in ("yesterday", "2026-11-25T10:00:00"):  # not a time; a time without its zone
        assert (await client.post(activate, headers=manager, params={"if_updated_at": bad})).status == 422
    fresh = await _ok(await client.get(f"/api/orders/{order['id']}", headers=manager))
    assert fresh["quantity"] == 500
    active = await _ok(await client.post(activate, headers=manager, params={"if_updated_at": fresh["updated_at"]}))
    assert active["status"] == "active"
    paused = await _ok(await client.post(f"/api/orders/{order['id']}/actions/pause", headers=manager))  # none given
    assert paused["status"] == "paused"


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
    assert (await _ok(await client.post("/api/orders/allocate", headers=admin)))["allocated"] == 1
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
    assert (await _ok(await client.post("/api/orders/allocate", headers=admin)))["allocated"] == 2  # the pace: 2
    held = await portal_db.fetch("SELECT contact_id FROM leads WHERE campaign_order_id = $1 ORDER BY contact_id",
                                 second["id"])  # fmt: skip
    assert [row["contact_id"] for row in held] == [2, 3]
    order = await _ok(await client.get(f"/api/orders/{second['id']}", headers=admin))
    assert (order["due_by_now"], order["delivered"], order["behind_pace"]) == (2, 2, 0)


async def test_leads_are_pushed_signed_to_the_client_s_webhook_and_retried_until_taken(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    secret = "a client secret of 32 characters"
    received: list[dict[str, Any]] = []
    answers = [500]  # the first push fails; later ones are taken

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        assert verify(secret, request.headers[TIMESTAMP_HEADER], body, request.headers[SIGNATURE_HEADER],
                      datetime.now(UTC).timestamp())  # fmt: skip
        assert request.headers[DELIVERY_HEADER].isdigit()
        if answers:
            return web.Response(status=answers.pop())
        received.append(await request.json())
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = TestServer(receiver, host="127.0.0.1")
    await server.start_server()
    try:
        client = await make_client(orders={"push_retry_base_s": 0.05, "webhook_allow_private": True})
        admin = bearer(await login(client, "admin@test.example"))
        buyer = bearer(await login(client, "client@test.example"))
        org = await portal_db.fetchval("SELECT client_organisation_id FROM users WHERE email = 'client@test.example'")
        order = await _ok(await client.post("/api/portal/orders", headers=buyer, json={"name": "Push", "quantity": 5}),
                          201)  # fmt: skip
        assert order["client_organisation_id"] == org
        url = f"http://127.0.0.1:{server.port}/hook"
        hooked = await _ok(await client.put(f"/api/portal/orders/{order['id']}/webhook", headers=buyer,
                                            json={"url": url, "secret": secret}))  # fmt: skip
        assert (hooked["webhook_url"], hooked["has_webhook_secret"]) == (url, True)
        assert secret not in json.dumps(hooked)
        await _ok(await client.put(f"/api/orders/{order['id']}/campaigns", headers=admin, json={"campaign_ids": [1]}))
        await _ok(await client.post(f"/api/orders/{order['id']}/actions/activate", headers=admin))
        await _publish(portal_db, [1, 2, 3])
        assert (await _ok(await client.post("/api/orders/allocate", headers=admin)))["allocated"] == 3

        for _ in range(200):  # the pusher polls every second and retries after 0.05 s
            if received:
                break
            await asyncio.sleep(0.05)
        assert len(received) == 1
        pushed = received[0]
        assert pushed["order_id"] == order["id"]
        assert sorted(d["lead"]["first_name"] for d in pushed["deliveries"]) == ["F1", "F2", "F3"]
        assert pushed["deliveries"][0]["lead"]["form_answers"] == {"budget": "approved"}
        for _ in range(100):
            listing = await _ok(await client.get(f"/api/portal/deliveries?order_id={order['id']}", headers=buyer))
            if all(d["status"] == "delivered" for d in listing["items"]):
                break
            await asyncio.sleep(0.05)
        assert [(d["status"], d["attempts"]) for d in listing["items"]] == [("delivered", 2)] * 3
        assert await portal_db.fetchval("SELECT count(*) FROM leads WHERE delivered_at IS NOT NULL") == 3
    finally:
        await server.close()


async def test_a_webhook_into_this_network_is_refused(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    buyer = bearer(await login(client, "client@test.example"))
    order = await _ok(await client.post("/api/portal/orders", headers=buyer, json={"name": "X", "quantity": 1}), 201)
    for url in ("http://127.0.0.1:5432/", "https://169.254.169.254/latest", "https://localhost/hook"):
        refused = await client.put(f"/api/portal/orders/{order['id']}/webhook", headers=buyer,
                                   json={"url": url, "secret": "s" * 16})  # fmt: skip
        assert refused.status == 422, url
    export = await client.get(f"/api/portal/orders/{order['id']}/leads.csv", headers=buyer)
    assert (await export.text()).startswith("id,order_id,status,")  # no lead yet: the header all the same
    short = await client.put(f"/api/portal/orders/{order['id']}/webhook", headers=buyer,
                             json={"url": "https://crm.buyer.example/hook", "secret": "short"})  # fmt: skip
    assert short.status == 422


async def test_orders_steer_the_dialling_of_their_campaigns(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    """Contacts an order behind its pace needs are dialled first; those no order has room for wait."""
    client = await make_client()
    admin = bearer(await login(client, "admin@test.example"))
    await portal_db.execute("INSERT INTO campaign_members (campaign_id, contact_id, account_id) "
                            "SELECT 1, id, account_id FROM contacts")  # fmt: skip
    org = await portal_db.fetchval("SELECT client_organisation_id FROM users WHERE email = 'client@test.example'")
    order = await _ok(await client.post("/api/orders", headers=admin, json={
        "client_organisation_id": org, "name": "CMOs", "quantity": 1,
        "filters": {"job_functions": ["marketing"]}}), 201)  # fmt: skip
    await _ok(await client.put(f"/api/orders/{order['id']}/campaigns", headers=admin, json={"campaign_ids": [1]}))
    await _ok(await client.post(f"/api/orders/{order['id']}/actions/activate", headers=admin))
    steered = await _ok(await client.post("/api/orders/allocate", headers=admin))
    assert steered["steered"] == 6
    members = {r["contact_id"]: (r["priority"], r["held_for_orders"]) for r in await portal_db.fetch(
        "SELECT contact_id, priority, held_for_orders FROM campaign_members WHERE campaign_id = 1")}  # fmt: skip
    assert members[5] == (100, False)  # the CMO: the order needs all of its one lead
    assert all(held for contact, (_, held) in members.items() if contact != 5)  # no order fits the others
    assert [row["contact_id"] for row in await claim(portal_db, 1, 10)] == [5]
    await _publish(portal_db, [5])
    lead_id = await portal_db.fetchval("SELECT id FROM leads WHERE contact_id = 5")
    lead = await _ok(await client.get(f"/api/leads/{lead_id}", headers=admin))
    assert lead["may_serve"] == [{"order_id": order["id"], "name": "CMOs", "client_organisation_id": org}]
    assert lead["campaign_order_id"] is None

    # the order is filled: the CMO is held as well, and nobody is dialled for it
    await portal_db.execute("UPDATE campaign_members SET status = 'completed' WHERE contact_id = 5")
    assert (await _ok(await client.post("/api/orders/allocate", headers=admin)))["allocated"] == 1
    await portal_db.execute("UPDATE campaign_members SET status = 'new' WHERE contact_id = 5")
    await _ok(await client.post("/api/orders/allocate", headers=admin))
    assert await portal_db.fetchval("SELECT held_for_orders FROM campaign_members WHERE contact_id = 5")
    assert await claim(portal_db, 1, 10) == []

    # the order paused: the campaign no longer works for any order, and its members are released - by the
    # daemon's own allocator loop (a fresh one, as after a restart), from what the table holds
    await _ok(await client.post(f"/api/orders/{order['id']}/actions/pause", headers=admin))
    allocator = LeadAllocator(portal_db, time.time)
    given, steered = await allocator.tick()
    assert (given, steered) == (0, 6)
    assert await portal_db.fetchval("SELECT count(*) FROM campaign_members WHERE held_for_orders OR priority <> 0") == 0
    assert await allocator.tick() == (0, 0)  # nothing changed: nothing done


async def test_bad_order_input_is_refused_with_what_is_wrong(
    make_client: Any, portal_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    buyer = bearer(await login(client, "client@test.example"))
    admin = bearer(await login(client, "admin@test.example"))
    base = {"name": "Q1", "quantity": 10}
    for path, headers, body, words in [
        ("/api/portal/orders", buyer, base | {"weekly_pace": 5}, "starts_on"),
        ("/api/portal/orders", buyer, base | {"name": "   "}, "name"),
        ("/api/portal/orders", buyer, base | {"filters": {"account_list_id": 1}}, "account manager"),
        ("/api/portal/orders", buyer, base | {"quantity": 0}, "quantity"),
        ("/api/portal/orders", buyer, base | {"weekly_pace": 2**31, "starts_on": "2026-12-01"}, "weekly_pace"),
        ("/api/portal/orders", buyer, base | {"filters": {"min_employees": 500, "max_employees": 10}}, "min_employees"),
        ("/api/portal/orders", buyer, base | {"filters": {"countries": ["USA"]}}, "alpha-2"),
        ("/api/orders", admin, base | {"client_organisation_id": 2**63}, "client_organisation_id"),
        ("/api/orders", admin, base | {"client_organisation_id": 9999}, "does not exist"),
        (
            "/api/orders",
            admin,
            base | {"client_organisation_id": 1, "filters": {"account_list_id": 2**62}},
            "does not exist",
        ),
        ("/api/leads", admin, {"campaign_id": 2**63, "contact_id": 1}, "campaign_id"),
        ("/api/client-organisations", admin, {"name": " "}, "name"),
    ]:
        response = await client.post(path, headers=headers, json=body)
        assert response.status == 422, (body, await response.text())
        assert words in (await response.json())["detail"], (body, await response.text())
    assert (await client.get(f"/api/portal/leads?order_id={2**63}", headers=buyer)).status == 422
    assert await portal_db.fetchval("SELECT count(*) FROM campaign_orders") == 0


async def test_a_webhook_name_that_resolves_into_this_network_is_refused_when_pushing() -> None:
    resolver = PublicOnlyResolver()
    try:
        for host in ("127.1", "2130706433", "localhost", "10.0.0.5"):
            with pytest.raises(OSError, match="addresses of this network"):
                await resolver.resolve(host, 443)
        assert [r["host"] for r in await resolver.resolve("8.8.8.8", 443)] == ["8.8.8.8"]
    finally:
        await resolver.close()
