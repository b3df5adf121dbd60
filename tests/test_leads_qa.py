"""Leads and their QA through the admin API, as analysts and managers work: a checklist, leads entered, the
queue handing each lead to one analyst, approval against the checklist, rejection from the catalogue,
publication, and the trail of who did what."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from crm.audit import SYSTEM
from crm.passwords import PasswordHasher
from crm.roles import Role
from crm.users import UserStore
from tests.conftest import PASSWORD, bearer, login

CHECKLIST = [{"key": "recording_reviewed", "label": "Recording reviewed"},
             {"key": "title_fits", "label": "Job title fits the order"}]  # fmt: skip
DONE = {"recording_reviewed": True, "title_fits": True}


@pytest.fixture
async def qa_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await clean_db.execute("TRUNCATE campaigns, leads, lead_qa_events, contacts, accounts RESTART IDENTITY CASCADE")
    await clean_db.execute("DELETE FROM qa_rejection_reasons WHERE code = 'bad_timing'")
    await clean_db.execute("UPDATE qa_rejection_reasons SET active = true")
    await clean_db.execute("INSERT INTO accounts (name, domain) VALUES ('Acme', 'acme.example')")
    await clean_db.execute(
        """INSERT INTO contacts (account_id, first_name, last_name, job_title, email)
           SELECT 1, 'First' || n, 'Last' || n, 'CTO', 'person' || n || '@acme.example' FROM generate_series(1, 60) n"""
    )
    await clean_db.execute("INSERT INTO campaigns (name, channel) VALUES ('Q4 outreach', 'phone')")
    return clean_db


async def _analyst(pool: asyncpg.Pool, n: int) -> None:
    hashed = await PasswordHasher(4).hash(PASSWORD)
    await UserStore(pool).create(SYSTEM, email=f"analyst{n}@test.example", password_hash=hashed,
                                 roles=[Role.QUALITY_ANALYST])  # fmt: skip


async def _refused(response: Any, status: int, words: str) -> None:
    """A problem+json answer with this status whose detail says ``words``."""
    body = await response.json()
    assert response.status == status, body
    assert words in body["detail"]


async def _enter(client: Any, auth: dict[str, str], contact_id: int, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/leads", headers=auth, json={"campaign_id": 1, "contact_id": contact_id,
                                                                   **extra})  # fmt: skip
    assert response.status == 201, await response.text()
    lead: dict[str, Any] = await response.json()
    return lead


async def test_a_lead_goes_from_new_to_published_with_its_trail(
    make_client: Any, qa_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    manager = bearer(await login(client, "campaign_manager@test.example"))
    analyst = bearer(await login(client, "quality_analyst@test.example"))
    await _analyst(qa_db, 2)
    other = bearer(await login(client, "analyst2@test.example"))

    put = await client.put("/api/campaigns/1/qa-checklist", headers=manager, json={"items": CHECKLIST})
    assert put.status == 200, await put.text()
    lead = await _enter(client, manager, 1, form_answers={"budget": "yes"}, notes="keen",
                        recording_url="https://recordings.example/1.mp3")  # fmt: skip
    assert (lead["status"], lead["first_name"], lead["account_name"]) == ("new", "First1", "Acme")
    assert lead["form_answers"] == {"budget": "yes"}
    assert lead["checklist"] == CHECKLIST
    again = await client.post("/api/leads", headers=manager, json={"campaign_id": 1, "contact_id": 1})
    assert again.status == 409

    taken = await client.post("/api/qa/next", headers=analyst)
    assert taken.status == 200, await taken.text()
    taken_body = await taken.json()
    assert (taken_body["id"], taken_body["status"]) == (lead["id"], "under_review")
    assert taken_body["claimed_by"] == role_users[Role.QUALITY_ANALYST]
    assert (await client.post("/api/qa/next", headers=other)).status == 204  # nothing else waits
    assert (await (await client.post("/api/qa/next", headers=analyst)).json())["id"] == lead["id"]  # still mine

    path = f"/api/leads/{lead['id']}"
    stolen = await client.post(f"{path}/approve", headers=other, json={"checklist": DONE})
    await _refused(stolen, 409, "another analyst")
    half = await client.post(f"{path}/approve", headers=analyst, json={"checklist": {"recording_reviewed": True}})
    await _refused(half, 422, "confirm title_fits")
    approved = await client.post(f"{path}/approve", headers=analyst, json={"checklist": DONE, "notes": "solid"})
    assert approved.status == 200, await approved.text()
    assert (await approved.json())["status"] == "approved"
    published = await client.post(f"{path}/publish", headers=analyst, json={})
    body = await published.json()
    assert body["status"] == "published"
    assert body["published_at"] is not None

    trail = [(e["from_status"], e["to_status"], e["analyst_id"]) for e in body["history"]]
    me, boss = role_users[Role.QUALITY_ANALYST], role_users[Role.CAMPAIGN_MANAGER]
    assert trail == [(None, "new", boss), ("new", "under_review", me), ("under_review", "approved", me),
                     ("approved", "published", me)]  # fmt: skip
    assert body["history"][2]["detail"] == {"action": "approve", "checklist": DONE, "notes": "solid"}
    # the database holds the same
    assert await qa_db.fetchval("SELECT count(*) FROM lead_qa_events WHERE lead_id = $1", lead["id"]) == 4


async def test_a_rejection_needs_a_reason_from_the_catalogue_and_an_admin_can_reopen(
    make_client: Any, qa_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    admin = bearer(await login(client, "admin@test.example"))
    analyst = bearer(await login(client, "quality_analyst@test.example"))
    lead = await _enter(client, admin, 2)
    path = f"/api/leads/{lead['id']}"
    assert (await client.post(f"{path}/reject", headers=analyst, json={"reason_code": "no_consent"})).status == 409
    assert (await client.post(f"{path}/claim", headers=analyst)).status == 200

    reasons = await (await client.get("/api/qa/rejection-reasons", headers=analyst)).json()
    assert {"no_consent", "other"} <= {r["code"] for r in reasons["items"]}
    for body, words in [({"reason_code": "bored"}, "'bored' is not an active"),
                        ({"reason_code": "other"}, "needs notes"),
                        ({"notes": "x"}, "reason_code")]:  # fmt: skip
        refused = await client.post(f"{path}/reject", headers=analyst, json=body)
        await _refused(refused, 422, words)

    added = await client.post("/api/qa/rejection-reasons", headers=admin,
                              json={"code": "bad_timing", "label": "Not buying this year"})  # fmt: skip
    assert added.status == 201
    assert (await client.post("/api/qa/rejection-reasons", headers=admin,
                              json={"code": "bad_timing", "label": "again"})).status == 409  # fmt: skip
    retired = await client.patch("/api/qa/rejection-reasons/no_consent", headers=admin, json={"active": False})
    assert (await retired.json())["active"] is False
    assert (await client.post(f"{path}/reject", headers=analyst, json={"reason_code": "no_consent"})).status == 422

    rejected = await client.post(f"{path}/reject", headers=analyst, json={"reason_code": "bad_timing",
                                                                          "notes": "budget in Q3"})  # fmt: skip
    body = await rejected.json()
    assert (body["status"], body["rejection_reason"]) == ("rejected", "bad_timing")
    assert body["status_reason"] == "Not buying this year: budget in Q3"

    assert (await client.post(f"{path}/reopen", headers=analyst, json={})).status == 403
    reopened = await client.post(f"{path}/reopen", headers=admin, json={"notes": "second look"})
    assert (await reopened.json())["status"] == "new"
    assert (await (await client.post("/api/qa/next", headers=analyst)).json())["id"] == lead["id"]


async def test_an_expired_claim_goes_to_the_next_analyst(
    make_client: Any, qa_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    now = [1_800_000_000.0]
    client = await make_client(clock=lambda: now[0])
    analyst = bearer(await login(client, "quality_analyst@test.example"))
    await _analyst(qa_db, 2)
    other = bearer(await login(client, "analyst2@test.example"))
    lead = await _enter(client, bearer(await login(client, "admin@test.example")), 3)
    assert (await (await client.post("/api/qa/next", headers=analyst)).json())["id"] == lead["id"]
    assert (await (await client.post("/api/qa/next", headers=analyst)).json())["id"] == lead["id"]  # renewed
    now[0] += 14 * 60
    assert (await client.post("/api/qa/next", headers=other)).status == 204
    now[0] += 2 * 60  # 16 minutes: the first analyst's claim lapsed
    taken = await (await client.post("/api/qa/next", headers=other)).json()
    assert taken["id"] == lead["id"]
    late = await client.post(f"/api/leads/{lead['id']}/approve", headers=analyst, json={})
    await _refused(late, 409, "another analyst")
    taken_over = await qa_db.fetch(
        "SELECT actor_id, entity_id, detail, request_id FROM audit_log WHERE action = 'lead.claim_taken_over'"
    )
    assert len(taken_over) == 1  # renewing one's own claim is not a takeover
    assert taken_over[0]["detail"] == {"previous_analyst_id": role_users[Role.QUALITY_ANALYST]}
    assert taken_over[0]["entity_id"] == str(lead["id"])
    assert taken_over[0]["actor_id"] == await qa_db.fetchval(
        "SELECT id FROM users WHERE email = 'analyst2@test.example'"
    )
    assert taken_over[0]["request_id"]  # which request took it
    trail = await qa_db.fetch(
        "SELECT to_status::text FROM lead_qa_events WHERE lead_id = $1 ORDER BY id", lead["id"]
    )  # entered, taken from the queue once; a takeover changes no status
    assert [row["to_status"] for row in trail] == ["new", "under_review"]


async def test_analysts_asking_at_once_never_get_the_same_lead(
    make_client: Any, qa_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    admin = bearer(await login(client, "admin@test.example"))
    for contact_id in range(1, 41):
        await _enter(client, admin, contact_id)
    analysts = []
    for n in range(10):
        await _analyst(qa_db, 10 + n)
        analysts.append(bearer(await login(client, f"analyst{10 + n}@test.example")))

    async def work(auth: dict[str, str]) -> list[int]:
        reviewed: list[int] = []
        while True:
            taken = await client.post("/api/qa/next", headers=auth)
            if taken.status == 204:
                return reviewed
            lead_id = (await taken.json())["id"]
            reviewed.append(lead_id)
            done = await client.post(f"/api/leads/{lead_id}/approve", headers=auth, json={"checklist": {}})
            assert done.status == 200, await done.text()

    handed = [lead for share in await asyncio.gather(*(work(a) for a in analysts)) for lead in share]
    assert sorted(handed) == list(range(1, 41))  # each lead once, none twice, none left
    assert await qa_db.fetchval("SELECT count(*) FROM leads WHERE status = 'approved'") == 40


async def test_bad_lead_input_is_refused_with_what_is_wrong(
    make_client: Any, qa_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    manager = bearer(await login(client, "campaign_manager@test.example"))
    for body, status, words in [
        ({"campaign_id": 99, "contact_id": 1}, 422, "campaign 99 does not exist"),
        ({"campaign_id": 1, "contact_id": 999}, 422, "contact 999 does not exist"),
        ({"campaign_id": 1, "contact_id": 1, "recording_url": "javascript:alert(1)"}, 422, "recording_url"),
        ({"campaign_id": 1, "contact_id": 1, "status": "published"}, 422, "status"),
    ]:
        response = await client.post("/api/leads", headers=manager, json=body)
        await _refused(response, status, words)
    duplicate = await client.put("/api/campaigns/1/qa-checklist", headers=manager,
                                 json={"items": [CHECKLIST[0], CHECKLIST[0]]})  # fmt: skip
    await _refused(duplicate, 422, "unique")
    assert (await client.get("/api/leads/424242", headers=manager)).status == 404
    assert await qa_db.fetchval("SELECT count(*) FROM leads") == 0
    listing = await (await client.get("/api/leads?status=new", headers=manager)).json()
    assert listing["items"] == []


async def test_the_qa_report_gives_approval_rates_per_campaign_and_agent_and_rejection_reasons(
    make_client: Any, qa_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    admin = bearer(await login(client, "admin@test.example"))
    analyst = bearer(await login(client, "quality_analyst@test.example"))
    agent = role_users[Role.AGENT]
    for contact_id in range(1, 6):
        await _enter(client, admin, contact_id, agent_user_id=agent if contact_id <= 4 else None)
    for verdict in ["approve", "approve", "approve", "reject", "reject"]:
        lead_id = (await (await client.post("/api/qa/next", headers=analyst)).json())["id"]
        body: dict[str, Any] = {"checklist": {}} if verdict == "approve" else {"reason_code": "no_consent"}
        assert (await client.post(f"/api/leads/{lead_id}/{verdict}", headers=analyst, json=body)).status == 200
    report = await (await client.get("/api/qa/report", headers=admin)).json()
    (campaign,) = report["campaigns"]
    assert (campaign["leads"], campaign["passed"], campaign["rejected"]) == (5, 3, 2)
    assert campaign["approval_rate"] == 0.6
    by_agent = {row["agent_user_id"]: (row["passed"], row["rejected"]) for row in report["agents"]}
    assert by_agent == {agent: (3, 1), None: (0, 1)}  # the oldest leads were reviewed first
    assert report["rejection_reasons"] == [{"code": "no_consent", "label": await qa_db.fetchval(
        "SELECT label FROM qa_rejection_reasons WHERE code = 'no_consent'"), "leads": 2}]  # fmt: skip
    naive = await client.get("/api/qa/report?since=2026-01-01T00:00:00", headers=admin)
    await _refused(naive, 422, "time zone")
    later = await (await client.get("/api/qa/report?since=2099-01-01T00:00:00Z", headers=admin)).json()
    assert later == {"campaigns": [], "agents": [], "rejection_reasons": []}
