"""Compliance against real PostgreSQL: suppressions through the API, NOTIFY to every node, consent, decisions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from crm.audit import SYSTEM
from crm.compliance import suppressions
from crm.compliance.compact_sets import phone_key, text_key
from crm.compliance.feed import SuppressionFeed
from crm.roles import Role
from tests.conftest import bearer

ALWAYS_OPEN = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


@pytest.fixture
async def compliance_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    pool = clean_db
    await pool.execute(
        "TRUNCATE suppressions, consents, call_attempts, email_messages, contacts, accounts, campaigns CASCADE"
    )
    await pool.execute(
        """INSERT INTO campaigns (id, name, channel, calling_window) OVERRIDING SYSTEM VALUE VALUES
             (1, 'Phones', 'phone', $1), (2, 'Mail', 'email', '{}')""",
        ALWAYS_OPEN,
    )
    await pool.execute(
        """INSERT INTO accounts (id, name, domain, registrable_domain, office_country) OVERRIDING SYSTEM VALUE VALUES
             (1, 'Acme', 'acme.com', 'acme.com', NULL);
           INSERT INTO contacts (id, account_id, first_name, email, phone_e164, timezone) OVERRIDING SYSTEM VALUE
           VALUES (1, 1, 'Ann', 'Ann@acme.com', '+12125550100', 'America/New_York'),
                  (2, NULL, 'Bob', 'bob@globex.com', '+442079460958', NULL)"""
    )
    return pool


async def _until(condition: Any, timeout: float = 2.0) -> float:
    """Seconds until condition() holds (fails the test after ``timeout``)."""
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < timeout, "not within the time limit"
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


async def test_suppressions_through_the_api(client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool) -> None:
    """Add in any format, renew, list, check (memory and database), lift; bad input is a 422 naming the field."""
    supervisor, manager = bearer(tokens[Role.SUPERVISOR]), bearer(tokens[Role.CAMPAIGN_MANAGER])
    added = await client.post(
        "/api/suppressions", json={"channel": "phone", "value": "(212) 555-0100", "reason": "asked on the call"},
        headers=supervisor,
    )  # fmt: skip
    assert added.status == 201, await added.text()
    body = await added.json()
    assert (body["value"], body["scope"], body["source"], body["created"]) == ("+12125550100", "global", "api", True)
    again = await client.post("/api/suppressions", json={"channel": "phone", "value": "+1 212 555 0100"},
                              headers=supervisor)  # fmt: skip
    assert (again.status, (await again.json())["created"], (await again.json())["id"]) == (201, False, body["id"])

    check_url = "/api/suppressions/check?channel=phone&value=212.555.0100"
    started = time.perf_counter()
    while True:
        check = await (await client.get(check_url, headers=supervisor)).json()
        if check["in_memory_scopes"] == ["global"] or time.perf_counter() - started > 1:
            break
        await asyncio.sleep(0.01)
    assert check["in_memory_scopes"] == ["global"], "enforced by this node within 1 s"
    assert check["suppressed"] is True
    assert [entry["id"] for entry in check["entries"]] == [body["id"]]

    listed = await (await client.get("/api/suppressions?channel=phone", headers=supervisor)).json()
    assert [item["value"] for item in listed["items"]] == ["+12125550100"]

    for payload, field in [
        ({"channel": "phone", "value": "n/a"}, "value"),
        ({"channel": "email", "value": "nobody"}, "value"),
        ({"channel": "phone", "value": "+12125550100", "scope": "campaign"}, "campaign_id"),
        ({"channel": "phone", "value": "+12125550100", "scope": "campaign", "campaign_id": 99}, "campaign_id"),
        ({"channel": "fax", "value": "1"}, "channel"),
    ]:
        refused = await client.post("/api/suppressions", json=payload, headers=supervisor)
        assert refused.status == 422, payload
        assert field in str((await refused.json())["errors"]), payload

    assert (await client.post(f"/api/suppressions/{body['id']}/lift", json={"reason": "x"},
                              headers=supervisor)).status == 403  # fmt: skip
    lifted = await client.post(f"/api/suppressions/{body['id']}/lift", json={"reason": "added in error"},
                               headers=manager)  # fmt: skip
    assert lifted.status == 200
    assert (await lifted.json())["lift_reason"] == "added in error"
    again_lift = await client.post(f"/api/suppressions/{body['id']}/lift", json={"reason": "x"}, headers=manager)
    assert again_lift.status == 409
    started = time.perf_counter()
    while (await (await client.get(check_url, headers=supervisor)).json())["suppressed"]:
        assert time.perf_counter() - started < 1, "lifting reaches memory within 1 s"
        await asyncio.sleep(0.01)
    kept = await (await client.get("/api/suppressions?include_lifted=true", headers=supervisor)).json()
    assert [item["lifted_at"] is not None for item in kept["items"]] == [True], "never hard-deleted"
    actions = await compliance_db.fetch("SELECT action FROM audit_log WHERE entity_type = 'suppression' ORDER BY id")
    assert [row["action"] for row in actions] == ["suppression.added", "suppression.renewed", "suppression.lifted"]


async def test_an_address_is_blocked_by_its_domain(
    client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool
) -> None:
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    added = await client.post("/api/suppressions", json={"channel": "domain", "value": "https://www.Globex.com/"},
                              headers=manager)  # fmt: skip
    assert (await added.json())["value"] == "globex.com"
    started = time.perf_counter()
    while True:
        check = await (await client.get("/api/suppressions/check?channel=email&value=Bob@GLOBEX.com",
                                        headers=manager)).json()  # fmt: skip
        if check["in_memory_scopes"] or time.perf_counter() - started > 1:
            break
        await asyncio.sleep(0.01)
    assert check["value"] == "bob@globex.com"
    assert check["in_memory_scopes"] == ["domain_global"]
    assert [entry["channel"] for entry in check["entries"]] == ["domain"]


@pytest.fixture
async def two_nodes(compliance_db: asyncpg.Pool, database_url: str) -> AsyncIterator[list[SuppressionFeed]]:
    feeds = [SuppressionFeed(lambda: asyncpg.connect(database_url)) for _ in range(2)]
    for feed in feeds:
        await feed.start()
    yield feeds
    for feed in feeds:
        await feed.close()


async def test_a_new_suppression_reaches_every_node_within_a_second(
    compliance_db: asyncpg.Pool, two_nodes: list[SuppressionFeed]
) -> None:
    """Committed on one connection, enforced by two other "nodes" (their own LISTEN connections)."""
    key = phone_key("+442079460958")
    now = time.time()
    async with compliance_db.acquire() as conn:
        await suppressions.add(conn, SYSTEM, channel="phone", value="+442079460958", source="manual")
    waited = [await _until(lambda feed=feed: feed.index.blocked("phone", key, None, now), 1.0) for feed in two_nodes]
    assert max(waited) < 1.0
    async with compliance_db.acquire() as conn:
        await suppressions.add(
            conn, SYSTEM, channel="phone", value="+12125550100", scope="campaign", campaign_id=1, source="agent"
        )
    other = phone_key("+12125550100")
    await _until(lambda: all(feed.index.blocked("phone", other, 1, now) for feed in two_nodes), 1.0)
    assert not two_nodes[0].index.blocked("phone", other, 2, now), "another campaign may still call"


async def test_changes_reach_the_index_in_force_while_a_reload_runs(
    compliance_db: asyncpg.Pool, two_nodes: list[SuppressionFeed]
) -> None:
    """A reload (after an import, or a reconnect) takes seconds at scale; new entries must not wait for it."""
    await compliance_db.execute(
        """INSERT INTO suppressions (channel, scope, value, source)
           SELECT 'phone', 'global', '+1' || (2012000000 + i)::text, 'import' FROM generate_series(1, 300000) i"""
    )
    feed = two_nodes[0]
    assert feed.healthy
    await compliance_db.execute("SELECT pg_notify('pivotal_suppressions', '{\"op\": \"reload\"}')")
    await _until(lambda: feed._buffer is not None, 2.0)  # the reload has started
    async with compliance_db.acquire() as conn:
        await suppressions.add(conn, SYSTEM, channel="phone", value="+14155550125", source="manual")
    key = phone_key("+14155550125")
    waited = await _until(lambda: feed.index.blocked("phone", key, None, time.time()), 1.0)
    assert feed._buffer is not None, f"the reload was still running ({waited:.3f} s): the test proves the point"
    await _until(lambda: feed._buffer is None, 10.0)
    assert feed.index.blocked("phone", key, None, time.time()), "the new index has it too"
    assert feed.index.blocked("phone", phone_key("+12012000001"), None, time.time())


async def test_a_rolled_back_suppression_reaches_no_node(
    compliance_db: asyncpg.Pool, two_nodes: list[SuppressionFeed]
) -> None:
    async with compliance_db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await suppressions.add(conn, SYSTEM, channel="email", value="ann@acme.com", source="manual")
        await tx.rollback()
        await suppressions.add(conn, SYSTEM, channel="email", value="bob@globex.com", source="manual")
    now = time.time()
    await _until(lambda: two_nodes[0].index.blocked("email", text_key("bob@globex.com"), None, now))
    assert not two_nodes[0].index.blocked("email", text_key("ann@acme.com"), None, now)


async def test_a_node_that_lost_its_connection_catches_up(
    compliance_db: asyncpg.Pool, two_nodes: list[SuppressionFeed]
) -> None:
    """Events sent while a node was disconnected are not lost: it reconnects and reloads."""
    feed = two_nodes[0]
    await compliance_db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
    )
    async with compliance_db.acquire() as conn:
        await suppressions.add(conn, SYSTEM, channel="phone", value="+14155550123", source="manual")
    key, now = phone_key("+14155550123"), time.time()
    await _until(lambda: feed.index.blocked("phone", key, None, now), timeout=15.0)


async def test_expired_entries_are_not_enforced(compliance_db: asyncpg.Pool, two_nodes: list[SuppressionFeed]) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=5)
    async with compliance_db.acquire() as conn:
        await suppressions.add(conn, SYSTEM, channel="phone", value="+14155550124", source="manual", expires_at=soon)
    key = phone_key("+14155550124")
    # asked about a moment before the expiry, not "now": under load the entry may reach the node late
    await _until(lambda: two_nodes[0].index.blocked("phone", key, None, soon.timestamp() - 1))
    assert not two_nodes[0].index.blocked("phone", key, None, soon.timestamp() + 1)


async def test_consent_history(client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool) -> None:
    """Append-only: every change is a new entry; the latest per channel is the state; granting needs proof."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    url = "/api/contacts/1/consents"
    empty = await (await client.get(url, headers=manager)).json()
    assert empty == {"current": {"phone": "unknown", "email": "unknown"}, "history": []}
    no_proof = await client.post(url, json={"channel": "phone", "status": "granted"}, headers=manager)
    assert no_proof.status == 422
    given = {"channel": "phone", "status": "granted", "lawful_basis": "consent",
             "proof_url": "https://forms.example/42", "recorded_at": "2026-01-05T10:00:00Z"}  # fmt: skip
    granted = await client.post(url, json=given, headers=manager)
    assert granted.status == 201, await granted.text()
    assert (await granted.json())["proof"] == {"url": "https://forms.example/42"}
    withdrawn = await client.post(url, json={"channel": "phone", "status": "withdrawn", "proof_text": "said stop"},
                                  headers=manager)  # fmt: skip
    assert withdrawn.status == 201
    state = await (await client.get(url, headers=manager)).json()
    assert state["current"] == {"phone": "withdrawn", "email": "unknown"}
    assert [entry["status"] for entry in state["history"]] == ["withdrawn", "granted"]
    assert (await client.post("/api/contacts/99/consents", json={"channel": "phone", "status": "unknown"},
                              headers=manager)).status == 404  # fmt: skip
    future_entry = {"channel": "email", "status": "unknown", "recorded_at": "2099-01-01T00:00:00Z"}
    future = await client.post(url, json=future_entry, headers=manager)
    assert future.status == 422


async def test_decisions_explain_every_reason(
    client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool
) -> None:
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    decision_url = "/api/compliance/decision?contact_id=1&campaign_id=1"
    allowed = await (await client.get(decision_url, headers=manager)).json()
    assert allowed["allowed"] is True, allowed
    assert (allowed["local_time_zones"], allowed["local_time_source"]) == (["America/New_York"], "contact")

    settings = await (await client.get("/api/campaigns/1/compliance", headers=manager)).json()
    assert settings["calling_window"] == ALWAYS_OPEN
    bad = await client.put("/api/campaigns/1/compliance", json={**settings, "calling_window": {"mon": [["9", "5"]]}},
                           headers=manager)  # fmt: skip
    assert bad.status == 422
    assert "calling_window.mon[0][0]" in await bad.text()
    closed = {**settings, "calling_window": {"mon": []}, "consent_required": True, "max_attempts": 1}
    assert (await client.put("/api/campaigns/1/compliance", json=closed, headers=manager)).status == 200
    await compliance_db.execute(
        """INSERT INTO call_attempts (campaign_id, contact_id, account_id, attempt_number, to_e164, from_e164,
                                      dial_command_id, state, ended_at, created_at)
           VALUES (1, 1, 1, 1, '+12125550100', '+12125550199', 'c1', 'completed', now(), now() - interval '1 hour')"""
    )
    await client.post("/api/suppressions", json={"channel": "domain", "value": "acme.com"}, headers=manager)
    started = time.perf_counter()
    while True:
        blocked = await (await client.get(decision_url, headers=manager)).json()
        codes = [reason["code"] for reason in blocked["reasons"]]
        if "suppressed_domain_global" in codes or time.perf_counter() - started > 1:
            break
        await asyncio.sleep(0.01)
    assert blocked["allowed"] is False
    assert codes == ["suppressed_domain_global", "consent_required", "outside_calling_window", "max_attempts",
                     "retry_delay"]  # fmt: skip
    assert blocked["next_possible"] is None
    assert blocked["facts"]["attempts"]["total"] == 1
    assert blocked["facts"]["attempts"]["last_outcome"] == "no_answer"

    mail = await (await client.get("/api/compliance/decision?contact_id=1&campaign_id=2", headers=manager)).json()
    assert mail["channel"] == "email"
    assert [reason["code"] for reason in mail["reasons"]] == ["suppressed_domain_global"]
    missing = await client.get("/api/compliance/decision?contact_id=99&campaign_id=1", headers=manager)
    assert missing.status == 404
    assert (await client.get(decision_url, headers=bearer(tokens[Role.AGENT]))).status == 403


async def _finished_import(client: Any, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    started = time.perf_counter()
    while True:
        job: dict[str, Any] = await (await client.get(f"/api/imports/{job_id}", headers=headers)).json()
        if job["status"] not in ("pending", "running"):
            return job
        assert time.perf_counter() - started < 20, job
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("announce_up_to", [5_000, 1], ids=["entry-by-entry", "reload"])
async def test_suppression_list_import(
    client: Any,
    tokens: dict[Role, str],
    compliance_db: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    announce_up_to: int,
) -> None:
    """A DNC file in mixed formats: valid rows added (duplicates once), bad rows rejected with line and reason,
    re-importing adds nothing, and every number is enforced in memory (by events, or by a reload when large)."""
    from crm.compliance import suppression_import

    monkeypatch.setattr(suppression_import, "ANNOUNCE_UP_TO", announce_up_to)
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    csv = (
        "Phone,Note\r\n(212) 555-0100,a\r\n+1 415 555 0123,b\r\nn/a,c\r\n212.555.0100,dup\r\n,empty\r\n"
        "+44 20 7946 0958,d\r\n"
    )
    url = "/api/suppressions/import?channel=phone&column=Phone&reason=client%20DNC"
    response = await client.post(url, data=csv.encode(), headers={**manager, "Content-Type": "text/csv"})
    assert response.status == 202, await response.text()
    job = await _finished_import(client, manager, (await response.json())["id"])
    assert job["status"] == "completed", job
    assert (job["rows_read"], job["rows_inserted"], job["rows_rejected"]) == (6, 3, 2)
    rejects = await (await client.get(f"/api/imports/{job['id']}/rejects", headers=manager)).text()
    assert "4,Phone,n/a,not a phone number\r\n" in rejects  # physical lines: the header is line 1
    assert "6,Phone,,empty" in rejects
    for number in ("12125550100", "14155550123", "442079460958"):
        started = time.perf_counter()
        while True:
            check_url = f"/api/suppressions/check?channel=phone&value=%2B{number}"
            check = await (await client.get(check_url, headers=manager)).json()
            if check["in_memory_scopes"] == ["global"] or time.perf_counter() - started > 2:
                break
            await asyncio.sleep(0.01)
        assert check["in_memory_scopes"] == ["global"], number
    again = await client.post(url, data=csv.encode(), headers={**manager, "Content-Type": "text/csv"})
    repeat = await _finished_import(client, manager, (await again.json())["id"])
    assert (repeat["rows_inserted"], repeat["rows_updated"], repeat["rows_unchanged"]) == (0, 0, 3)
    national = await client.post("/api/suppressions/import?channel=phone&country=GB", data=b"020 7946 0959\n",
                                 headers={**manager, "Content-Type": "text/csv"})  # fmt: skip
    assert (await _finished_import(client, manager, (await national.json())["id"]))["rows_inserted"] == 1
    uk = await client.post("/api/suppressions", json={"channel": "phone", "value": "020 7946 0960", "country": "GB"},
                           headers=manager)  # fmt: skip
    assert (await uk.json())["value"] == "+442079460960"
    plain = await client.post("/api/suppressions/import?channel=email", data=b"Ann@Acme.com\nbob@globex.com\n",
                              headers={**manager, "Content-Type": "text/plain"})  # fmt: skip
    listed = await _finished_import(client, manager, (await plain.json())["id"])
    assert listed["rows_inserted"] == 2, "no header: the first line is a value"
    refused = await client.post("/api/suppressions/import?channel=phone&scope=campaign", data=b"x",
                                headers={**manager, "Content-Type": "text/csv"})  # fmt: skip
    assert refused.status == 422


async def test_renewals_never_shorten_an_entry_in_force(
    client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool
) -> None:
    """A permanent unsubscribe stays permanent whatever a later list or request says; expiries only lengthen."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    async with compliance_db.acquire() as conn:
        await suppressions.add(conn, SYSTEM, channel="email", value="ann@acme.com", source="unsubscribe", reason="link")
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=5)).isoformat()
    renewed = await (await client.post("/api/suppressions", json={"channel": "email", "value": "ann@acme.com",
                                                                 "expires_at": soon, "reason": "temp"},
                                       headers=manager)).json()  # fmt: skip
    assert (renewed["expires_at"], renewed["source"], renewed["reason"]) == (None, "unsubscribe", "link")
    url = f"/api/suppressions/import?channel=email&expires_at={later.replace('+', '%2B')}"
    response = await client.post(url, data=b"ann@acme.com\n", headers={**manager, "Content-Type": "text/plain"})
    job = await _finished_import(client, manager, (await response.json())["id"])
    assert (job["rows_updated"], job["rows_unchanged"]) == (0, 1)
    row = await compliance_db.fetchrow("SELECT expires_at, source FROM suppressions WHERE value = 'ann@acme.com'")
    assert (row["expires_at"], row["source"]) == (None, "unsubscribe")

    async def post(body: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await (await client.post("/api/suppressions", json=body, headers=manager)).json()
        return answer

    number = {"channel": "phone", "value": "+14155550126"}
    first = await post({**number, "expires_at": later})
    shorter = await post({**number, "expires_at": soon})
    assert shorter["expires_at"] == first["expires_at"], "the later expiry wins"
    forever = await post(number)
    assert forever["expires_at"] is None, "a permanent request makes it permanent"


async def test_rules_that_look_beyond_the_contact_and_campaign(
    client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool
) -> None:
    """A company suppression covers an account-less contact through its address; the multi-line rule looks at the
    account; the UK abandon lock protects the number whichever campaign abandoned it."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    await compliance_db.execute(
        """INSERT INTO campaigns (id, name, channel, calling_window, abandon_rule) OVERRIDING SYSTEM VALUE
           VALUES (3, 'UK', 'phone', $1, 'uk_ofcom')""",
        ALWAYS_OPEN,
    )
    await compliance_db.execute(
        """INSERT INTO contacts (id, account_id, first_name, email, phone_e164, timezone) OVERRIDING SYSTEM VALUE
           VALUES (3, 1, 'Cy', 'cy@acme.com', '+12125550111', 'America/New_York'),
                  (4, NULL, 'Di', 'di@mail.initech.io', '+12125550112', 'America/New_York')"""
    )
    await client.post("/api/suppressions", json={"channel": "domain", "value": "initech.io"}, headers=manager)
    check = await (await client.get("/api/suppressions/check?channel=email&value=x@mail.initech.io",
                                    headers=manager)).json()  # fmt: skip
    assert check["suppressed"] is True
    assert [entry["value"] for entry in check["entries"]] == ["initech.io"]

    async def codes(contact_id: int, campaign_id: int) -> list[str]:
        url = f"/api/compliance/decision?contact_id={contact_id}&campaign_id={campaign_id}"
        decision = await (await client.get(url, headers=manager)).json()
        return [reason["code"] for reason in decision["reasons"]]

    started = time.perf_counter()
    while "suppressed_domain_global" not in await codes(4, 1):
        assert time.perf_counter() - started < 1
        await asyncio.sleep(0.01)

    # Ann (contact 1) is on a live call at Acme: Cy, another line of Acme, must wait.
    await compliance_db.execute(
        """INSERT INTO call_attempts (campaign_id, contact_id, account_id, attempt_number, to_e164, from_e164,
                                      dial_command_id, state, answered_at)
           VALUES (1, 1, 1, 1, '+12125550100', '+12125550199', 'live', 'bridged', now())"""
    )
    assert await codes(3, 1) == ["account_line_busy"]
    settings = await (await client.get("/api/campaigns/1/compliance", headers=manager)).json()
    relaxed = await client.put("/api/campaigns/1/compliance", json={**settings, "one_call_per_account": False},
                               headers=manager)  # fmt: skip
    assert relaxed.status == 200
    assert await codes(3, 1) == []
    assert "line_busy" in await codes(1, 1), "never two calls to one number"

    # Campaign 1 abandoned a call to Bob's number yesterday; the UK campaign may not call it for 72 hours.
    await compliance_db.execute(
        """INSERT INTO call_attempts (campaign_id, contact_id, attempt_number, to_e164, from_e164, dial_command_id,
                                      state, answered_at, ended_at, abandoned, created_at)
           VALUES (1, 2, 1, '+442079460958', '+12125550199', 'abandoned', 'abandoned', now() - interval '1 day',
                   now() - interval '1 day', true, now() - interval '1 day')"""
    )
    assert "abandon_lockout" in await codes(2, 3)
    assert "abandon_lockout" not in await codes(2, 1), "the US rule has no lock unless switched on"


async def test_hostile_input_is_refused_with_422(
    client: Any, tokens: dict[Role, str], compliance_db: asyncpg.Pool
) -> None:
    """Values PostgreSQL cannot hold (NUL, ids past bigint, times past its range) are refused at the edge."""
    import base64
    import json

    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    phone = {"channel": "phone", "value": "+12125550100"}
    for body in [
        {**phone, "reason": "a\u0000b"},
        {**phone, "detail": {"k": "\u0000"}},
        {**phone, "scope": "campaign", "campaign_id": 2**63},
        {**phone, "expires_at": "9999-12-31T23:59:59-14:00"},
        {**phone, "expires_at": "2030-01-01T00:00:00"},
    ]:
        response = await client.post("/api/suppressions", json=body, headers=manager)
        assert response.status == 422, (body, await response.text())
    cursor = base64.urlsafe_b64encode(json.dumps({"after": 2**70}).encode()).decode()
    for url in [
        "/api/suppressions?value=%2B1%00",
        f"/api/suppressions?campaign_id={2**63}",
        f"/api/suppressions?cursor={cursor}",
        f"/api/compliance/decision?contact_id={2**63}&campaign_id=1",
        "/api/suppressions/check?channel=phone&value=%00",
    ]:
        response = await client.get(url, headers=manager)
        assert response.status == 422, (url, await response.text())
    consent = {"channel": "phone", "status": "withdrawn", "recorded_at": "0001-01-01T00:00:00+05:00"}
    assert (await client.post("/api/contacts/1/consents", json=consent, headers=manager)).status == 422
    nul_proof = {"channel": "phone", "status": "granted", "proof_text": "\u0000"}
    assert (await client.post("/api/contacts/1/consents", json=nul_proof, headers=manager)).status == 422
    settings = await (await client.get("/api/campaigns/1/compliance", headers=manager)).json()
    newline = {**settings, "calling_window": {"mon": [["08:00\n", "09:00"]]}}
    assert (await client.put("/api/campaigns/1/compliance", json=newline, headers=manager)).status == 422
    upload = await client.post("/api/suppressions/import?channel=phone&reason=%00", data=b"+12125550100\n",
                               headers={**manager, "Content-Type": "text/csv"})  # fmt: skip
    assert upload.status == 422
    assert await compliance_db.fetchval("SELECT count(*) FROM suppressions") == 0, "nothing stored"


async def test_a_batch_of_targets_matches_one_by_one(compliance_db: asyncpg.Pool) -> None:
    """The hopper's batch gathers what the explanation gathers for one contact: the same targets."""
    from crm.compliance.facts import phone_targets

    await compliance_db.execute(
        """INSERT INTO call_attempts (campaign_id, contact_id, account_id, attempt_number, to_e164, from_e164,
                                      dial_command_id, state, answered_at, ended_at, abandoned, created_at)
           VALUES (1, 1, 1, 1, '+12125550100', '+12125550199', 'b1', 'completed', now() - interval '2 hours',
                   now() - interval '2 hours', false, now() - interval '2 hours'),
                  (1, 1, 1, 2, '+12125550100', '+12125550199', 'b2', 'abandoned', now() - interval '1 hour',
                   now() - interval '1 hour', true, now() - interval '1 hour')"""
    )
    now = datetime.now(UTC)
    async with compliance_db.acquire() as conn:
        batch = await phone_targets(conn, 1, [1, 2, 999_999], now, None)
        singles = {cid: (await phone_targets(conn, 1, [cid], now, None))[cid] for cid in (1, 2)}
    assert batch == singles, "a missing contact is left out; the others are the same either way"
    ann = batch[1].history
    assert (ann.total, ann.last_outcome) == (2, "abandoned")
    assert ann.last_abandoned_at is not None
    assert (batch[2].history.total, batch[2].history.last_outcome) == (0, None)
