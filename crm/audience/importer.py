"""Contact import: stream a CSV into a staging table, then merge it in one transaction.

Reading, normalising and COPYing happen batch by batch (constant memory). Nothing touches accounts or
contacts until the whole file has been read: a file that breaks half-way leaves no trace but the failed
job. The merge is set-based SQL (``merge_sql``) inside one transaction with the job's final counters.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import asyncpg
import structlog

from crm.audience import import_jobs, merge_sql
from crm.audience.csv_reader import CsvDialect, CsvFormatError, detect_dialect, read_rows
from crm.audience.mapping import suggest_mapping, validate_mapping
from crm.audience.rows import STAGING_COLUMNS, Reject, RowNormaliser, StagedRow

BATCH_ROWS = 5_000
#: Files from this size on are normalised in worker processes.
PARALLEL_FROM_BYTES = 8 * 1024 * 1024
MAX_WORKERS = 4
T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass
class ImportCounts:
    rows_read: int = 0
    rows_rejected: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    accounts_inserted: int = 0
    accounts_updated: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / max(time.monotonic() - self.started, 1e-6)


Progress = Callable[[ImportCounts], Awaitable[None]]


@dataclass(frozen=True)
class ImportPlan:
    """What to import and how: the file, its dialect and header, and the validated column mapping."""

    path: Path
    dialect: CsvDialect
    header: list[str]
    fields_by_index: dict[int, str]
    mapping: dict[str, str | None]


@dataclass(frozen=True)
class FileLook:
    """What the start of a file shows: its dialect, header and first rows."""

    dialect: CsvDialect
    header: list[str]
    sample: list[list[str]]


def inspect_file(path: Path, *, encoding: str | None = None, delimiter: str | None = None, rows: int = 5) -> FileLook:
    """Detect the dialect and read the header and a few rows; raise CsvFormatError on a broken start."""
    with path.open("rb") as stream:
        dialect = detect_dialect(stream, encoding, delimiter)
        records = read_rows(stream, dialect)
        first = next(records, None)
        if first is None:
            raise CsvFormatError(1, "the file is empty: no header line")
        header = [name.strip() for name in first[1]]
        duplicates = {name for name in header if name and header.count(name) > 1}
        if duplicates:
            raise CsvFormatError(first[0], f"the header repeats column names: {', '.join(sorted(duplicates))}")
        sample = [values for _, values in itertools.islice(records, rows)]
    return FileLook(dialect, header, sample)


def plan_import(
    path: Path,
    mapping: Mapping[str, str | None] | None = None,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> ImportPlan:
    """Detect the dialect, read the header, and validate the mapping (suggested from the header if not given).

    Raises CsvFormatError or MappingError.
    """
    look = inspect_file(path, encoding=encoding, delimiter=delimiter, rows=0)
    chosen = dict(mapping) if mapping is not None else suggest_mapping(look.header)
    return ImportPlan(path, look.dialect, look.header, validate_mapping(chosen, look.header), chosen)


def _raw_batches(stream: BinaryIO, plan: ImportPlan) -> Iterator[list[tuple[int, list[str]]]]:
    rows = read_rows(stream, plan.dialect)
    next(rows)  # the header
    batch: list[tuple[int, list[str]]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


Normalised = tuple[int, list[tuple[object, ...]], list[Reject]]


def _normalise_with(normaliser: RowNormaliser, rows: list[tuple[int, list[str]]]) -> Normalised:
    staged: list[tuple[object, ...]] = []
    rejected: list[Reject] = []
    for line, values in rows:
        result = normaliser.normalise(line, values)
        if isinstance(result, StagedRow):
            staged.append(result.as_record())
        else:
            rejected.extend(result)
    return len(rows), staged, rejected


_WORKER_NORMALISER: RowNormaliser | None = None


def _start_worker(fields_by_index: dict[int, str], header: list[str], region: str) -> None:
    global _WORKER_NORMALISER  # one normaliser per worker process, built once
    _WORKER_NORMALISER = RowNormaliser(fields_by_index, header, region)


def _normalise_in_worker(rows: list[tuple[int, list[str]]]) -> Normalised:
    assert _WORKER_NORMALISER is not None
    return _normalise_with(_WORKER_NORMALISER, rows)


def default_workers(path: Path) -> int:
    """Worker processes for normalising: none for small files (starting one costs ~0.5 s), else one per core."""
    if path.stat().st_size < PARALLEL_FROM_BYTES:
        return 0
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


async def import_contacts(
    pool: asyncpg.Pool,
    plan: ImportPlan,
    *,
    job_id: int,
    source_id: int,
    region: str,
    list_id: int | None = None,
    added_by: int | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> ImportCounts:
    """Run the import; return the counts. The job row is updated with the outcome in the merge transaction.

    ``workers``: processes normalising rows in parallel (0: in a thread of this process; None: by file size).
    """
    counts = ImportCounts()
    if workers is None:
        workers = default_workers(plan.path)
    async with pool.acquire() as conn:
        await conn.execute(merge_sql.DROP_STAGING)
        await conn.execute(merge_sql.STAGING_TABLE)
        try:
            await _stage(conn, plan, region, counts, progress, workers)
            async with conn.transaction():
                # The merge of a large file runs for minutes; the pool's statement timeout guards requests.
                await conn.execute("SET LOCAL statement_timeout = 0")
                await _merge(conn, counts, source_id=source_id, list_id=list_id, added_by=added_by)
                await conn.execute(merge_sql.KEEP_REJECTS, job_id)
                await conn.execute(
                    """UPDATE import_jobs SET status = 'completed', finished_at = now(), updated_at = now(),
                              rows_read = $2, rows_inserted = $3, rows_updated = $4, rows_unchanged = $5,
                              rows_rejected = $6
                        WHERE id = $1""",
                    job_id,
                    counts.rows_read,
                    counts.rows_inserted,
                    counts.rows_updated,
                    counts.rows_unchanged,
                    counts.rows_rejected,
                )
        finally:
            await conn.execute(merge_sql.DROP_STAGING)
    return counts


async def _stage(
    conn: asyncpg.Connection,
    plan: ImportPlan,
    region: str,
    counts: ImportCounts,
    progress: Progress | None,
    workers: int,
) -> None:
    """Read, normalise and COPY batch by batch; with workers, normalising overlaps reading and COPY."""
    loop = asyncio.get_running_loop()
    executor: Executor | None = None
    local = RowNormaliser(plan.fields_by_index, plan.header, region)
    if workers:
        executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process running an event loop
            initializer=_start_worker,
            initargs=(plan.fields_by_index, plan.header, region),
        )
    pending: deque[asyncio.Future[Normalised]] = deque()
    try:
        with plan.path.open("rb") as stream:
            batches = _raw_batches(stream, plan)
            while True:
                # Parsing CSV is CPU work: off the event loop.
                batch = await asyncio.to_thread(next, batches, None)
                if batch is not None:
                    if executor is not None:
                        pending.append(loop.run_in_executor(executor, _normalise_in_worker, batch))
                    else:
                        pending.append(asyncio.ensure_future(asyncio.to_thread(_normalise_with, local, batch)))
                # Keep a few batches in flight; write the oldest when the window is full or input ended.
                while pending and (batch is None or len(pending) > 2 * max(workers, 1)):
                    await _copy(conn, await pending.popleft(), counts)
                    if progress is not None:
                        await progress(counts)
                if batch is None:
                    break
    finally:
        for future in pending:
            future.cancel()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


async def _copy(conn: asyncpg.Connection, normalised: Normalised, counts: ImportCounts) -> None:
    read, staged, rejected = normalised
    counts.rows_read += read
    counts.rows_rejected += len({reject.line for reject in rejected})
    if staged:
        await conn.copy_records_to_table("import_staging", records=staged, columns=STAGING_COLUMNS)
    if rejected:
        await conn.copy_records_to_table(
            "import_staged_rejects",
            records=[(r.line, r.column, r.value, r.reason) for r in rejected],
            columns=("line", "column_name", "value", "reason"),
        )


async def _merge(
    conn: asyncpg.Connection, counts: ImportCounts, *, source_id: int, list_id: int | None, added_by: int | None
) -> None:
    step = _Steps()
    await step(conn.execute("ANALYZE import_staging"), "analyze")
    await step(conn.execute(merge_sql.ACCOUNTS), "accounts_grouped")
    counts.accounts_updated = await step(conn.fetchval(merge_sql.UPDATE_ACCOUNTS, source_id), "accounts_updated")
    await step(conn.execute(merge_sql.ASSIGN_ACCOUNT_IDS), "account_ids")
    counts.accounts_inserted = await step(conn.fetchval(merge_sql.INSERT_ACCOUNTS, source_id), "accounts_inserted")
    await step(conn.execute(merge_sql.CONTACTS), "contacts_grouped")
    matched = await conn.fetchval("SELECT count(*) FROM import_contacts WHERE existed")
    counts.rows_updated = await step(conn.fetchval(merge_sql.UPDATE_CONTACTS, source_id), "contacts_updated")
    counts.rows_unchanged = matched - counts.rows_updated
    if list_id is None:
        counts.rows_inserted = await step(conn.fetchval(merge_sql.INSERT_CONTACTS, source_id), "contacts_inserted")
    else:
        await step(conn.execute(merge_sql.ASSIGN_CONTACT_IDS), "contact_ids")
        insert = merge_sql.INSERT_CONTACTS_WITH_IDS
        counts.rows_inserted = await step(conn.fetchval(insert, source_id), "contacts_inserted")
        await step(conn.execute(merge_sql.ADD_TO_LIST, list_id, source_id, added_by), "list_members")


class _Steps:
    """Times each merge statement into one debug log line each: where an import's time goes."""

    async def __call__(self, statement: Awaitable[T], name: str) -> T:
        started = time.perf_counter()
        result = await statement
        log.debug("import_merge_step", step=name, ms=round((time.perf_counter() - started) * 1000, 1))
        return result


async def run_import_job(
    pool: asyncpg.Pool,
    plan: ImportPlan,
    *,
    job_id: int,
    source_id: int,
    region: str,
    list_id: int | None = None,
    added_by: int | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> ImportCounts:
    """:func:`import_contacts` with the job's status kept: running, then completed, failed or cancelled."""

    async def report(counts: ImportCounts) -> None:
        await import_jobs.report_progress(pool, job_id, counts.rows_read, counts.rows_rejected)
        if progress is not None:
            await progress(counts)

    work = import_contacts(
        pool, plan, job_id=job_id, source_id=source_id, region=region, list_id=list_id, added_by=added_by,
        progress=report, workers=workers,
    )  # fmt: skip
    return await import_jobs.tracked(pool, job_id, work)
