"""Importing a suppression list (a DNC file, an unsubscribe export, a list of company domains) from CSV.

The audience importer's reader (encodings, delimiters, RFC 4180, line numbers of broken files) and job
bookkeeping are reused. One value a row, from the first column or a named one; a first row that is not a valid
value is taken as the header. Values are normalised like API entries, staged with COPY and merged in one
transaction: new entries are added, entries in force are renewed when the file changes their expiry, nothing
is removed. Every node hears of the change: entry by entry for small files, one "reload" for large ones.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from crm.audience import import_jobs
from crm.audience.csv_reader import CsvFormatError, detect_dialect, read_rows
from crm.compliance.feed import NOTIFY_CHANNEL
from crm.compliance.suppressions import LAPSED, RENEWED_EXPIRY, SuppressionError, normalise_value

BATCH_ROWS = 5_000
#: Up to this many changed entries are announced one by one (in events of EVENT_CHANGES); above, nodes reload.
ANNOUNCE_UP_TO = 5_000
#: Changes per event are packed up to this size: PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more.
MAX_PAYLOAD_BYTES = 7_000


@dataclass(frozen=True)
class SuppressionImport:
    channel: str
    scope: str = "global"
    campaign_id: int | None = None
    reason: str = ""
    expires_at: datetime | None = None
    column: str | None = None  # header name; None: the first column
    country: str | None = None  # how to read numbers without a country code; None: the daemon's default


def _values(path: Path, options: SuppressionImport, region: str) -> Iterator[tuple[int, str | None, str, str | None]]:
    """(line, normalised value or None, raw, reason if rejected) for every data row."""
    with path.open("rb") as stream:
        dialect = detect_dialect(stream, None, None)
        rows = read_rows(stream, dialect)
        first = next(rows, None)
        if first is None:
            return
        position = 0
        if options.column is not None:
            header = [name.strip() for name in first[1]]
            if options.column not in header:
                raise CsvFormatError(first[0], f"no column named {options.column!r} in the header")
            position = header.index(options.column)
        else:
            try:  # a first row holding a valid value is data, not a header
                value = first[1][0].strip() if first[1] else ""
                yield first[0], normalise_value(options.channel, value, region), value, None
            except SuppressionError:
                pass
        for line, values in rows:
            raw = values[position].strip() if position < len(values) else ""
            if not raw:
                yield line, None, raw, "empty"
                continue
            try:
                yield line, normalise_value(options.channel, raw, region), raw, None
            except SuppressionError as exc:
                yield line, None, raw, str(exc).removeprefix("value: ")


async def run_suppression_import(
    pool: asyncpg.Pool, path: Path, options: SuppressionImport, *, job_id: int, region: str, added_by: int | None
) -> None:
    """Run the job to its end, keeping its status (completed, or failed with the reason)."""
    region = options.country or region
    await import_jobs.tracked(
        pool, job_id, _import(pool, path, options, job_id=job_id, region=region, added_by=added_by)
    )


async def _import(
    pool: asyncpg.Pool, path: Path, options: SuppressionImport, *, job_id: int, region: str, added_by: int | None
) -> None:
    read = rejected = 0
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS suppression_staging, suppression_staged_rejects")
        await conn.execute(
            """CREATE TEMP TABLE suppression_staging (line integer NOT NULL, value text NOT NULL);
               CREATE TEMP TABLE suppression_staged_rejects (line integer, value text, reason text)"""
        )
        try:
            rows = _values(path, options, region)
            while True:
                batch = await asyncio.to_thread(lambda: [row for _, row in zip(range(BATCH_ROWS), rows, strict=False)])
                if not batch:
                    break
                read += len(batch)
                good = [(line, value) for line, value, _, why in batch if value is not None]
                bad = [(line, raw, why) for line, value, raw, why in batch if value is None]
                rejected += len(bad)
                if good:
                    await conn.copy_records_to_table("suppression_staging", records=good)
                if bad:
                    await conn.copy_records_to_table("suppression_staged_rejects", records=bad)
                await import_jobs.report_progress(pool, job_id, read, rejected)
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = 0")
                changed = await conn.fetch(
                    f"""INSERT INTO suppressions AS s (channel, scope, campaign_id, value, source, reason,
                                                       import_job_id, added_by, expires_at)
                        SELECT DISTINCT ON (value) $1, $2, $3, value, 'import', $4, $5, $6, $7
                          FROM suppression_staging ORDER BY value, line
                        ON CONFLICT (channel, scope, campaign_id, value) WHERE lifted_at IS NULL
                        DO UPDATE SET expires_at = {RENEWED_EXPIRY},
                                      source = CASE WHEN {LAPSED} THEN EXCLUDED.source ELSE s.source END,
                                      reason = CASE WHEN {LAPSED} THEN EXCLUDED.reason ELSE s.reason END,
                                      added_at = CASE WHEN {LAPSED} THEN now() ELSE s.added_at END,
                                      import_job_id = EXCLUDED.import_job_id, updated_at = now()
                         WHERE s.expires_at IS DISTINCT FROM {RENEWED_EXPIRY}
                        RETURNING value, (xmax = 0) AS created,
                                  coalesce(extract(epoch FROM expires_at)::bigint, 0) AS expires""",
                    options.channel, options.scope, options.campaign_id, options.reason, job_id, added_by,
                    options.expires_at,
                )  # fmt: skip
                distinct = await conn.fetchval("SELECT count(DISTINCT value) FROM suppression_staging")
                inserted = sum(1 for row in changed if row["created"])
                await conn.execute(
                    """INSERT INTO import_rejects (import_job_id, line_number, column_name, value, reason)
                       SELECT $1, line, $2, value, reason FROM suppression_staged_rejects ORDER BY line""",
                    job_id,
                    options.column,
                )
                await _announce(conn, options, [(row["value"], row["expires"]) for row in changed])
                await conn.execute(
                    """UPDATE import_jobs SET status = 'completed', finished_at = now(), updated_at = now(),
                              rows_read = $2, rows_inserted = $3, rows_updated = $4, rows_unchanged = $5,
                              rows_rejected = $6
                        WHERE id = $1""",
                    job_id, read, inserted, len(changed) - inserted, distinct - len(changed), rejected,
                )  # fmt: skip
        finally:
            await conn.execute("DROP TABLE IF EXISTS suppression_staging, suppression_staged_rejects")


async def _announce(conn: asyncpg.Connection, options: SuppressionImport, changed: list[tuple[str, int]]) -> None:
    """Change events go out with the commit, like single additions; a large import asks nodes to reload."""
    if not changed:
        return
    if len(changed) > ANNOUNCE_UP_TO:
        payloads = [json.dumps({"op": "reload"})]
    else:
        payloads = []
        batch: list[dict[str, Any]] = []
        size = 0
        for value, expires in changed:
            change = {"op": "add", "channel": options.channel, "campaign_id": options.campaign_id, "value": value,
                      "expires": expires}  # fmt: skip
            length = len(json.dumps(change)) + 1
            if batch and size + length > MAX_PAYLOAD_BYTES:
                payloads.append(_batch(batch))
                batch, size = [], 0
            batch.append(change)
            size += length
        payloads.append(_batch(batch))
    for payload in payloads:
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, payload)


def _batch(changes: list[dict[str, Any]]) -> str:
    return json.dumps({"op": "batch", "at": time.time(), "changes": changes}, separators=(",", ":"))
