"""Imports as background jobs of the daemon: upload to disk, start, follow, cancel.

An upload is streamed to ``<import_dir>/<job id>.csv`` (bounded in size), its header read and a mapping
suggested; the job waits in ``pending`` until it is started with a mapping. Running jobs are asyncio tasks
kept by job id, so shutdown cancels them and each records ``cancelled`` (nothing half-imported: the merge is
one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from crm.audience import import_jobs
from crm.audience.csv_reader import CsvFormatError
from crm.audience.import_jobs import ImportJob
from crm.audience.importer import FileLook, inspect_file, plan_import, run_import_job
from crm.audience.lists import ensure_list
from crm.audience.mapping import suggest_mapping
from crm.audit import Actor
from crm.compliance.suppression_import import SuppressionImport, run_suppression_import

log = structlog.get_logger(__name__)


class ImportRefused(Exception):
    """The request cannot be carried out as asked; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ImportService:
    def __init__(self, pool: asyncpg.Pool, directory: Path, *, region: str, max_bytes: int) -> None:
        self.pool = pool
        self.directory = directory
        self.region = region
        self.max_bytes = max_bytes
        self.tasks: dict[int, asyncio.Task[object]] = {}

    def path(self, job_id: int) -> Path:
        return self.directory / f"{job_id}.csv"

    async def upload(
        self,
        actor: Actor,
        file_name: str,
        chunks: AsyncIterator[bytes],
        *,
        encoding: str | None,
        delimiter: str | None,
    ) -> tuple[ImportJob, FileLook]:
        """Store the file, read its header and create a pending job with a suggested mapping."""
        async with self._received(chunks) as (temporary, digest):
            try:
                look = await asyncio.to_thread(inspect_file, temporary, encoding=encoding, delimiter=delimiter)
            except CsvFormatError as exc:
                raise ImportRefused(422, f"the file cannot be read: {exc}") from None
            options = {"encoding": look.dialect.encoding, "delimiter": look.dialect.delimiter}
            job_id, _ = await import_jobs.create_job(
                self.pool, actor, entity="contacts", file_name=file_name, file_sha256=digest,
                mapping=suggest_mapping(look.header), options=options,
            )  # fmt: skip
            temporary.rename(self.path(job_id))
        return await import_jobs.get_job(self.pool, job_id), look

    @contextlib.asynccontextmanager
    async def _received(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[Path, str]]:
        """The upload streamed to a temporary file (bounded), with its SHA-256; gone afterwards unless renamed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f"upload-{uuid.uuid4().hex}.part"
        try:
            yield temporary, await self._receive(chunks, temporary)
        finally:
            temporary.unlink(missing_ok=True)

    async def _receive(self, chunks: AsyncIterator[bytes], target: Path) -> str:
        digest = hashlib.sha256()
        size = 0
        with target.open("wb") as handle:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    raise ImportRefused(413, f"the file is larger than audience.max_import_bytes ({self.max_bytes})")
                digest.update(chunk)
                handle.write(chunk)
        if size == 0:
            raise ImportRefused(422, "the file is empty")
        return digest.hexdigest()

    async def start(
        self, actor: Actor, job_id: int, *, mapping: Mapping[str, str | None] | None, list_name: str | None
    ) -> ImportJob:
        job = await import_jobs.get_job(self.pool, job_id)
        if job.status != "pending":
            raise ImportRefused(409, f"import {job_id} is {job.status}; only a pending import can be started")
        chosen = dict(mapping) if mapping is not None else job.column_mapping
        try:
            plan = await asyncio.to_thread(
                plan_import,
                self.path(job_id),
                chosen,
                encoding=job.options.get("encoding"),
                delimiter=job.options.get("delimiter"),
            )
        except (CsvFormatError, ValueError) as exc:
            raise ImportRefused(422, str(exc)) from None
        options = {**job.options, **({"list": list_name} if list_name else {})}
        claimed = await self.pool.fetchval(
            """UPDATE import_jobs SET column_mapping = $2, options = $3, updated_at = now()
                WHERE id = $1 AND status = 'pending' RETURNING id""",
            job_id,
            plan.mapping,
            options,
        )
        if claimed is None or job_id in self.tasks:
            raise ImportRefused(409, f"import {job_id} was started already")
        list_id = await ensure_list(self.pool, actor, list_name) if list_name else None
        source_id = await self.pool.fetchval("SELECT id FROM record_sources WHERE import_job_id = $1", job_id)
        work = run_import_job(
            self.pool, plan, job_id=job_id, source_id=source_id, region=self.region, list_id=list_id,
            added_by=actor.user_id,
        )  # fmt: skip
        return await self._launch(job_id, work)

    async def _launch(self, job_id: int, work: Coroutine[Any, Any, object]) -> ImportJob:
        """Run a job's work as a task kept by job id (shutdown cancels it); answer once it marked itself running."""
        task = asyncio.create_task(work, name=f"import-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(lambda done: self._finished(job_id, done))
        await asyncio.sleep(0)  # let it mark itself running before the caller reads the job
        return await import_jobs.get_job(self.pool, job_id)

    async def import_suppressions(
        self, actor: Actor, file_name: str, chunks: AsyncIterator[bytes], options: SuppressionImport
    ) -> ImportJob:
        """Store the file and run the import in the background (no mapping step: one value a row)."""
        settings = {k: v for k, v in vars(options).items() if k != "expires_at"}
        settings["expires_at"] = options.expires_at.isoformat() if options.expires_at else None
        async with self._received(chunks) as (temporary, digest):
            job_id, _ = await import_jobs.create_job(
                self.pool, actor, entity="suppressions", file_name=file_name, file_sha256=digest, mapping={},
                options=settings,
            )  # fmt: skip
            temporary.rename(self.path(job_id))
        work = run_suppression_import(
            self.pool, self.path(job_id), options, job_id=job_id, region=self.region, added_by=actor.user_id
        )
        return await self._launch(job_id, work)

    def _finished(self, job_id: int, task: asyncio.Task[object]) -> None:
        self.tasks.pop(job_id, None)
        with contextlib.suppress(OSError):
            os.unlink(self.path(job_id))
        if task.cancelled():
            log.info("import_cancelled", import_id=job_id)
        elif (error := task.exception()) is not None:
            # Already recorded on the job (failed, with the reason); the log keeps the detail.
            log.warning("import_failed", import_id=job_id, error=str(error))
        else:
            log.info("import_completed", import_id=job_id)

    async def cancel(self, actor: Actor, job_id: int) -> ImportJob:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        else:
            changed = await self.pool.fetchval(
                """UPDATE import_jobs SET status = 'cancelled', error = 'cancelled before it started',
                          finished_at = now(), updated_at = now()
                    WHERE id = $1 AND status = 'pending' RETURNING id""",
                job_id,
            )
            job = await import_jobs.get_job(self.pool, job_id)
            if changed is None and job.status not in ("cancelled",):
                raise ImportRefused(409, f"import {job_id} is {job.status}; it cannot be cancelled")
            self.path(job_id).unlink(missing_ok=True)
        return await import_jobs.get_job(self.pool, job_id)

    async def close(self) -> None:
        """Shutdown: cancel running imports; each records itself as cancelled."""
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
