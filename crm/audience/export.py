"""CSV exports of contacts and accounts, streamed by PostgreSQL itself (COPY ... TO STDOUT WITH CSV).

Rows never pass through Python objects: PostgreSQL writes RFC 4180 CSV and the chunks are handed to the
caller as they come, so memory stays flat and a million rows take seconds. Text cells a spreadsheet would run
as formulas (starting with = + - @ tab or carriage return) are prefixed with an apostrophe in the query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from crm.audience.filters import compile_filter

Write = Callable[[bytes], Awaitable[None]]


def _safe(expression: str, name: str) -> str:
    # The same rule as csv_writer.safe_cell, in SQL.
    return f"CASE WHEN {expression} ~ '^[-=+@\\t\\r]' THEN '''' || {expression} ELSE {expression} END AS {name}"


CONTACT_COLUMNS: Sequence[str] = (
    "c.id AS id",
    _safe("c.first_name", "first_name"),
    _safe("c.last_name", "last_name"),
    _safe("c.job_title", "job_title"),
    _safe("c.email", "email"),
    "c.phone_e164 AS phone",
    "c.phone_extension AS phone_extension",
    "c.phone_country AS phone_country",
    "c.phone_line_type AS phone_line_type",
    "c.country AS country",
    "c.timezone AS timezone",
    "c.account_id AS account_id",
    _safe("a.name", "account_name"),
    "a.domain AS account_domain",
    _safe("c.custom_fields::text", "custom_fields"),
    "c.created_at AS created_at",
    "c.updated_at AS updated_at",
)

ACCOUNT_COLUMNS: Sequence[str] = (
    "a.id AS id",
    _safe("a.name", "name"),
    "a.domain AS domain",
    "a.registrable_domain AS registrable_domain",
    _safe("a.industry", "industry"),
    "a.employee_count AS employee_count",
    "a.office_country AS office_country",
    "a.main_line_e164 AS main_line",
    _safe("a.custom_fields::text", "custom_fields"),
    "a.created_at AS created_at",
    "a.updated_at AS updated_at",
)


def contacts_query(*, list_id: int | None = None, definition: Any = None) -> tuple[str, list[Any]]:
    """The export query for live contacts, optionally of one list and/or matching a filter."""
    conditions = ["c.deleted_at IS NULL"]
    params: list[Any] = []
    if list_id is not None:
        params.append(list_id)
        conditions.append("EXISTS (SELECT 1 FROM list_members lm WHERE lm.contact_id = c.id AND lm.list_id = $1)")
    if definition is not None:
        compiled = compile_filter(definition, first_param=len(params) + 1)
        conditions.append(compiled.sql)
        params.extend(compiled.params)
    sql = (
        f"SELECT {', '.join(CONTACT_COLUMNS)} FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id"
        f" WHERE {' AND '.join(conditions)} ORDER BY c.id"
    )
    return sql, params


def accounts_query() -> tuple[str, list[Any]]:
    return f"SELECT {', '.join(ACCOUNT_COLUMNS)} FROM accounts a WHERE a.deleted_at IS NULL ORDER BY a.id", []


async def export_csv(pool: asyncpg.Pool, query: str, params: Sequence[Any], write: Write) -> None:
    """Stream ``query`` as CSV with a header line to ``write``, chunk by chunk."""
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        # A large export outlives the request statement timeout; it is bounded by the client reading it.
        await conn.execute("SET LOCAL statement_timeout = 0")
        await conn.copy_from_query(query, *params, output=write, format="csv", header=True)
