"""Import jobs in PostgreSQL: creation, progress, outcome, rejected rows."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from crm import audit
from crm.audience.csv_reader import CsvFormatError
from crm.audit import Actor

T = TypeVar("T")


class ImportJobNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ImportJob:
    id: int
    entity: str
    status: str
    file_name: str
    file_sha256: str | None
    column_mapping: dict[str, Any]
    options: dict[str, Any]
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    error: str | None
    created_by: int | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def rows_merged(self) -> int:
        """Rows folded into another row of the same file with the same identity."""
        done = self.rows_inserted + self.rows_updated + self.rows_unchanged + self.rows_rejected
        return self.rows_read - done if self.status == "completed" else 0


_COLUMNS = ", ".join(f.name for f in fields(ImportJob))


async def create_job(
    pool: asyncpg.Pool,
    actor: Actor,
    *,
    entity: str,
    file_name: str,
    file_sha256: str | None,
    mapping: dict[str, Any],
    options: dict[str, Any],
) -> tuple[int, int]:
    """Create the job and its record source; return ``(job_id, source_id)``."""
    async with pool.acquire() as c, c.transaction():
        job_id: int = await c.fetchval(
            """INSERT INTO import_jobs (entity, file_name, file_sha256, column_mapping, options, created_by)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            entity,
            file_name,
            file_sha256,
            mapping,
            options,
            actor.user_id,
        )
        source_id: int = await c.fetchval(
            """INSERT INTO record_sources (kind, label, import_job_id, user_id, request_id)
               VALUES ('import', $1, $2, $3, $4) RETURNING id""",
            f"import of {file_name}",
            job_id,
            actor.user_id,
            actor.request_id,
        )
        await audit.record(c, actor, "import.create", "import_job", job_id, {"file_name": file_name, "entity": entity})
    return job_id, source_id


async def get_job(pool: asyncpg.Pool, job_id: int) -> ImportJob:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM import_jobs WHERE id = $1", job_id)
    if row is None:
        raise ImportJobNotFound(f"import {job_id} does not exist")
    return ImportJob(**dict(row))


async def list_jobs(pool: asyncpg.Pool, *, limit: int, before_id: int | None) -> list[ImportJob]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM import_jobs WHERE ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $1",
        limit,
        before_id,
    )
    return [ImportJob(**dict(row)) for row in rows]


async def mark_running(pool: asyncpg.Pool, job_id: int) -> None:
    await pool.execute(
        "UPDATE import_jobs SET status = 'running', started_at = now(), updated_at = now() WHERE id = $1", job_id
    )


async def report_progress(pool: asyncpg.Pool, job_id: int, rows_read: int, rows_rejected: int) -> None:
    await pool.execute(
        "UPDATE import_jobs SET rows_read = $2, rows_rejected = $3, updated_at = now() WHERE id = $1",
        job_id,
        rows_read,
        rows_rejected,
    )


async def mark_failed(pool: asyncpg.Pool, job_id: int, error: str, *, cancelled: bool = False) -> None:
    await pool.execute(
        """UPDATE import_jobs SET status = $3, error = $2, finished_at = now(), updated_at = now(),
                  rows_inserted = 0, rows_updated = 0, rows_unchanged = 0
            WHERE id = $1""",
        job_id,
        error,
        "cancelled" if cancelled else "failed",
    )


async def rejects(pool: asyncpg.Pool, job_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT line_number, column_name, value, reason FROM import_rejects
            WHERE import_job_id = $1 ORDER BY line_number, id""",
        job_id,
    )
    return rows


async def tracked(pool: asyncpg.Pool, job_id: int, work: Awaitable[T]) -> T:
    """Run an import job's work with its status kept: running, then completed (by the work itself), failed or
    cancelled. The outcome is written even while being cancelled (shutdown): a job never stays "running"."""
    await mark_running(pool, job_id)
    try:
        return await work
    except CsvFormatError as exc:
        await mark_failed(pool, job_id, str(exc))
        raise
    except asyncio.CancelledError:
        await asyncio.shield(mark_failed(pool, job_id, "cancelled before it finished", cancelled=True))
        raise
    except Exception as exc:
        await mark_failed(pool, job_id, f"{type(exc).__name__}: {exc}")
        raise
