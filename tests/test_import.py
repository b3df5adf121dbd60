"""Contact import against real PostgreSQL: upsert rules, de-duplication, re-import, broken files, rejects."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from crm.audience import import_jobs
from crm.audience.csv_reader import CsvFormatError
from crm.audience.importer import ImportCounts, plan_import, run_import_job
from crm.audit import SYSTEM

HEADER = "E-mail,Phone Number,First Name,Last Name,Company,Website,Country,Employees,Colour\n"
ROWS = [
    "ann@acme.com,(415) 692-7213,Ann,Lee,Acme,https://www.acme.com/,US,250,blue",
    "BOB@Acme.com,,Bob,Stone,Acme Inc,acme.com,US,,",  # same account by domain
    ",+44 20 7946 0958,Cara,Jones,Globex,globex.co.uk,GB,,red",  # phone identity
    "dan@initech.io,not a phone,Dan,Brown,Initech,,US,,",  # invalid phone kept with reason
    "broken-email,also broken,Eve,,Nowhere,,US,,",  # rejected: no identity
    "ann@acme.com,,Annie,,,,US,,green",  # duplicate in file: last non-empty wins
    'fay@umbrella.com,,"Fay, Jr.",Doe,Umbrella,umbrella.com,XX,many,',  # rejected: country, employees
]


def _write(tmp_path: Path, rows: list[str], name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


async def _run(pool: asyncpg.Pool, path: Path, workers: int | None = None) -> tuple[int, ImportCounts]:
    plan = plan_import(path)
    job_id, source_id = await import_jobs.create_job(
        pool, SYSTEM, entity="contacts", file_name=path.name, file_sha256=None, mapping=plan.mapping, options={}
    )
    counts = await run_import_job(pool, plan, job_id=job_id, source_id=source_id, region="US", workers=workers)
    return job_id, counts


@pytest.fixture
async def empty_audience(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await clean_db.execute(
        "TRUNCATE contacts, accounts, import_jobs, import_rejects, record_sources, list_members, static_lists CASCADE"
    )
    return clean_db


async def test_import_upserts_and_reports(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """Accounts by domain, contacts by e-mail else phone, in-file duplicates merged, rejects with line and column."""
    pool = empty_audience
    job_id, counts = await _run(pool, _write(tmp_path, ROWS))
    assert (counts.rows_read, counts.rows_inserted, counts.rows_rejected) == (7, 4, 2)
    job = await import_jobs.get_job(pool, job_id)
    assert job.status == "completed"
    assert job.rows_merged == 1

    ann = await pool.fetchrow("SELECT * FROM contacts WHERE lower(email) = 'ann@acme.com'")
    assert (ann["first_name"], ann["last_name"], ann["phone_e164"]) == ("Annie", "Lee", "+14156927213")
    assert ann["custom_fields"] == {}, "Colour is not mapped by the suggestion"
    bob = await pool.fetchrow("SELECT * FROM contacts WHERE email = 'BOB@acme.com'")
    assert bob["account_id"] == ann["account_id"], "one account for acme.com"
    account = await pool.fetchrow("SELECT * FROM accounts WHERE id = $1", ann["account_id"])
    assert (account["domain"], account["name"], account["employee_count"]) == ("acme.com", "Acme Inc", 250)
    cara = await pool.fetchrow("SELECT * FROM contacts WHERE phone_e164 = '+442079460958'")
    assert cara["email"] is None
    assert cara["phone_country"] == "GB"
    dan = await pool.fetchrow("SELECT * FROM contacts WHERE email = 'dan@initech.io'")
    assert dan["phone_e164"] is None
    assert dan["phone_original"] == "not a phone"
    assert dan["phone_invalid_reason"]
    assert dan["source_id"] is not None

    rejects = await import_jobs.rejects(pool, job_id)
    summary = [(r["line_number"], r["column_name"]) for r in rejects]
    assert summary == [(6, None), (8, "Country"), (8, "Employees")]
    assert "no valid e-mail or phone" in rejects[0]["reason"]


async def test_reimport_changes_nothing(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """The same file twice: every contact unchanged, no row rewritten."""
    pool = empty_audience
    path = _write(tmp_path, ROWS)
    await _run(pool, path)
    before = await pool.fetch("SELECT id, updated_at, field_sources FROM contacts ORDER BY id")
    accounts_before = await pool.fetch("SELECT id, updated_at FROM accounts ORDER BY id")
    _, counts = await _run(pool, path)
    assert (counts.rows_inserted, counts.rows_updated, counts.rows_unchanged) == (0, 0, 4)
    assert (counts.accounts_inserted, counts.accounts_updated) == (0, 0)
    assert await pool.fetch("SELECT id, updated_at, field_sources FROM contacts ORDER BY id") == before
    assert await pool.fetch("SELECT id, updated_at FROM accounts ORDER BY id") == accounts_before


async def test_second_file_updates_and_tracks_field_sources(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """A later file updates only the fields it changes and records which import set them; blanks erase nothing."""
    pool = empty_audience
    first_job, _ = await _run(pool, _write(tmp_path, ROWS))
    second_job, counts = await _run(pool, _write(tmp_path, ["ann@acme.com,,Ann,Lee-Smith,,,,,"], "update.csv"))
    assert (counts.rows_updated, counts.rows_inserted) == (1, 0)
    ann = await pool.fetchrow("SELECT * FROM contacts WHERE lower(email) = 'ann@acme.com'")
    assert (ann["first_name"], ann["last_name"], ann["phone_e164"]) == ("Ann", "Lee-Smith", "+14156927213")
    second_source = await pool.fetchval("SELECT id FROM record_sources WHERE import_job_id = $1", second_job)
    assert ann["field_sources"]["last_name"] == second_source
    assert ann["field_sources"]["first_name"] == second_source
    assert "phone_e164" not in ann["field_sources"]
    assert ann["last_source_id"] == second_source
    third_job, _ = await _run(pool, _write(tmp_path, ["zed@acme.com,,Zed,,Acme Corp,acme.com,US,9000,"], "acme.csv"))
    third_source = await pool.fetchval("SELECT id FROM record_sources WHERE import_job_id = $1", third_job)
    acme = await pool.fetchrow("SELECT * FROM accounts WHERE domain = 'acme.com'")
    assert (acme["name"], acme["employee_count"]) == ("Acme Corp", 9000)
    assert acme["field_sources"] == {"name": third_source, "employee_count": third_source}


async def test_broken_file_leaves_nothing_half_imported(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """An unterminated quote late in the file fails the job with its line; no contact or account is written."""
    pool = empty_audience
    rows = [f"user{i}@example.com,,User,{i},Co{i},co{i}.com,US,," for i in range(12_000)]
    rows.append('"late@example.com,,Broken,Row,,,US,,')
    path = _write(tmp_path, rows)
    with pytest.raises(CsvFormatError) as caught:
        await _run(pool, path)
    assert caught.value.line == 12_002
    job = await pool.fetchrow("SELECT status, error FROM import_jobs ORDER BY id DESC LIMIT 1")
    assert job["status"] == "failed"
    assert "line 12002" in job["error"]
    assert await pool.fetchval("SELECT count(*) FROM contacts") == 0
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_explicit_mapping_with_custom_fields(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """Custom fields for contacts and accounts land in custom_fields; later files add keys without erasing."""
    pool = empty_audience
    path = tmp_path / "custom.csv"
    path.write_text("Mail;Tier;Colour;Org\nzed@zeta.io;gold;blue;Zeta\n", encoding="utf-8")
    mapping = {"Mail": "email", "Tier": "account.custom.tier", "Colour": "custom.colour", "Org": "account.name"}
    plan = plan_import(path, mapping)
    assert plan.dialect.delimiter == ";"
    job_id, source_id = await import_jobs.create_job(
        pool, SYSTEM, entity="contacts", file_name=path.name, file_sha256=None, mapping=plan.mapping, options={}
    )
    await run_import_job(pool, plan, job_id=job_id, source_id=source_id, region="US")
    zed = await pool.fetchrow(
        """SELECT c.custom_fields AS c, a.custom_fields AS a, a.name
             FROM contacts c JOIN accounts a ON a.id = c.account_id"""
    )
    assert (zed["c"], zed["a"], zed["name"]) == ({"colour": "blue"}, {"tier": "gold"}, "Zeta")


async def test_worker_processes_give_the_same_result(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """Normalising in worker processes (as for large files) stores exactly what the in-process path stores."""
    pool = empty_audience
    rows = [
        f"user{i}@example.com,+1 415 692 {7000 + i % 1000},U{i},L,Co{i % 50},co{i % 50}.com,US,{i},x"
        for i in range(12_000)
    ]
    path = _write(tmp_path, [*ROWS, *rows])
    _, in_process = await _run(pool, path, workers=0)
    snapshot = await pool.fetch("SELECT email, phone_e164, first_name, account_id FROM contacts ORDER BY id")
    await pool.execute("TRUNCATE contacts, accounts, list_members CASCADE")
    _, parallel = await _run(pool, path, workers=2)
    assert (parallel.rows_read, parallel.rows_inserted, parallel.rows_rejected) == (
        in_process.rows_read,
        in_process.rows_inserted,
        in_process.rows_rejected,
    )
    again = await pool.fetch("SELECT email, phone_e164, first_name FROM contacts")
    assert len(again) == len(snapshot)
    assert {(r["email"], r["phone_e164"], r["first_name"]) for r in snapshot} == {tuple(r) for r in again}


async def test_import_into_a_list(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """With a target list every imported contact (new or existing) becomes a member, once."""
    from crm.audience.lists import ensure_list

    pool = empty_audience
    path = _write(tmp_path, ROWS)
    await _run(pool, path)  # some contacts exist before the list import
    plan = plan_import(path)
    job_id, source_id = await import_jobs.create_job(
        pool, SYSTEM, entity="contacts", file_name=path.name, file_sha256=None, mapping=plan.mapping, options={}
    )
    list_id = await ensure_list(pool, SYSTEM, "Trade show")
    assert await ensure_list(pool, SYSTEM, "trade SHOW") == list_id
    extra = _write(tmp_path, [*ROWS, "new@initech.io,,New,Person,Initech,initech.io,US,,"], "more.csv")
    plan = plan_import(extra)
    await run_import_job(pool, plan, job_id=job_id, source_id=source_id, region="US", list_id=list_id)
    members = await pool.fetchval("SELECT count(*) FROM list_members WHERE list_id = $1", list_id)
    assert members == await pool.fetchval("SELECT count(*) FROM contacts") == 5


async def test_reimport_is_stable_with_awkward_identities(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """Double-spaced company names, a phone-only row sharing a number with an e-mail row, and a Unicode digit:
    the first import sorts them out, later imports change nothing."""
    pool = empty_audience
    rows = [
        "a@x.com,+1 415 692 7213,Ann,Lee,Acme  Corp,,US,,",
        ",+1 415 692 7213,Bob,Roe,Acme  Corp,,US,,",
        "e1@delta.com,+1 415 692 7214,Eve,,Delta,delta.com,US,,",
        ",+1 415 692 7214,Fay,,Delta,delta.com,US,,",
        "g@x.com,,Gus,,Gamma,gamma.com,US,²,",
    ]
    path = _write(tmp_path, rows)
    _, first = await _run(pool, path)
    assert (first.rows_inserted, first.rows_rejected) == (4, 1)
    snapshot = await pool.fetch("SELECT id, account_id, updated_at, first_name FROM contacts ORDER BY id")
    for _ in range(2):
        _, again = await _run(pool, path)
        assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 4)
    assert await pool.fetch("SELECT id, account_id, updated_at, first_name FROM contacts ORDER BY id") == snapshot
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 2


async def test_an_invalid_phone_never_clobbers_a_valid_one(empty_audience: asyncpg.Pool, tmp_path: Path) -> None:
    """A later file's unusable number leaves the valid number, its original text and country alone."""
    pool = empty_audience
    await _run(pool, _write(tmp_path, ["ann@acme.com,+44 20 7946 0958,Ann,,,,,,"]))
    await _run(pool, _write(tmp_path, ["ann@acme.com,call me maybe,,,,,,,"], "later.csv"))
    ann = await pool.fetchrow("SELECT * FROM contacts")
    assert (ann["phone_e164"], ann["phone_original"], ann["phone_country"], ann["phone_invalid_reason"]) == (
        "+442079460958",
        "+44 20 7946 0958",
        "GB",
        None,
    )
