"""Telemarketing campaigns through the API: content, settings, audience, the checklist, the lifecycle."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from tests.conftest import bearer


@pytest.fixture
async def campaign_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    pool = clean_db
    await pool.execute(
        """TRUNCATE campaigns, campaign_members, scripts, qualification_forms, static_lists, list_members, contacts,
                    accounts, telephony_connections, caller_id_numbers CASCADE"""
    )
    await pool.execute("DELETE FROM disposition_catalogues WHERE code <> 'default'")
    await pool.execute(
        """INSERT INTO accounts (id, name, domain, registrable_domain) OVERRIDING SYSTEM VALUE VALUES
             (1, 'Acme', 'acme.com', 'acme.com');
           INSERT INTO contacts (id, account_id, first_name, phone_e164) OVERRIDING SYSTEM VALUE VALUES
             (1, 1, 'Ann', '+12125550100'), (2, 1, 'Bob', '+12125550101'), (3, NULL, 'Cy', '+12125550102');
           INSERT INTO telephony_connections (name, connection_id, is_default) VALUES ('Main', 'cc-1', true);"""
    )
    return pool


FORM = {"name": "BANT", "fields": [
    {"key": "budget", "label": "Budget", "type": "integer", "required": True, "min": 0},
    {"key": "timeline", "label": "Timeline", "type": "select", "options": [{"value": "q1", "label": "Q1"}]},
]}  # fmt: skip


async def test_a_campaign_from_draft_to_completed(client: Any, tokens: dict[Role, str], campaign_db: Any) -> None:
    manager, supervisor = bearer(tokens[Role.CAMPAIGN_MANAGER]), bearer(tokens[Role.SUPERVISOR])
    created = await client.post("/api/campaigns", json={"name": "Q1 outreach", "dial_mode": "predictive",
                                                        "amd_mode": "premium"}, headers=manager)  # fmt: skip
    assert created.status == 201, await created.text()
    campaign = await created.json()
    cid = campaign["id"]
    assert (campaign["status"], campaign["ring_timeout_secs"], campaign["lines_per_agent"]) == ("draft", 25, "3.00")

    checklist = await (await client.get(f"/api/campaigns/{cid}/checklist", headers=supervisor)).json()
    assert checklist["ready"] is False
    failing = [i["key"] for i in checklist["items"] if i["blocking"] and not i["ok"]]
    assert failing == ["audience", "script", "form", "dispositions", "caller_id", "abandon_message"]
    refused = await client.post(f"/api/campaigns/{cid}/actions/start", headers=manager)
    assert refused.status == 409
    problem = await refused.json()
    assert problem["detail"].startswith("not ready to start: the campaign has no audience")
    assert [item["key"] for item in problem["checklist"]] == failing

    # Content: a script (merge fields checked), a form, the seeded default catalogue.
    bad_script = await client.post("/api/scripts", json={"name": "Opener", "body": "Hi {{contact.shoe}}"},
                                   headers=manager)  # fmt: skip
    assert bad_script.status == 422
    assert "contact.shoe: no such field" in (await bad_script.json())["detail"]
    script = await (await client.post("/api/scripts", json={"name": "Opener", "body": "Hi {{contact.first_name}}"},
                                      headers=manager)).json()  # fmt: skip
    form = await (await client.post("/api/forms", json=FORM, headers=manager)).json()
    catalogues = await (await client.get("/api/disposition-catalogues", headers=manager)).json()
    default = next(c for c in catalogues["items"] if c["code"] == "default")
    assert any(d["is_positive"] for d in default["dispositions"])

    # A list of two contacts; one of them excluded through another list.
    members = await (await client.post("/api/lists", json={"name": "Targets"}, headers=manager)).json()
    await client.post(f"/api/lists/{members['id']}/members", json={"contact_ids": [1, 2, 3]}, headers=manager)
    skip = await (await client.post("/api/lists", json={"name": "Skip"}, headers=manager)).json()
    await client.post(f"/api/lists/{skip['id']}/members", json={"contact_ids": [3]}, headers=manager)
    audience = await client.put(f"/api/campaigns/{cid}/audience", json={"rules": [
        {"mode": "include", "list_id": members["id"]}, {"mode": "exclude", "list_id": skip["id"]}]},
        headers=manager)  # fmt: skip
    assert audience.status == 200, await audience.text()
    bad_rule = await client.put(f"/api/campaigns/{cid}/audience", json={"rules": [{"mode": "include",
                                "list_id": 1, "segment_id": 2}]}, headers=manager)  # fmt: skip
    assert bad_rule.status == 422

    patched = await client.patch(f"/api/campaigns/{cid}", json={
        "script_id": script["id"], "qualification_form_id": form["id"], "disposition_catalogue_id": default["id"],
        "caller_id_e164": "+1 212 555 0199", "abandon_message": "Acme calling. Press 9 to opt out.",
        "ring_timeout_secs": 20}, headers=manager)  # fmt: skip
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["caller_id_e164"] == "+12125550199"
    for bad in ({"ring_timeout_secs": 10}, {"max_abandon_rate": 0.5}, {"script_id": 999999}, {"color": "red"},
                {"starts_at": "2026-12-01T09:00:00"}):  # fmt: skip
        response = await client.patch(f"/api/campaigns/{cid}", json=bad, headers=manager)
        assert response.status == 422, bad

    checklist = await (await client.get(f"/api/campaigns/{cid}/checklist", headers=supervisor)).json()
    assert (checklist["ready"], checklist["audience_size"]) == (True, 2)
    started = await client.post(f"/api/campaigns/{cid}/actions/start", headers=manager)
    assert started.status == 200, await started.text()
    running = await started.json()
    assert (running["status"], running["member_count"]) == ("running", 2)
    assert running["started_at"] is not None
    frozen = await campaign_db.fetch("SELECT contact_id, account_id FROM campaign_members WHERE campaign_id = $1 "
                                     "ORDER BY contact_id", cid)  # fmt: skip
    assert [(r["contact_id"], r["account_id"]) for r in frozen] == [(1, 1), (2, 1)]

    edit_running = await client.patch(f"/api/campaigns/{cid}", json={"dial_mode": "progressive"}, headers=manager)
    assert edit_running.status == 409
    in_use = await client.delete(f"/api/scripts/{script['id']}", headers=manager)
    assert in_use.status == 409, "a running campaign uses it"
    assert (await client.post(f"/api/campaigns/{cid}/actions/start", headers=manager)).status == 409

    # A contact joins the list: a refresh adds it, and only it.
    await campaign_db.execute("INSERT INTO contacts (id, first_name, phone_e164) OVERRIDING SYSTEM VALUE "
                              "VALUES (4, 'Di', '+12125550103')")  # fmt: skip
    await client.post(f"/api/lists/{members['id']}/members", json={"contact_ids": [4]}, headers=manager)
    refreshed = await (await client.post(f"/api/campaigns/{cid}/audience/refresh", headers=manager)).json()
    assert refreshed == {"added": 1, "member_count": 3}

    for action, status in (("pause", "paused"), ("resume", "running"), ("pause", "paused"), ("complete", "completed"),
                           ("archive", "archived")):  # fmt: skip
        moved = await client.post(f"/api/campaigns/{cid}/actions/{action}", headers=manager)
        assert (moved.status, (await moved.json())["status"]) == (200, status)
    assert (await client.post(f"/api/campaigns/{cid}/actions/fly", headers=manager)).status == 404
    assert (await client.post(f"/api/campaigns/{cid}/actions/resume", headers=manager)).status == 409
    assert (await client.delete(f"/api/campaigns/{cid}", headers=manager)).status == 409
    assert (await client.delete(f"/api/scripts/{script['id']}", headers=manager)).status == 204

    listed = await (await client.get("/api/campaigns?status=archived", headers=supervisor)).json()
    assert [c["id"] for c in listed["items"]] == [cid]
    agent = bearer(tokens[Role.AGENT])
    assert (await client.post("/api/campaigns", json={"name": "x"}, headers=agent)).status == 403
    actions = await campaign_db.fetch("SELECT action FROM audit_log WHERE entity_type = 'campaign' ORDER BY id")
    assert [a["action"] for a in actions][:3] == ["campaign.created", "campaign.audience_changed", "campaign.updated"]


async def test_drafts_delete_and_catalogues_copy(client: Any, tokens: dict[Role, str], campaign_db: Any) -> None:
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    draft = await (await client.post("/api/campaigns", json={"name": "Scratch"}, headers=manager)).json()
    assert (await client.delete(f"/api/campaigns/{draft['id']}", headers=manager)).status == 204
    assert (await client.get(f"/api/campaigns/{draft['id']}", headers=manager)).status == 404
    catalogues = await (await client.get("/api/disposition-catalogues", headers=manager)).json()
    default = catalogues["items"][0]
    copy = await client.post("/api/disposition-catalogues", json={
        "code": "emea", "name": "EMEA outcomes", "copy_from": default["id"],
        "dispositions": [{"code": "meeting_booked", "label": "Meeting booked", "is_positive": True, "is_final": True,
                          "hotkey": "m"}]}, headers=manager)  # fmt: skip
    assert copy.status == 201, await copy.text()
    codes = [d["code"] for d in (await copy.json())["dispositions"]]
    assert "qualified" in codes
    assert codes[-1] == "meeting_booked"
    wrong = {"code": "dnc_lead", "label": "?", "is_positive": True, "is_dnc": True, "is_final": True}
    contradiction = await client.post("/api/disposition-catalogues", json={
        "code": "bad", "name": "Bad", "dispositions": [wrong]}, headers=manager)  # fmt: skip
    assert contradiction.status == 422
    assert (await client.post("/api/disposition-catalogues", json={"code": "emea", "name": "Again"},
                              headers=manager)).status == 409  # fmt: skip
    scheduled = await (await client.post("/api/campaigns", json={"name": "Later"}, headers=manager)).json()
    no_time = await client.post(f"/api/campaigns/{scheduled['id']}/actions/schedule", headers=manager)
    assert no_time.status == 409


async def test_an_audience_from_a_segment_minus_a_domain_set(
    client: Any, tokens: dict[Role, str], campaign_db: Any
) -> None:
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    segment = await client.post("/api/segments", json={"name": "Named A-C", "filter": {
        "field": "contact.first_name", "op": "in", "value": ["Ann", "Bob", "Cy"]}}, headers=manager)  # fmt: skip
    assert segment.status == 201, await segment.text()
    domains = await client.post("/api/domain-sets", json={"name": "Customers"}, headers=manager)
    assert domains.status == 201, await domains.text()
    set_id = (await domains.json())["id"]
    uploaded = await client.post(f"/api/domain-sets/{set_id}/entries", data="acme.com\n",
                                 headers={**manager, "Content-Type": "text/plain"})  # fmt: skip
    assert uploaded.status == 200, await uploaded.text()
    assert (await client.post(f"/api/domain-sets/{set_id}/match", headers=manager)).status == 200
    campaign = await (await client.post("/api/campaigns", json={"name": "Net new"}, headers=manager)).json()
    rules = [{"mode": "include", "segment_id": (await segment.json())["id"]},
             {"mode": "exclude", "domain_set_id": set_id}]  # fmt: skip
    assert (await client.put(f"/api/campaigns/{campaign['id']}/audience", json={"rules": rules},
                             headers=manager)).status == 200  # fmt: skip
    checklist = await (await client.get(f"/api/campaigns/{campaign['id']}/checklist", headers=manager)).json()
    assert checklist["audience_size"] == 1, "Ann and Bob work at Acme, an existing customer: only Cy is left"


async def test_bad_input_is_a_specific_422_never_a_500(client: Any, tokens: dict[Role, str], campaign_db: Any) -> None:
    import time

    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    created = await (await client.post("/api/campaigns", json={"name": "Edge cases"}, headers=manager)).json()
    cid = created["id"]
    for bad, says in [
        ({"name": None}, "name cannot be null"),
        ({"wrap_up_seconds": None}, "wrap_up_seconds cannot be null"),
        ({"name": "   "}, "name"),
        ({"script_id": 2**70}, "script_id"),
        ({"starts_at": "0001-01-01T00:00:00+01:00"}, "a year between 2000 and 2999"),
        ({"amd_machine_action": "leave_message"}, "contradict"),
        ({"account_cap_mode": "queue_size", "account_cap": None}, "go together"),
    ]:
        response = await client.patch(f"/api/campaigns/{cid}", json=bad, headers=manager)
        assert response.status == 422, (bad, await response.text())
        assert says in (await response.json())["detail"], bad
    assert (await client.get(f"/api/campaigns/{cid}", headers=manager)).status == 200, "nothing stored half-way"
    capped = await client.patch(f"/api/campaigns/{cid}", json={"account_cap_mode": "queue_size", "account_cap": 3},
                                headers=manager)  # fmt: skip
    assert capped.status == 200
    assert (await client.patch(f"/api/campaigns/{cid}", json={"account_cap": 5}, headers=manager)).status == 200
    created_bad = await client.post("/api/campaigns", json={"name": "x", "amd_machine_action": "leave_message"},
                                    headers=manager)  # fmt: skip
    assert created_bad.status == 422
    started = time.perf_counter()
    hostile = await client.post("/api/scripts", json={"name": "Braces", "body": "{{" * 25_000}, headers=manager)
    assert hostile.status == 201
    assert time.perf_counter() - started < 1.0, "an unclosed merge field costs linear time"
    system = await client.post("/api/disposition-catalogues", json={
        "code": "sneaky", "name": "Sneaky", "copy_from": 1,
        "dispositions": [{"code": "no_answer", "label": "No answer", "is_dnc": True, "is_final": True}]},
        headers=manager)  # fmt: skip
    assert system.status == 422
    assert "the dialer sets itself" in (await system.json())["detail"]
