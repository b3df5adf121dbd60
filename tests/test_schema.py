"""schema.sql: idempotent application, recorded version, refusal of a newer database, state constraints."""

from __future__ import annotations

import asyncpg
import pytest

from pivotal.schema import SchemaError, apply_schema, schema_text, schema_version


async def test_applying_twice_changes_nothing(pool: asyncpg.Pool) -> None:
    """A second application succeeds and leaves the same tables, types and version."""
    catalogue = """SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
                          (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                            WHERE n.nspname = 'public' AND t.typtype = 'e'),
                          (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public')"""
    before = await pool.fetchrow(catalogue)
    async with pool.acquire() as conn:
        assert await apply_schema(conn) == schema_version(schema_text())
    assert await pool.fetchrow(catalogue) == before
    assert before[0] >= 40, "the whole data model is there"
    assert await pool.fetchval("SELECT count(*) FROM roles") == 7


async def test_a_current_database_is_not_reapplied(pool: asyncpg.Pool) -> None:
    """Same version and checksum: the file is not run again (it would lock every indexed table); another
    checksum (an edited file) runs it."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            index = "import_rejects_import_job_id_line_number_idx"  # something the file would create again
            exists = "SELECT to_regclass($1) IS NOT NULL"
            await conn.execute(f"DROP INDEX {index}")
            await apply_schema(conn)
            assert not await conn.fetchval(exists, index)
            await conn.execute("UPDATE schema_version SET checksum = 'edited'")
            await apply_schema(conn)
            assert await conn.fetchval(exists, index)
        finally:
            await tx.rollback()


async def test_newer_database_is_refused(pool: asyncpg.Pool) -> None:
    """Old code never runs against a newer data model."""
    current = schema_version(schema_text())
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("INSERT INTO schema_version (version, checksum) VALUES ($1, 'future')", current + 1)
            with pytest.raises(SchemaError, match="newer"):
                await apply_schema(conn)
        finally:
            await tx.rollback()


async def test_a_version_1_database_is_upgraded(pool: asyncpg.Pool) -> None:
    """Version 1's slow dns_domain check and provenance foreign keys are replaced when the file is applied."""
    old_check = "VALUE ~ '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$'"
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            # Put the database back into version 1's shape.
            await conn.execute(
                f"""ALTER DOMAIN dns_domain DROP CONSTRAINT dns_domain_shape;
                    ALTER DOMAIN dns_domain ADD CONSTRAINT dns_domain_check CHECK ({old_check});
                    ALTER TABLE contacts ADD FOREIGN KEY (source_id) REFERENCES record_sources(id);
                    ALTER TABLE accounts ADD FOREIGN KEY (last_source_id) REFERENCES record_sources(id);
                    DELETE FROM schema_version; INSERT INTO schema_version VALUES (1, 'v1')"""
            )
            assert await apply_schema(conn) == 3
            checks = await conn.fetch("SELECT conname FROM pg_constraint WHERE contypid = 'dns_domain'::regtype")
            assert [row["conname"] for row in checks] == ["dns_domain_shape"]
            assert not await conn.fetchval(
                """SELECT count(*) FROM pg_constraint WHERE confrelid = 'record_sources'::regclass
                      AND conrelid IN ('accounts'::regclass, 'contacts'::regclass)"""
            )
            # The new check accepts and refuses what the old one did.
            assert await conn.fetchval("SELECT 'sub.acme-corp.co.uk'::dns_domain") == "sub.acme-corp.co.uk"
            bad = ["acme", "-acme.com", "acme-.com", "acme..com", "acme.c", "acme.com.", "Acme.com", "a_b.com"]
            for value in [*bad, "a" * 64 + ".com"]:
                with pytest.raises(asyncpg.CheckViolationError):
                    async with conn.transaction():  # a savepoint: the failure must not end the test's transaction
                        await conn.fetchval("SELECT $1::text::dns_domain", value)
        finally:
            await tx.rollback()


async def test_a_version_2_database_gets_the_qa_workflow(pool: asyncpg.Pool) -> None:
    """Version 2's lead statuses are renamed in place (a lead keeps its state), leads gain the QA columns and
    orders their terms."""
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(
                """ALTER TABLE leads DROP COLUMN recording_url, DROP COLUMN notes, DROP COLUMN claimed_by,
                          DROP COLUMN claimed_until, DROP COLUMN rejection_reason, DROP COLUMN replacement_owed,
                          DROP COLUMN published_at, DROP COLUMN created_by, DROP COLUMN allocated_at,
                          DROP COLUMN returned_at;
                   ALTER TABLE campaign_members DROP COLUMN held_for_orders;
                   ALTER TABLE campaign_orders DROP COLUMN weekly_pace, DROP COLUMN price_per_lead,
                          DROP COLUMN currency, DROP COLUMN over_delivery_pct, DROP COLUMN returns_window_days,
                          DROP COLUMN dedupe_scope, DROP COLUMN webhook_url, DROP COLUMN webhook_secret_encrypted;
                   ALTER TABLE campaign_orders ADD CHECK (status IN ('draft', 'cancelled') OR campaign_id IS NOT NULL)
                     NOT VALID;
                   ALTER TYPE lead_status RENAME VALUE 'new' TO 'pending_qa';
                   ALTER TYPE lead_status RENAME VALUE 'published' TO 'delivered';
                   ALTER TABLE leads ALTER COLUMN status SET DEFAULT 'pending_qa';
                   ALTER TABLE leads ADD CHECK (status <> 'delivered' OR delivered_at IS NOT NULL) NOT VALID;
                   DELETE FROM schema_version; INSERT INTO schema_version VALUES (2, 'v2')"""
            )
            assert await apply_schema(conn) == 3
            labels = await conn.fetch(
                "SELECT enumlabel FROM pg_enum WHERE enumtypid = 'lead_status'::regtype ORDER BY enumsortorder"
            )
            assert {row["enumlabel"] for row in labels} == {
                "new", "under_review", "approved", "rejected", "returned", "published"}  # fmt: skip
            assert (
                await conn.fetchval(
                    "SELECT column_default FROM information_schema.columns WHERE table_name = 'leads' "
                    "AND column_name = 'status'"
                )
                == "'new'::lead_status"
            )
            columns = {row["column_name"] for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'leads'")}  # fmt: skip
            assert {"claimed_by", "claimed_until", "rejection_reason", "published_at", "recording_url"} <= columns
            assert not await conn.fetchval(
                """SELECT count(*) FROM pg_constraint WHERE conrelid = 'leads'::regclass
                      AND pg_get_constraintdef(oid) LIKE '%delivered_at%'"""
            )
            order_columns = {row["column_name"] for row in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'campaign_orders'")}  # fmt: skip
            assert {"weekly_pace", "dedupe_scope", "returns_window_days", "webhook_url"} <= order_columns
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = 'campaign_members' "
                    "AND column_name = 'held_for_orders'"
                )
                == 1
            )
            assert not await conn.fetchval(
                """SELECT count(*) FROM pg_constraint WHERE conrelid = 'campaign_orders'::regclass
                      AND pg_get_constraintdef(oid) LIKE '%campaign_id IS NOT NULL%'"""
            )
        finally:
            await tx.rollback()


@pytest.mark.parametrize(
    "table",
    [
        "users",
        "roles",
        "user_roles",
        "client_organisations",
        "accounts",
        "contacts",
        "record_sources",
        "suppressions",
        "consents",
        "campaigns",
        "scripts",
        "call_attempts",
        "call_events",
        "agent_sessions",
        "leads",
        "audit_log",
        "revoked_tokens",
    ],
)
async def test_core_tables_exist(pool: asyncpg.Pool, table: str) -> None:
    """The tables later issues build on are present."""
    assert await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{table}")


async def test_unknown_role_is_rejected_by_the_database(pool: asyncpg.Pool) -> None:
    """State columns are constrained in PostgreSQL too, not only in Python."""
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await pool.execute(
            "INSERT INTO users (email, password_hash, legacy_role) VALUES ('w@x.example', 'x', 'wizard')"
        )
