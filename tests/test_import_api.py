"""The import API over real HTTP: upload, suggested mapping, start, progress, rejects, cancel, refusals."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from tests.conftest import AppFactory, bearer, login

CSV = (
    "E-mail,Phone Number,Name,Company,Website,Notes\r\n"
    'ann@acme.com,(415) 692-7213,Ann Lee,Acme,acme.com,=HYPERLINK("x")\r\n'
    "no-at-sign,nope,Bad Row,Acme,acme.com,\r\n"
    "bob@globex.co.uk,+44 20 7946 0958,Bob Stone,Globex,https://www.globex.co.uk/,\r\n"
)


@pytest.fixture
async def audience(client: Any, clean_db: asyncpg.Pool) -> Any:
    await clean_db.execute(
        "TRUNCATE contacts, accounts, import_jobs, import_rejects, record_sources, list_members, static_lists CASCADE"
    )
    return client


async def _upload(client: Any, token: str, body: bytes | str = CSV, **query: str) -> Any:
    return await client.post(
        "/api/imports/contacts",
        params={"file_name": "leads.csv", **query},
        data=body.encode() if isinstance(body, str) else body,
        headers={**bearer(token), "Content-Type": "text/csv"},
    )


async def _wait(client: Any, token: str, job_id: int) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            job = await (await client.get(f"/api/imports/{job_id}", headers=bearer(token))).json()
            if job["status"] not in ("pending", "running"):
                return job  # type: ignore[no-any-return]
            await asyncio.sleep(0.05)


async def test_upload_start_follow_and_download_rejects(
    audience: Any, tokens: dict[Role, str], clean_db: asyncpg.Pool
) -> None:
    """A campaign manager uploads, sees the suggestion, starts with a list; a supervisor follows it."""
    manager = tokens[Role.CAMPAIGN_MANAGER]
    response = await _upload(audience, manager)
    assert response.status == 201
    upload = await response.json()
    assert (upload["encoding"], upload["delimiter"]) == ("utf-8", ",")
    assert upload["header"][:3] == ["E-mail", "Phone Number", "Name"]
    assert upload["job"]["status"] == "pending"
    assert upload["job"]["column_mapping"]["E-mail"] == "email"
    assert upload["job"]["column_mapping"]["Notes"] is None
    assert len(upload["sample"]) == 3
    job_id = upload["job"]["id"]

    mapping = {**upload["job"]["column_mapping"], "Notes": "custom.notes"}
    started = await audience.post(
        f"/api/imports/{job_id}/start", json={"mapping": mapping, "list": "Webinar"}, headers=bearer(manager)
    )
    assert started.status == 202
    job = await _wait(audience, tokens[Role.SUPERVISOR], job_id)
    assert job["status"] == "completed"
    assert (job["rows_read"], job["rows_inserted"], job["rows_rejected"], job["rows_merged"]) == (3, 2, 1, 0)
    assert await clean_db.fetchval("SELECT count(*) FROM list_members") == 2
    notes = await clean_db.fetchval("SELECT custom_fields->>'notes' FROM contacts WHERE email = 'ann@acme.com'")
    assert notes == '=HYPERLINK("x")'

    rejects = await audience.get(f"/api/imports/{job_id}/rejects", headers=bearer(manager))
    assert rejects.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await rejects.text())))
    assert rows[0] == ["line", "column", "value", "reason"]
    assert rows[1][0] == "3"
    assert "no valid e-mail or phone" in rows[1][3]

    again = await audience.post(f"/api/imports/{job_id}/start", json={}, headers=bearer(manager))
    assert again.status == 409
    listed = await (await audience.get("/api/imports", headers=bearer(manager))).json()
    assert [item["id"] for item in listed["items"]] == [job_id]


async def test_bad_uploads_are_refused_clearly(audience: Any, tokens: dict[Role, str]) -> None:
    """Wrong content type 415, empty 422, broken header 422, bad mapping 422 naming the problem."""
    manager = tokens[Role.CAMPAIGN_MANAGER]
    wrong = await audience.post(
        "/api/imports/contacts", data=b"{}", headers={**bearer(manager), "Content-Type": "application/json"}
    )
    assert wrong.status == 415
    assert (await _upload(audience, manager, b"")).status == 422
    broken = await _upload(audience, manager, 'a,"b\r\n1,2\r\n')
    assert broken.status == 422
    assert "line 1" in (await broken.json())["detail"]
    upload = await (await _upload(audience, manager, "Name,Colour\r\nAnn,blue\r\n")).json()
    start = await audience.post(f"/api/imports/{upload['job']['id']}/start", json={}, headers=bearer(manager))
    assert start.status == 422
    assert "email or phone" in (await start.json())["detail"]
    bad_field = await audience.post(
        f"/api/imports/{upload['job']['id']}/start", json={"mapping": {"Name": "salary"}}, headers=bearer(manager)
    )
    assert bad_field.status == 422
    assert "'salary' is not a field" in (await bad_field.json())["detail"]


async def test_upload_size_is_bounded(
    make_client: AppFactory, role_users: Any, clean_db: asyncpg.Pool, tmp_path: Path
) -> None:
    """A file over audience.max_import_bytes is refused with 413; no job and no file are kept."""
    client = await make_client(audience={"max_import_bytes": 2048})
    token = await login(client, "admin@test.example")
    jobs_before = await clean_db.fetchval("SELECT count(*) FROM import_jobs")
    response = await _upload(client, token, CSV * 40)
    assert response.status == 413
    assert await clean_db.fetchval("SELECT count(*) FROM import_jobs") == jobs_before
    assert list((tmp_path / "imports").iterdir()) == []


async def test_cancel_a_pending_import(audience: Any, tokens: dict[Role, str]) -> None:
    """A pending import can be cancelled; then it cannot be started."""
    manager = tokens[Role.CAMPAIGN_MANAGER]
    upload = await (await _upload(audience, manager)).json()
    job_id = upload["job"]["id"]
    cancelled = await audience.post(f"/api/imports/{job_id}/cancel", headers=bearer(manager))
    assert (await cancelled.json())["status"] == "cancelled"
    start = await audience.post(f"/api/imports/{job_id}/start", json={}, headers=bearer(manager))
    assert start.status == 409
