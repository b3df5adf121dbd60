"""E-mail campaigns through the admin API, as a campaign manager works: a sender profile and its domain, a draft
with variants and an audience, the pre-flight checklist refusing until every item passes, a test send, start,
the sandbox capturing what the engine sent, the report, and a warmup plan."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from dispatch.preflight import EmailReadiness, VariantFacts, checklist, link_problems
from dispatch.senders import exponential_ramp
from tests.conftest import bearer, login
from tests.email_setup import HTML, reset_email, wait_for


@pytest.fixture
async def email_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await reset_email(clean_db)
    await clean_db.execute("TRUNCATE static_lists, email_domains, tracking_domains CASCADE")
    return clean_db


async def _audience(pool: asyncpg.Pool, n: int) -> int:
    await pool.execute("INSERT INTO accounts (name, domain, registrable_domain) VALUES ('Acme', 'acme.example', "
                       "'acme.example')")  # fmt: skip
    await pool.executemany(
        "INSERT INTO contacts (account_id, first_name, last_name, email) VALUES ((SELECT min(id) FROM accounts), "
        "$1, $2, $3)",
        [(f"F{i}", f"L{i}", f"person{i}@acme.example") for i in range(n)],
    )
    list_id = await pool.fetchval("INSERT INTO static_lists (name) VALUES ('Targets') RETURNING id")
    await pool.execute("INSERT INTO list_members (list_id, contact_id) SELECT $1, id FROM contacts", list_id)
    return int(list_id)


def _keys(items: list[dict[str, Any]]) -> set[str]:
    return {i["key"] for i in items if i["blocking"] and not i["ok"]}


async def test_a_campaign_goes_from_draft_to_sent_through_the_api(
    make_client: Any, email_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    client = await make_client()
    auth = bearer(await login(client, "admin@test.example"))
    list_id = await _audience(email_db, 30)

    profile = await client.post("/api/sender-profiles", headers=auth, json={
        "name": "Sales", "from_name": "Pivotal Sales", "from_email": "Sales@Pivotal.example", "provider": "smtp",
        "secret": "hunter2", "provider_settings": {"host": "127.0.0.1", "port": 2525}})  # fmt: skip
    assert profile.status == 201, await profile.text()
    profile_body = await profile.json()
    assert profile_body["has_secret"] is True
    assert "hunter2" not in await profile.text()
    assert profile_body["from_email"] == "sales@pivotal.example"
    leaked = await client.post(
        "/api/sender-profiles",
        headers=auth,
        json={
            "name": "Leaky",
            "from_email": "x@pivotal.example",
            "provider": "smtp",
            "provider_settings": {"password": "x"},
        },
    )
    assert leaked.status == 422  # a secret belongs in "secret", sealed

    created = await client.post(
        "/api/email-campaigns",
        headers=auth,
        json={"name": "Q4 report", "sender_profile_id": profile_body["id"], "domain_limits": {"Gmail.com": 50}},
    )
    assert created.status == 201, await created.text()
    campaign = await created.json()
    cid = campaign["id"]
    assert campaign["status"] == "draft"
    assert campaign["domain_limits"] == {"gmail.com": 50.0}

    bad = await client.put(f"/api/email-campaigns/{cid}/variants", headers=auth, json={"variants": [
        {"key": "A", "subject": "Hi", "html_body": "<p>\n{{ contact.shoe_size }}</p>"}]})  # fmt: skip
    assert bad.status == 422
    problem = await bad.json()
    assert (problem["variant"], problem["part"], problem["line"], problem["field"]) == (
        "A",
        "html",
        2,
        "contact.shoe_size",
    )

    response = await client.get(f"/api/email-campaigns/{cid}/checklist", headers=auth)
    failing = _keys((await response.json())["items"])
    assert {"sender_domain_auth", "tracking_domain", "audience", "variants", "test_send"} <= failing

    no_unsubscribe = "<html><body><p>Hello {{ contact.first_name }}</p></body></html>"
    variants = {
        "variants": [
            {"key": "A", "subject": "The report, {{ contact.first_name }}", "html_body": HTML, "split_share": 50},
            {"key": "B", "subject": "Q4 for {{ account.name }}", "html_body": no_unsubscribe, "split_share": 50},
        ]
    }
    assert (await client.put(f"/api/email-campaigns/{cid}/variants", headers=auth, json=variants)).status == 200
    assert (await client.put(f"/api/email-campaigns/{cid}/audience", headers=auth,
                             json={"rules": [{"mode": "include", "list_id": list_id}]})).status == 200  # fmt: skip
    refused = await client.post(f"/api/email-campaigns/{cid}/actions/start", headers=auth)
    assert refused.status == 409
    named = {item["key"] for item in (await refused.json())["checklist"]}
    assert {"unsubscribe_link", "postal_address", "ab_test", "sender_domain_auth", "test_send"} <= named

    variants["variants"][1]["html_body"] = HTML.replace("Read", "Q4 for {{ account.name }}: read")
    assert (await client.put(f"/api/email-campaigns/{cid}/variants", headers=auth, json=variants)).status == 200
    await client.patch(f"/api/sender-profiles/{profile_body['id']}", headers=auth,
                       json={"postal_address": "1 Main Street, Springfield, IL 62701"})  # fmt: skip
    await client.patch(f"/api/email-campaigns/{cid}", headers=auth, json={"ab_winner_criterion": "click_rate"})
    domain = await client.post("/api/email-domains", headers=auth, json={"domain": "pivotal.example"})
    assert domain.status == 201
    await client.patch(f"/api/email-domains/{(await domain.json())['id']}", headers=auth,
                       json={"spf_status": "valid", "dkim_status": "valid", "dmarc_status": "valid"})  # fmt: skip
    tracking = await client.post("/api/tracking-domains", headers=auth, json={"domain": "t.pivotal.example",
                                                                              "is_default": True})  # fmt: skip
    assert tracking.status == 201
    response = await client.get(f"/api/email-campaigns/{cid}/checklist", headers=auth)
    assert _keys((await response.json())["items"]) == {"test_send"}

    tested = await client.post(f"/api/email-campaigns/{cid}/test-send", headers=auth,
                               json={"to": ["QA@Pivotal-Test.com"]})  # fmt: skip
    assert tested.status == 200, await tested.text()
    body = await tested.json()
    assert body["recorded"] is True
    assert [r["variant"] for r in body["results"]] == ["A", "B"]
    captures = await (await client.get("/api/email/captures", headers=auth)).json()
    subjects = {c["subject"] for c in captures["items"]}
    assert "[Test A] The report, F0" in subjects
    assert "[Test B] Q4 for Acme" in subjects

    checked = await (await client.get(f"/api/email-campaigns/{cid}/checklist", headers=auth)).json()
    assert checked["ready"] is True
    assert checked["audience_size"] == 30
    started = await client.post(f"/api/email-campaigns/{cid}/actions/start", headers=auth)
    assert started.status == 200, await started.text()
    assert (await started.json())["member_count"] == 30
    await wait_for(email_db, "SELECT count(*) = 30 FROM email_messages WHERE campaign_id = $1 AND status = 'sent'",
                   cid)  # fmt: skip
    await wait_for(email_db, "SELECT status = 'completed' FROM campaigns WHERE id = $1", cid)

    metrics = await (await client.get("/metrics")).text()
    assert 'pivotal_email_messages_total{outcome="sent",provider="capture"} 30.0' in metrics
    assert "pivotal_email_send_seconds_bucket" in metrics
    report = await (await client.get(f"/api/email-campaigns/{cid}/report", headers=auth)).json()
    assert report["total"]["sent"] == 30
    assert report["total"]["pending"] == 0
    assert sum(v["sent"] for v in report["variants"]) == 30
    assert {v["variant"] for v in report["variants"]} == {"A", "B"}
    assert report["series"]
    assert sum(p["sent"] for p in report["series"]) == 30
    edit = await client.put(f"/api/email-campaigns/{cid}/variants", headers=auth, json=variants)
    assert edit.status == 409  # recipients are bound to the variants once sending started

    plan = await client.post(
        "/api/warmup-plans",
        headers=auth,
        json={"name": "New IP", "sender_profile_id": profile_body["id"], "start": 50, "growth": 2, "target": 1000},
    )
    assert plan.status == 201, await plan.text()
    assert (await plan.json())["daily_caps"] == [50, 100, 200, 400, 800, 1000]
    active = await client.post(f"/api/warmup-plans/{(await plan.json())['id']}/actions/activate", headers=auth)
    assert active.status == 200
    assert (await active.json())["today_cap"] == 50


def _readiness(**overrides: Any) -> EmailReadiness:
    variant = VariantFacts(
        "A", "Hi {{ contact.first_name }}", "", HTML, "", Decimal(100), datetime(2026, 1, 1, tzinfo=UTC)
    )
    values: dict[str, Any] = {
        "sender_profile_active": True, "postal_address": "1 Main Street", "from_domain": "pivotal.example",
        "domain_records": ("valid", "valid", "valid"), "tracking_domain": "t.pivotal.example",
        "suppressions_current": True, "audience_rules": 1, "audience_size": 10, "variants": (variant,),
        "test_sent_at": datetime(2026, 1, 2, tzinfo=UTC),
    }  # fmt: skip
    return EmailReadiness(**(values | overrides))


@pytest.mark.parametrize(
    ("overrides", "failing"),
    [
        ({}, set()),
        ({"sender_profile_active": False}, {"sender_profile"}),
        ({"domain_records": ("valid", "missing", "valid")}, {"sender_domain_auth"}),
        ({"domain_records": None}, {"sender_domain_auth"}),
        ({"tracking_domain": None}, {"tracking_domain"}),
        ({"suppressions_current": False}, {"suppressions"}),
        ({"audience_size": 0}, {"audience"}),
        ({"postal_address": ""}, {"postal_address"}),
        ({"test_sent_at": None}, {"test_send"}),
        ({"variants": ()}, {"variants"}),
    ],
)
def test_the_checklist_names_what_fails(overrides: dict[str, Any], failing: set[str]) -> None:
    items = checklist(_readiness(**overrides))
    assert {i.key for i in items if i.blocking and not i.ok} == failing


@pytest.mark.parametrize(
    ("html", "bad"),
    [
        ('<a href="https://example.com/x?y=1">x</a>', []),
        ('<a href="mailto:sales@example.com">x</a> <a href="#top">t</a>', []),
        ('<a href="{{ unsubscribe_url }}">u</a> <a href="https://example.com/{{ contact.last_name }}">p</a>', []),
        ('<a href="htp://example.com">x</a>', ["htp://example.com"]),
        ('<a href="https://exa mple.com">x</a>', ["https://exa mple.com"]),
        ('<a href="https://localhost/x">x</a>', ["https://localhost/x"]),
        ("<a href='javascript:alert(1)'>x</a>", ["javascript:alert(1)"]),
    ],
)
def test_links_must_be_well_formed(html: str, bad: list[str]) -> None:
    assert link_problems(html) == bad


@pytest.mark.parametrize(
    ("start", "growth", "target", "caps"),
    [(50, 2.0, 1000, [50, 100, 200, 400, 800, 1000]), (1000, 1.5, 1000, [1000]), (10, 10.0, 50, [10, 50])],
)
def test_an_exponential_warmup_ends_at_its_target(start: int, growth: float, target: int, caps: list[int]) -> None:
    assert exponential_ramp(start, growth, target) == caps
