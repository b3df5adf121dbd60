"""``pivotal import contacts FILE``: the same import as the API's, from a shell, with a progress line."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import asyncpg

from config import Settings
from crm.audience import import_jobs
from crm.audience.csv_reader import CsvFormatError
from crm.audience.csv_writer import write_rows
from crm.audience.importer import ImportCounts, plan_import, run_import_job
from crm.audience.lists import ensure_list
from crm.audience.mapping import MappingError
from crm.audit import SYSTEM
from pivotal.database import create_pool, database_url
from pivotal.schema import apply_schema


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fail(message: str) -> int:
    print(f"pivotal: {message}", file=sys.stderr)
    return 2


async def import_contacts_command(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.file
    if not path.is_file():  # noqa: ASYNC240 - a CLI command: nothing else runs on this loop
        return _fail(f"{path}: no such file")
    mapping = None
    if args.mapping is not None:
        try:
            mapping = json.loads(args.mapping.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return _fail(f"mapping file {args.mapping}: {exc}")
        if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
            return _fail(f'mapping file {args.mapping}: expected {{"<column>": "<field>" or null, ...}}')
    try:
        plan = plan_import(path, mapping, encoding=args.encoding, delimiter=args.delimiter)
    except (CsvFormatError, MappingError) as exc:
        return _fail(f"{path}: {exc}")
    shown = ", ".join(f"{column} -> {field}" for column, field in plan.mapping.items() if field)
    print(
        f"{path.name}: {plan.dialect.encoding}, delimiter {plan.dialect.delimiter!r}; mapping: {shown}", file=sys.stderr
    )

    async with database_url(settings) as url:
        pool = await create_pool(url, settings.database.model_copy(update={"pool_min": 1, "pool_max": 3}))
        try:
            async with pool.acquire() as conn:
                await apply_schema(conn)
            options = {"list": args.list_name} if args.list_name else {}
            job_id, source_id = await import_jobs.create_job(
                pool, SYSTEM, entity="contacts", file_name=path.name, file_sha256=_sha256(path),
                mapping=plan.mapping, options=options,
            )  # fmt: skip
            list_id = await ensure_list(pool, SYSTEM, args.list_name) if args.list_name else None

            async def progress(counts: ImportCounts) -> None:
                line = f"\r  read {counts.rows_read:>10,} rows  rejected {counts.rows_rejected:>8,}"
                print(f"{line}  {counts.rows_per_second:>9,.0f} rows/s", end="", file=sys.stderr, flush=True)

            try:
                counts = await run_import_job(
                    pool, plan, job_id=job_id, source_id=source_id, region=settings.audience.default_phone_region,
                    list_id=list_id, progress=progress,
                )  # fmt: skip
            except CsvFormatError as exc:
                print(file=sys.stderr)
                print(f"pivotal: {path}: {exc}; nothing was imported (import {job_id})", file=sys.stderr)
                return 1
            print(file=sys.stderr)
            if args.rejects is not None:
                await _write_rejects(pool, job_id, args.rejects)
        finally:
            await pool.close()
    merged = (
        counts.rows_read - counts.rows_rejected - counts.rows_inserted - counts.rows_updated - counts.rows_unchanged
    )
    print(
        f"import {job_id}: {counts.rows_read:,} rows read, {counts.rows_inserted:,} contacts inserted, "
        f"{counts.rows_updated:,} updated, {counts.rows_unchanged:,} unchanged, {merged:,} merged as duplicates, "
        f"{counts.rows_rejected:,} rejected; accounts: {counts.accounts_inserted:,} inserted, "
        f"{counts.accounts_updated:,} updated"
    )
    return 0


async def _write_rejects(pool: asyncpg.Pool, job_id: int, target: Path) -> None:
    rows = await import_jobs.rejects(pool, job_id)
    with target.open("w", newline="", encoding="utf-8") as handle:
        write_rows(handle, [("line", "column", "value", "reason")])
        write_rows(handle, ((r["line_number"], r["column_name"], r["value"], r["reason"]) for r in rows))
    print(f"{len(rows):,} rejected rows written to {target}", file=sys.stderr)
