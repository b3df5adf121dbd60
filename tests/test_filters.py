"""The segment filter language: compilation tables, refusals naming the offending part, SQL injection attempts,
and evaluation against real PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crm.audience.filters import FilterError, compile_filter
from crm.audience.segments import preview
from crm.roles import Role
from tests.conftest import bearer


@pytest.mark.parametrize(
    ("node", "sql", "params"),
    [
        ({"field": "contact.email", "op": "ends_with", "value": "@ACME.com"},
         "right(lower(c.email), length($1)) = $1", ["@acme.com"]),
        ({"field": "account.employee_count", "op": "between", "value": [10, 500]},
         "a.employee_count BETWEEN $1::numeric AND $2::numeric", [10, 500]),
        ({"field": "contact.job_title", "op": "is_empty"}, "(c.job_title IS NULL OR c.job_title = '')", []),
        ({"field": "contact.custom.tier", "op": "equals", "value": "Gold"},
         "lower((c.custom_fields ->> $1)) = $2", ["tier", "gold"]),
        ({"any": [{"field": "contact.country", "op": "in", "value": ["GB", "IE"]},
                  {"field": "account.name", "op": "contains", "value": "bank"}]},
         "(lower(c.country) = ANY($1::text[]) OR strpos(lower(a.name), $2) > 0)", [["gb", "ie"], "bank"]),
    ],
)  # fmt: skip
def test_compilation(node: dict[str, Any], sql: str, params: list[Any]) -> None:
    """Each operator compiles to the expected SQL, values only as bind parameters."""
    compiled = compile_filter(node)
    assert compiled.sql == sql
    assert compiled.params == params


@pytest.mark.parametrize(
    ("node", "path", "message"),
    [
        ({"field": "contact.email; DROP TABLE contacts", "op": "equals", "value": "x"}, "filter.field",
         "unknown field"),
        ({"field": "c.email", "op": "equals", "value": "x"}, "filter.field", "unknown field"),
        ({"field": "contact.custom.a-b' OR 1=1", "op": "equals", "value": "x"}, "filter.field", "unknown field"),
        ({"field": "contact.email", "op": "= 'x' OR 1=1 --", "value": "x"}, "filter.op", "is not an operator"),
        ({"field": "contact.email", "op": "gt", "value": "x"}, "filter.op", "is not an operator"),
        ({"field": "account.employee_count", "op": "gt", "value": "5; DROP TABLE x"}, "filter.value", "number"),
        ({"field": "contact.created_at", "op": "before", "value": "yesterday"}, "filter.value", "ISO 8601"),
        ({"field": "contact.created_at", "op": "before", "value": "0001-01-01T00:00:00+01:00"}, "filter.value",
         "outside the years"),
        ({"field": "contact.created_at", "op": "after", "value": "9999-12-31T23:59:59-05:00"}, "filter.value",
         "outside the years"),
        ({"field": "list", "op": "in", "value": ["1 OR 1=1"]}, "filter.value[0]", "list id"),
        ({"field": "contact.email", "op": "in", "value": []}, "filter.value", "non-empty list"),
        ({"field": "account.employee_count", "op": "between", "value": [1]}, "filter.value", "two values"),
        ({"field": "contact.email", "op": "is_empty", "value": "x"}, "filter.value", "takes no value"),
        ({"all": []}, "filter.all", "non-empty list"),
        ({"all": [{"field": "contact.email", "op": "equals"}]}, "filter.all[0].value", "is required"),
        ({"all": [{"any": [{"field": "x", "op": "equals", "value": 1}]}]}, "filter.all[0].any[0].field", "unknown"),
        ({"and": []}, "filter", "must be"),
        ({"field": "contact.email", "op": "equals", "value": "x", "sql": "1=1"}, "filter", "unknown keys"),
        ([], "filter", "must be an object"),
    ],
)  # fmt: skip
def test_refusals_name_the_offending_part(node: Any, path: str, message: str) -> None:
    """Anything outside the whitelist is refused, and the error says exactly where."""
    with pytest.raises(FilterError) as caught:
        compile_filter(node)
    assert caught.value.path == path
    assert message in caught.value.message


def test_nesting_and_size_are_bounded() -> None:
    """Deep nesting and huge filters are refused instead of building enormous SQL."""
    deep: dict[str, Any] = {"field": "contact.email", "op": "is_empty"}
    for _ in range(8):
        deep = {"all": [deep]}
    with pytest.raises(FilterError, match="nest deeper"):
        compile_filter(deep)
    wide = {"any": [{"field": "contact.email", "op": "is_empty"}] * 101}
    with pytest.raises(FilterError, match="more than 100 conditions"):
        compile_filter(wide)


@pytest.fixture
async def sample(clean_db: asyncpg.Pool, tmp_path: Path) -> asyncpg.Pool:
    pool = clean_db
    await pool.execute("TRUNCATE contacts, accounts, list_members, static_lists, segments CASCADE")
    await pool.execute(
        """INSERT INTO accounts (id, name, domain, employee_count, custom_fields) OVERRIDING SYSTEM VALUE VALUES
             (1, 'Acme Bank', 'acme.com', 250, '{"tier": "gold"}'),
             (2, 'Globex', 'globex.co.uk', 40, '{}')"""
    )
    await pool.execute(
        """INSERT INTO contacts (id, account_id, first_name, last_name, job_title, email, country, custom_fields,
                                 created_at)
           OVERRIDING SYSTEM VALUE VALUES
             (1, 1, 'Ann', 'Lee', 'CFO', 'ann@acme.com', 'US', '{"tier": "Gold"}', '2026-01-10'),
             (2, 1, 'Bob', 'O''Brien', '', 'bob@acme.com', 'IE', '{}', '2026-03-01'),
             (3, 2, 'Cara', 'Jones', 'CEO', 'cara@globex.co.uk', 'GB', '{}', '2026-05-01'),
             (4, NULL, 'Dan', 'Brown', 'Buyer', NULL, 'US', '{}', '2026-06-01')"""
    )
    await pool.execute("INSERT INTO static_lists (id, name) OVERRIDING SYSTEM VALUE VALUES (7, 'VIP')")
    await pool.execute("INSERT INTO list_members (list_id, contact_id) VALUES (7, 3)")
    for table in ("accounts", "contacts", "static_lists"):
        await pool.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    return pool


@pytest.mark.parametrize(
    ("node", "ids"),
    [
        ({"field": "contact.email", "op": "ends_with", "value": "@ACME.COM"}, [1, 2]),
        ({"field": "contact.job_title", "op": "is_empty"}, [2]),
        ({"field": "contact.email", "op": "is_empty"}, [4]),
        ({"field": "account.employee_count", "op": "gte", "value": 100}, [1, 2]),
        ({"field": "account.name", "op": "not_contains", "value": "bank"}, [3, 4]),
        ({"field": "contact.last_name", "op": "equals", "value": "o'brien"}, [2]),
        ({"field": "contact.country", "op": "not_in", "value": ["US"]}, [2, 3]),
        ({"field": "contact.created_at", "op": "between", "value": ["2026-02-01", "2026-05-31"]}, [2, 3]),
        ({"field": "contact.created_at", "op": "after", "value": "2026-05-01T00:00:00+00:00"}, [4]),
        ({"field": "contact.custom.tier", "op": "equals", "value": "gold"}, [1]),
        ({"field": "account.custom.tier", "op": "is_not_empty"}, [1, 2]),
        ({"field": "list", "op": "in", "value": [7]}, [3]),
        ({"field": "list", "op": "not_in", "value": [7]}, [1, 2, 4]),
        ({"field": "activity.call_attempts", "op": "equals", "value": 0}, [1, 2, 3, 4]),
        ({"field": "activity.last_called_at", "op": "is_empty"}, [1, 2, 3, 4]),
        ({"all": [{"field": "account.domain", "op": "equals", "value": "acme.com"},
                  {"any": [{"field": "contact.job_title", "op": "starts_with", "value": "cf"},
                           {"field": "contact.country", "op": "equals", "value": "ie"}]}]}, [1, 2]),
        ({"field": "contact.first_name", "op": "equals", "value": "x' OR '1'='1"}, []),
        ({"field": "contact.first_name", "op": "contains", "value": "%"}, []),
    ],
)  # fmt: skip
async def test_evaluation(sample: asyncpg.Pool, node: dict[str, Any], ids: list[int]) -> None:
    """Filters select exactly the expected contacts; injection-shaped values are just strings."""
    count, rows = await preview(sample, node, limit=10)
    assert [row.id for row in rows] == ids
    assert count == len(ids)
    assert await sample.fetchval("SELECT count(*) FROM contacts") == 4


async def test_segment_api_round_trip(client: Any, tokens: dict[Role, str], sample: asyncpg.Pool) -> None:
    """Preview, save, read, snapshot into a list, delete; a bad filter is a 422 naming its part."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    condition = {"field": "contact.email", "op": "ends_with", "value": "@acme.com"}
    preview_response = await client.post("/api/segments/preview", json={"filter": condition}, headers=manager)
    body = await preview_response.json()
    assert body["count"] == 2
    assert [c["id"] for c in body["items"]] == [1, 2]
    assert body["items"][0]["account_name"] == "Acme Bank"

    bad = await client.post(
        "/api/segments/preview",
        json={"filter": {"all": [{"field": "contact.email", "op": "LIKE", "value": "%"}]}},
        headers=manager,
    )
    assert bad.status == 422
    problem = await bad.json()
    assert problem["detail"].startswith("filter.all[0].op:")

    created = await client.post("/api/segments", json={"name": "Acme people", "filter": condition}, headers=manager)
    assert created.status == 201
    segment = await created.json()
    duplicate = await client.post("/api/segments", json={"name": "ACME PEOPLE", "filter": condition}, headers=manager)
    assert duplicate.status == 409
    snap = await client.post(f"/api/segments/{segment['id']}/snapshot", json={"list": "Acme list"}, headers=manager)
    assert (await snap.json())["added"] == 2
    again = await client.post(f"/api/segments/{segment['id']}/snapshot", json={"list": "Acme list"}, headers=manager)
    assert (await again.json())["added"] == 0
    read = await (await client.get(f"/api/segments/{segment['id']}", headers=manager)).json()
    assert read["last_count"] == 2
    assert (await client.delete(f"/api/segments/{segment['id']}", headers=manager)).status == 204
    assert (await client.get(f"/api/segments/{segment['id']}", headers=manager)).status == 404


async def test_exports_stream_csv_with_formulas_neutralised(
    client: Any, tokens: dict[Role, str], sample: asyncpg.Pool
) -> None:
    """Contacts (all, by list, by segment, by filter) and accounts export as RFC 4180 CSV; formulas defused."""
    import csv
    import io

    await sample.execute("UPDATE contacts SET job_title = '=cmd|calc' WHERE id = 4")
    supervisor = bearer(tokens[Role.SUPERVISOR])

    async def rows(response: Any) -> list[dict[str, str]]:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv"
        assert response.headers["X-Request-ID"]
        return list(csv.DictReader(io.StringIO(await response.text())))

    everyone = await rows(await client.get("/api/contacts/export", headers=supervisor))
    assert [r["id"] for r in everyone] == ["1", "2", "3", "4"]
    assert everyone[3]["job_title"] == "'=cmd|calc"
    assert everyone[0]["account_name"] == "Acme Bank"
    assert everyone[0]["custom_fields"] == '{"tier": "Gold"}'
    listed = await rows(await client.get("/api/contacts/export?list_id=7", headers=supervisor))
    assert [r["id"] for r in listed] == ["3"]
    condition = {"field": "contact.country", "op": "in", "value": ["US", "IE"]}
    filtered = await rows(await client.post("/api/contacts/export", json={"filter": condition}, headers=supervisor))
    assert [r["id"] for r in filtered] == ["1", "2", "4"]
    segment = await (
        await client.post(
            "/api/segments", json={"name": "US", "filter": condition}, headers=bearer(tokens[Role.CAMPAIGN_MANAGER])
        )
    ).json()
    by_segment = await rows(
        await client.get(f"/api/contacts/export?segment_id={segment['id']}&list_id=7", headers=supervisor)
    )
    assert by_segment == []
    accounts = await rows(await client.get("/api/accounts/export", headers=supervisor))
    assert [(a["id"], a["domain"]) for a in accounts] == [("1", "acme.com"), ("2", "globex.co.uk")]
    assert (await client.get("/api/contacts/export?segment_id=999999", headers=supervisor)).status == 404
    bad = await client.post("/api/contacts/export", json={"filter": {"field": "x"}}, headers=supervisor)
    assert bad.status == 422


async def test_lists_api(client: Any, tokens: dict[Role, str], sample: asyncpg.Pool) -> None:
    """Create a list, add by ids and by filter (all matches), remove, page members, counts, delete."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    created = await client.post("/api/lists", json={"name": "Q4 push"}, headers=manager)
    assert created.status == 201
    list_id = (await created.json())["id"]
    assert (await client.post("/api/lists", json={"name": "q4 PUSH"}, headers=manager)).status == 409
    base = f"/api/lists/{list_id}/members"

    by_ids = await client.post(base, json={"contact_ids": [1, 1, 999]}, headers=manager)
    assert await by_ids.json() == {"changed": 1, "member_count": 1}
    by_filter = await client.post(
        base, json={"filter": {"field": "contact.country", "op": "in", "value": ["US", "GB"]}}, headers=manager
    )
    assert await by_filter.json() == {"changed": 2, "member_count": 3}
    both = await client.post(base, json={"contact_ids": [1], "filter": {"all": []}}, headers=manager)
    assert both.status == 422
    bad_filter = await client.post(base, json={"filter": {"field": "nope"}}, headers=manager)
    assert bad_filter.status == 422

    first = await (await client.get(f"{base}?limit=2", headers=manager)).json()
    second = await (await client.get(f"{base}?limit=2&cursor={first['next_cursor']}", headers=manager)).json()
    assert [c["id"] for c in first["items"] + second["items"]] == [1, 3, 4]
    assert second["next_cursor"] is None

    removed = await client.post(f"{base}/remove", json={"contact_ids": [3, 2]}, headers=manager)
    assert await removed.json() == {"changed": 1, "member_count": 2}
    listed = await (await client.get("/api/lists", headers=bearer(tokens[Role.SUPERVISOR]))).json()
    assert {(item["name"], item["member_count"]) for item in listed["items"]} == {("Q4 push", 2), ("VIP", 1)}
    assert (await client.delete(f"/api/lists/{list_id}", headers=manager)).status == 204
    assert (await client.get(base, headers=manager)).status == 404


@pytest.mark.parametrize(
    ("q", "interpreted", "accounts", "contacts"),
    [
        ("ann", ["name"], [], [1]),
        ("o'brien", ["name"], [], [2]),
        ("Acme", ["name"], [1], []),
        ("ann@ac", ["e-mail"], [], [1]),
        ("https://www.acme.com/contact", ["domain acme.com"], [1], [1, 2]),
        ("@globex.co.uk", ["domain globex.co.uk"], [2], [3]),
        ("+44 20 7946 0958", ["phone +442079460958"], [], [3]),
        ("(020) 7946-0958", ["name"], [], []),  # not a valid number in the default region (US): words
        ("%_%", ["name"], [], []),
    ],
)
async def test_global_search(
    client: Any,
    tokens: dict[Role, str],
    sample: asyncpg.Pool,
    q: str,
    interpreted: list[str],
    accounts: list[int],
    contacts: list[int],
) -> None:
    """One box finds people and companies by name, e-mail, phone in any format, or domain."""
    await sample.execute("UPDATE contacts SET phone_e164 = '+442079460958' WHERE id = 3")
    await sample.execute(
        "INSERT INTO accounts (name, domain, registrable_domain) VALUES ('Kangaroo Pty', 'acme.com.au', 'acme.com.au')"
    )
    response = await client.get("/api/search", params={"q": q}, headers=bearer(tokens[Role.SUPERVISOR]))
    assert response.status == 200
    body = await response.json()
    assert body["interpreted_as"] == interpreted
    assert [a["id"] for a in body["accounts"]] == accounts
    assert [c["id"] for c in body["contacts"]] == contacts


async def test_bulk_update_and_delete(client: Any, tokens: dict[Role, str], sample: asyncpg.Pool) -> None:
    """A field set across every filter match in one go, only differing rows written; soft delete hides contacts."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    acme = {"field": "account.domain", "op": "equals", "value": "acme.com"}
    before = await sample.fetchval("SELECT updated_at FROM contacts WHERE id = 3")
    response = await client.post(
        "/api/contacts/bulk-update", json={"filter": acme, "field": "job_title", "value": "Buyer"}, headers=manager
    )
    assert await response.json() == {"matched": 2, "changed": 2}
    again = await client.post(
        "/api/contacts/bulk-update", json={"filter": acme, "field": "job_title", "value": "Buyer"}, headers=manager
    )
    assert await again.json() == {"matched": 2, "changed": 0}
    assert await sample.fetchval("SELECT updated_at FROM contacts WHERE id = 3") == before
    custom = await client.post(
        "/api/contacts/bulk-update",
        json={"contact_ids": [1, 4], "field": "custom.tier", "value": "silver"},
        headers=manager,
    )
    assert await custom.json() == {"matched": 2, "changed": 2}
    detail = await (await client.get("/api/contacts/1", headers=manager)).json()
    assert detail["custom_fields"] == {"tier": "silver"}
    assert detail["job_title"] == "Buyer"
    assert detail["field_sources"]["custom_fields"] == detail["last_source_id"]
    assert detail["field_sources"]["job_title"] < detail["last_source_id"], "set by the earlier bulk update"
    for body, message in (
        ({"contact_ids": [1], "field": "email", "value": "x@y.z"}, "cannot be bulk-updated"),
        ({"contact_ids": [1], "field": "country", "value": "XX"}, "ISO 3166"),
        ({"contact_ids": [1], "field": "timezone", "value": "Mars/Base"}, "IANA"),
        ({"contact_ids": [1], "field": "custom.x'; DROP TABLE contacts; --", "value": "1"}, "cannot be bulk-updated"),
    ):
        refused = await client.post("/api/contacts/bulk-update", json=body, headers=manager)
        assert refused.status == 422
        assert message in (await refused.json())["detail"]

    everyone = await (await client.post("/api/lists", json={"name": "All"}, headers=manager)).json()
    await client.post(f"/api/lists/{everyone['id']}/members", json={"contact_ids": [1, 2, 3, 4]}, headers=manager)
    deleted = await client.post("/api/contacts/bulk-delete", json={"filter": acme}, headers=manager)
    assert await deleted.json() == {"deleted": 2}
    listed = await (await client.get(f"/api/lists/{everyone['id']}", headers=manager)).json()
    assert listed["member_count"] == 2, "deleted contacts leave the list's count"
    assert (await client.get("/api/contacts/1", headers=manager)).status == 404
    preview = await (await client.post("/api/segments/preview", json={"filter": acme}, headers=manager)).json()
    assert preview["count"] == 0
    assert await sample.fetchval("SELECT count(*) FROM contacts") == 4, "soft: rows stay"
    audit_actions = await sample.fetch("SELECT action FROM audit_log WHERE action LIKE 'contacts.bulk%' ORDER BY id")
    assert [r["action"] for r in audit_actions] == ["contacts.bulk_update"] * 3 + ["contacts.bulk_delete"]


@pytest.mark.parametrize(
    ("name", "folded"),
    [("Acme, Inc.", "acme"), ("The Globex Corporation", "globex"), ("Müller GmbH & Co. KG", "müller kg"), ("Co", "co")],
)
def test_company_names_fold(name: str, folded: str) -> None:
    """Case, punctuation and legal suffixes do not stop two spellings of a company from matching."""
    from crm.audience.domain_sets import fold_company_name

    assert fold_company_name(name) == folded


async def test_domain_sets_match_and_make_a_list(client: Any, tokens: dict[Role, str], sample: asyncpg.Pool) -> None:
    """Exact, alias, subdomain (ambiguous when shared), name fallback with confidence; invalid and duplicate
    entries reported; matched accounts' contacts become a list."""
    await sample.execute(
        """INSERT INTO accounts (id, name, domain, registrable_domain) OVERRIDING SYSTEM VALUE VALUES
             (3, 'Acme Bank Europe', 'eu.acme.com', 'acme.com'), (4, 'Initech Inc', 'initech.io', 'initech.io');
           UPDATE accounts SET registrable_domain = domain WHERE id IN (1, 2);"""
    )
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    alias = await client.post("/api/accounts/2/aliases", json={"domain": "https://Umbrella.com/"}, headers=manager)
    assert await alias.json() == {"domain": "umbrella.com", "added": True}
    created = await client.post("/api/domain-sets", json={"name": "Q1 targets"}, headers=manager)
    assert created.status == 201
    set_id = (await created.json())["id"]
    assert (await client.post("/api/domain-sets", json={"name": "q1 TARGETS"}, headers=manager)).status == 409
    upload = "\n".join(
        ["acme.com", "ACME.com", "https://www.globex.co.uk/", "umbrella.com", "sales.acme.com", "Initech",
         "Unknown Widgets Ltd", "acme.notatld", "# a comment", ""]
    )  # fmt: skip
    response = await client.post(
        f"/api/domain-sets/{set_id}/entries", data=upload, headers={**manager, "Content-Type": "text/plain"}
    )
    assert response.status == 200, await response.text()
    report = await response.json()
    assert (report["added"], report["duplicates"]) == (6, 1)
    assert [i["entry"] for i in report["invalid"]] == ["acme.notatld"]
    assert (report["matched"], report["ambiguous"], report["unmatched"]) == (4, 1, 1)

    items = (await (await client.get(f"/api/domain-sets/{set_id}/items", headers=manager)).json())["items"]
    by_entry = {i["entry"]: (i["match_status"], i["match_method"], i["confidence"], i["account_id"]) for i in items}
    assert by_entry["acme.com"] == ("matched", "exact", 1.0, 1)
    assert by_entry["https://www.globex.co.uk/"] == ("matched", "exact", 1.0, 2)
    assert by_entry["umbrella.com"] == ("matched", "alias", 0.95, 2)
    assert by_entry["sales.acme.com"] == ("ambiguous", "subdomain", None, None)
    assert by_entry["Initech"] == ("matched", "name", 0.9, 4)
    assert by_entry["Unknown Widgets Ltd"] == ("unmatched", None, None, None)
    ambiguous = [i for i in items if i["match_status"] == "ambiguous"][0]
    assert ambiguous["candidate_account_ids"] == [1, 3]

    made = await client.post(f"/api/domain-sets/{set_id}/to-list", json={"list": "ABM Q1"}, headers=manager)
    assert (await made.json())["added"] == 3  # Ann and Bob at Acme, Cara at Globex
    filtered = await (await client.get(f"/api/domain-sets/{set_id}/items?status=unmatched", headers=manager)).json()
    assert [i["entry"] for i in filtered["items"]] == ["Unknown Widgets Ltd"]


async def test_account_aliases(client: Any, tokens: dict[Role, str], sample: asyncpg.Pool) -> None:
    """Aliases are normalised, idempotent, never another live account's domain, audited, and removable."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    url = "/api/accounts/1/aliases"
    first = await client.post(url, json={"domain": "www.Acme-Bank.co.uk"}, headers=manager)
    assert first.status == 200, await first.text()
    assert await first.json() == {"domain": "acme-bank.co.uk", "added": True}
    again = await client.post(url, json={"domain": "http://acme-bank.co.uk/en"}, headers=manager)
    assert await again.json() == {"domain": "acme-bank.co.uk", "added": False}

    taken = await client.post(url, json={"domain": "globex.co.uk"}, headers=manager)
    assert taken.status == 422
    assert "already names account 2" in (await taken.json())["detail"]
    invalid = await client.post(url, json={"domain": "not a domain"}, headers=manager)
    assert invalid.status == 422
    assert (await invalid.json())["errors"][0]["loc"] == ["body", "domain"]
    other = await client.post("/api/accounts/2/aliases", json={"domain": "acme-bank.co.uk"}, headers=manager)
    assert other.status == 422, "one domain names one account"
    missing = await client.post("/api/accounts/999/aliases", json={"domain": "x.com"}, headers=manager)
    assert missing.status == 404

    supervisor = bearer(tokens[Role.SUPERVISOR])
    listed = await (await client.get(url, headers=supervisor)).json()
    assert [(a["domain"], a["registrable_domain"]) for a in listed["items"]] == [("acme-bank.co.uk", "acme-bank.co.uk")]
    assert (await client.post(url, json={"domain": "x.com"}, headers=supervisor)).status == 403

    assert (await client.delete(f"{url}/ACME-BANK.co.uk", headers=manager)).status == 204
    assert (await client.delete(f"{url}/acme-bank.co.uk", headers=manager)).status == 404
    assert (await (await client.get(url, headers=manager)).json())["items"] == []
    actions = await sample.fetch(
        "SELECT action, detail->>'domain' AS domain FROM audit_log WHERE entity_type = 'account' ORDER BY id"
    )
    assert [(row["action"], row["domain"]) for row in actions] == [
        ("account.alias_added", "acme-bank.co.uk"),
        ("account.alias_removed", "acme-bank.co.uk"),
    ]


async def test_accounts_and_contacts_one_at_a_time(client: Any, tokens: dict[Role, str], sample: asyncpg.Pool) -> None:
    """Create, read, update (only what differs, with provenance) and soft-delete, with the import's rules."""
    manager = bearer(tokens[Role.CAMPAIGN_MANAGER])
    created = await client.post(
        "/api/accounts",
        json={"name": "Hooli", "domain": "https://www.Hooli.xyz/about", "main_line": "+1 415 692 7213"},
        headers=manager,
    )
    assert created.status == 201
    account_id = (await created.json())["id"]
    account = await (await client.get(f"/api/accounts/{account_id}", headers=manager)).json()
    assert (account["domain"], account["main_line_e164"], account["contact_count"]) == (
        "hooli.xyz",
        "+14156927213",
        0,
    )
    nameless = await client.patch(f"/api/accounts/{account_id}", json={"name": None}, headers=manager)
    assert nameless.status == 422
    clash = await client.post("/api/accounts", json={"name": "Hooli 2", "domain": "hooli.xyz"}, headers=manager)
    assert clash.status == 409
    bad = await client.post("/api/accounts", json={"name": "X", "domain": "not a domain"}, headers=manager)
    assert bad.status == 422
    assert (await bad.json())["errors"][0]["loc"] == ["body", "domain"]

    contact = await client.post(
        "/api/contacts",
        json={"first_name": "Gavin", "email": "Gavin@Hooli.xyz", "phone": "(415) 692-7214", "account_id": account_id},
        headers=manager,
    )
    assert contact.status == 201
    contact_id = (await contact.json())["id"]
    for body, status in (
        ({"email": "gavin@hooli.xyz"}, 409),
        ({"phone": "12"}, 422),
        ({"first_name": "Nobody"}, 422),
        ({"email": "x@y.example", "account_id": 999999}, 422),
    ):
        response = await client.post("/api/contacts", json=body, headers=manager)
        assert response.status == status, body

    anonymous = await client.patch(f"/api/contacts/{contact_id}", json={"email": None, "phone": None}, headers=manager)
    assert anonymous.status == 422
    same = await client.patch(f"/api/contacts/{contact_id}", json={"first_name": "Gavin"}, headers=manager)
    assert await same.json() == {"changed_fields": 0}
    changed = await client.patch(
        f"/api/contacts/{contact_id}", json={"job_title": "CEO", "custom_fields": {"tier": "A"}}, headers=manager
    )
    assert await changed.json() == {"changed_fields": 2}
    detail = await (await client.get(f"/api/contacts/{contact_id}", headers=manager)).json()
    assert detail["email"] == "Gavin@hooli.xyz"
    assert detail["phone_e164"] == "+14156927214"
    assert detail["field_sources"]["job_title"] == detail["last_source_id"] != detail["source_id"]
    assert "first_name" not in detail["field_sources"]
    account = await (await client.get(f"/api/accounts/{account_id}", headers=manager)).json()
    assert account["contact_count"] == 1
    assert (await client.delete(f"/api/contacts/{contact_id}", headers=manager)).status == 204
    assert (await client.get(f"/api/contacts/{contact_id}", headers=manager)).status == 404
    assert (await client.patch(f"/api/contacts/{contact_id}", json={"job_title": "x"}, headers=manager)).status == 404
    listed = await (await client.get("/api/accounts?limit=500", headers=bearer(tokens[Role.SUPERVISOR]))).json()
    assert account_id in [a["id"] for a in listed["items"]]
    assert (await client.delete(f"/api/accounts/{account_id}", headers=manager)).status == 204
