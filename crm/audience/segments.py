"""Dynamic segments: saved filters over contacts, previewed, counted and snapshotted into static lists."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audience.filters import compile_filter
from crm.audit import Actor

FROM_CONTACTS = "contacts c LEFT JOIN accounts a ON a.id = c.account_id"


class SegmentNotFound(LookupError):
    pass


class SegmentNameTaken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ContactRow:
    id: int
    first_name: str
    last_name: str
    job_title: str
    email: str | None
    phone_e164: str | None
    account_id: int | None
    account_name: str | None
    account_domain: str | None


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    name: str
    description: str
    filter_definition: dict[str, Any]
    last_count: int | None
    last_evaluated_at: datetime | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime


_SEGMENT_COLUMNS = ", ".join(f.name for f in fields(Segment))
CONTACT_COLUMNS = """c.id, c.first_name, c.last_name, c.job_title, c.email, c.phone_e164, c.account_id,
                      a.name AS account_name, a.domain AS account_domain"""


async def preview(pool: asyncpg.Pool, definition: Any, *, limit: int) -> tuple[int, list[ContactRow]]:
    """How many live contacts match, and the first ``limit`` of them by id. Raises FilterError.

    One scan answers both (the count rides along as a window over all matches), and the plan is made for
    the actual values (``force_custom_plan``): a generic plan cannot know how selective a filter is.
    """
    compiled = compile_filter(definition)
    where = f"c.deleted_at IS NULL AND {compiled.sql}"
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        rows = await conn.fetch(
            f"SELECT {CONTACT_COLUMNS}, count(*) OVER () AS matching FROM {FROM_CONTACTS} WHERE {where}"
            f" ORDER BY c.id LIMIT {int(limit)}",
            *compiled.params,
        )
    count = rows[0]["matching"] if rows else 0
    return int(count), [ContactRow(**{k: v for k, v in row.items() if k != "matching"}) for row in rows]


async def create(pool: asyncpg.Pool, actor: Actor, *, name: str, description: str, definition: Any) -> Segment:
    compile_filter(definition)  # validate before storing
    async with pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                f"""INSERT INTO segments (name, description, filter_definition, created_by)
                    VALUES ($1, $2, $3, $4) RETURNING {_SEGMENT_COLUMNS}""",
                name,
                description,
                definition,
                actor.user_id,
            )
        except asyncpg.UniqueViolationError:
            raise SegmentNameTaken(f"a segment named {name!r} exists already") from None
        await audit.record(conn, actor, "segment.create", "segment", row["id"], {"name": name})
    return Segment(**dict(row))


async def get(pool: asyncpg.Pool, segment_id: int) -> Segment:
    row = await pool.fetchrow(
        f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE id = $1 AND deleted_at IS NULL", segment_id
    )
    if row is None:
        raise SegmentNotFound(f"segment {segment_id} does not exist")
    return Segment(**dict(row))


async def page(pool: asyncpg.Pool, *, limit: int, after_id: int | None) -> list[Segment]:
    rows = await pool.fetch(
        f"""SELECT {_SEGMENT_COLUMNS} FROM segments
             WHERE deleted_at IS NULL AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $1""",
        limit,
        after_id,
    )
    return [Segment(**dict(row)) for row in rows]


async def delete(pool: asyncpg.Pool, actor: Actor, segment_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            "UPDATE segments SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING id", segment_id
        )
        if deleted is None:
            raise SegmentNotFound(f"segment {segment_id} does not exist")
        await audit.record(conn, actor, "segment.delete", "segment", segment_id)


async def snapshot(pool: asyncpg.Pool, actor: Actor, segment_id: int, list_id: int) -> int:
    """Add every contact the segment matches now to a static list; return how many were added."""
    segment = await get(pool, segment_id)
    compiled = compile_filter(segment.filter_definition, first_param=3)
    async with pool.acquire() as conn, conn.transaction():
        added = await conn.fetchval(
            f"""WITH added AS (
                  INSERT INTO list_members (list_id, contact_id, added_by)
                  SELECT $1, c.id, $2 FROM {FROM_CONTACTS}
                   WHERE c.deleted_at IS NULL AND {compiled.sql}
                  ON CONFLICT DO NOTHING RETURNING 1)
                SELECT count(*) FROM added""",
            list_id,
            actor.user_id,
            *compiled.params,
        )
        counting = compile_filter(segment.filter_definition)
        total = await conn.fetchval(
            f"SELECT count(*) FROM {FROM_CONTACTS} WHERE c.deleted_at IS NULL AND {counting.sql}", *counting.params
        )
        await conn.execute(
            "UPDATE segments SET last_evaluated_at = now(), last_count = $2 WHERE id = $1", segment_id, total
        )
        await audit.record(conn, actor, "segment.snapshot", "segment", segment_id, {"list_id": list_id, "added": added})
    return int(added)
