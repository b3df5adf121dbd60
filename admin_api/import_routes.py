"""CSV imports over HTTP: upload, inspect the suggested mapping, start, follow, cancel, download rejects.

Writes: admin and campaign_manager. Reads: also supervisor.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import ReadModel, Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience import import_jobs
from crm.audience.csv_writer import write_rows
from crm.audience.import_jobs import ImportJob, ImportJobNotFound
from crm.audience.import_service import ImportRefused
from crm.audience.mapping import FIELDS
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = WRITE | {Role.SUPERVISOR}
UPLOAD_TYPES = ("text/csv", "application/octet-stream", "text/plain")


class ImportOut(ReadModel):
    id: int
    entity: str
    status: str = Field(description="pending, running, completed, failed or cancelled")
    file_name: str
    file_sha256: str | None
    column_mapping: dict[str, Any] = Field(description="column -> field (or null); suggested until started")
    options: dict[str, Any]
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    rows_merged: int = Field(description="rows folded into another row of the file with the same identity")
    error: str | None
    created_by: int | None
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UploadOut(BaseModel):
    job: ImportOut
    encoding: str
    delimiter: str
    header: list[str]
    sample: list[list[str]] = Field(description="the first rows of the file")
    fields: dict[str, str] = Field(description="fields a column can map to (plus custom.<name>, account.custom.<name>)")


class UploadQuery(BaseModel):
    file_name: str = Field("upload.csv", min_length=1, max_length=255)
    encoding: str | None = Field(None, max_length=20, description="default: detected")
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="default: sniffed")


class StartBody(Strict):
    mapping: dict[str, str | None] | None = Field(None, description="column -> field; default: the suggestion")
    list: str | None = Field(None, min_length=1, max_length=200, description="add imported contacts to this list")


class ImportPage(Page[ImportOut]):
    pass


def _refused(exc: ImportRefused) -> Problem:
    return Problem(exc.status, str(exc))


async def _job(req: ApiRequest) -> ImportJob:
    job_id = req.path_int("importId")
    try:
        return await import_jobs.get_job(req.services.pool, job_id)
    except ImportJobNotFound as exc:
        raise Problem(404, str(exc)) from None


@api.route("POST", "/api/imports/contacts", summary="Upload a CSV of contacts", tag="imports", roles=WRITE,
           query=UploadQuery, response=UploadOut, status=201, upload_media_type="text/csv")  # fmt: skip
async def upload_contacts(req: ApiRequest) -> UploadOut:
    """Send the file as the raw body (`Content-Type: text/csv`). The answer shows the detected encoding and
    delimiter, the header, the first rows and a suggested mapping; start the import with
    `POST /api/imports/{importId}/start`."""
    if req.request.content_type not in UPLOAD_TYPES:
        raise Problem(415, f"send the file as the raw body with Content-Type {UPLOAD_TYPES[0]}")
    query = req.query
    try:
        job, look = await req.services.imports.upload(
            req.actor, query.file_name, req.request.content.iter_chunked(64 * 1024),
            encoding=query.encoding, delimiter=query.delimiter,
        )  # fmt: skip
    except ImportRefused as exc:
        raise _refused(exc) from None
    return UploadOut(
        job=ImportOut.of(job),
        encoding=look.dialect.encoding,
        delimiter=look.dialect.delimiter,
        header=look.header,
        sample=look.sample,
        fields=FIELDS,
    )


@api.route("POST", "/api/imports/{importId}/start", summary="Start a pending import", tag="imports", roles=WRITE,
           body=StartBody, response=ImportOut, status=202)  # fmt: skip
async def start_import(req: ApiRequest) -> ImportOut:
    """Runs in the background; follow it with `GET /api/imports/{importId}`."""
    job = await _job(req)
    try:
        started = await req.services.imports.start(req.actor, job.id, mapping=req.body.mapping, list_name=req.body.list)
    except ImportRefused as exc:
        raise _refused(exc) from None
    return ImportOut.of(started)


@api.route("POST", "/api/imports/{importId}/cancel", summary="Cancel an import", tag="imports", roles=WRITE,
           response=ImportOut)  # fmt: skip
async def cancel_import(req: ApiRequest) -> ImportOut:
    """A running import is stopped before its merge commits, so nothing of it is kept."""
    job = await _job(req)
    try:
        return ImportOut.of(await req.services.imports.cancel(req.actor, job.id))
    except ImportRefused as exc:
        raise _refused(exc) from None


@api.route("GET", "/api/imports", summary="Imports, newest first", tag="imports", roles=READ, query=PageQuery,
           response=ImportPage)  # fmt: skip
async def list_imports(req: ApiRequest) -> ImportPage:
    query = req.query
    jobs = await import_jobs.list_jobs(req.services.pool, limit=query.limit + 1, before_id=decode_cursor(query.cursor))
    page, next_cursor = page_of(jobs, query.limit, key=lambda job: job.id)
    return ImportPage.model_validate({"items": page, "next_cursor": next_cursor})


@api.route("GET", "/api/imports/{importId}", summary="An import and its progress", tag="imports", roles=READ,
           response=ImportOut)  # fmt: skip
async def get_import(req: ApiRequest) -> ImportOut:
    return ImportOut.of(await _job(req))


@api.route("GET", "/api/imports/{importId}/rejects", summary="Rejected rows as CSV", tag="imports", roles=READ,
           media_type="text/csv")  # fmt: skip
async def import_rejects(req: ApiRequest) -> web.Response:
    """Columns: line, column, value, reason. Lines count from 1 with the header as line 1."""
    job = await _job(req)
    rows = await import_jobs.rejects(req.services.pool, job.id)
    buffer = io.StringIO()
    write_rows(buffer, [("line", "column", "value", "reason")])
    write_rows(buffer, ((r["line_number"], r["column_name"], r["value"], r["reason"]) for r in rows))
    return web.Response(
        text=buffer.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="import-{job.id}-rejects.csv"'},
    )
