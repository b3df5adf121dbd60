"""Static lists: named sets of contacts, changed by ids or by filter, counted, paged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audience.filters import compile_filter
from crm.audience.segments import CONTACT_COLUMNS, ContactRow
from crm.audit import Actor

MAX_IDS = 10_000


class ListNotFound(LookupError):
    pass


class ListNameTaken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StaticList:
    id: int
    name: str
    description: str
    member_count: int
    created_by: int | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = ", ".join(
    f"""(SELECT count(*) FROM list_members m JOIN contacts c ON c.id = m.contact_id AND c.deleted_at IS NULL
         WHERE m.list_id = l.id) AS {f.name}"""
    if f.name == "member_count"
    else f"l.{f.name}"
    for f in fields(StaticList)
)


async def ensure_list(pool: asyncpg.Pool, actor: Actor, name: str) -> int:
    """The live list with this name (case-insensitive), created if there is none."""
    async with pool.acquire() as conn, conn.transaction():
        existing = await conn.fetchval(
            "SELECT id FROM static_lists WHERE lower(name) = lower($1) AND deleted_at IS NULL", name
        )
        if existing is not None:
            return int(existing)
        list_id = await conn.fetchval(
            "INSERT INTO static_lists (name, created_by) VALUES ($1, $2) RETURNING id", name, actor.user_id
        )
        await audit.record(conn, actor, "list.create", "static_list", list_id, {"name": name})
        return int(list_id)


async def create(pool: asyncpg.Pool, actor: Actor, name: str, description: str) -> StaticList:
    async with pool.acquire() as conn, conn.transaction():
        try:
            list_id = await conn.fetchval(
                "INSERT INTO static_lists (name, description, created_by) VALUES ($1, $2, $3) RETURNING id",
                name,
                description,
                actor.user_id,
            )
        except asyncpg.UniqueViolationError:
            raise ListNameTaken(f"a list named {name!r} exists already") from None
        await audit.record(conn, actor, "list.create", "static_list", list_id, {"name": name})
    return await get(pool, list_id)


async def get(pool: asyncpg.Pool, list_id: int) -> StaticList:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM static_lists l WHERE l.id = $1 AND l.deleted_at IS NULL", list_id
    )
    if row is None:
        raise ListNotFound(f"list {list_id} does not exist")
    return StaticList(**dict(row))


async def page(pool: asyncpg.Pool, *, limit: int, after_id: int | None) -> list[StaticList]:
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM static_lists l
             WHERE l.deleted_at IS NULL AND ($2::bigint IS NULL OR l.id > $2) ORDER BY l.id LIMIT $1""",
        limit,
        after_id,
    )
    return [StaticList(**dict(row)) for row in rows]


async def delete(pool: asyncpg.Pool, actor: Actor, list_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        if (
            await conn.fetchval(
                "UPDATE static_lists SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING id", list_id
            )
            is None
        ):
            raise ListNotFound(f"list {list_id} does not exist")
        await audit.record(conn, actor, "list.delete", "static_list", list_id)


def _selection(contact_ids: Sequence[int] | None, definition: Any, first_param: int) -> tuple[str, list[Any]]:
    """SQL selecting live contact ids (``c.id``) by explicit ids or by filter; raises FilterError."""
    if contact_ids is not None:
        return (
            f"SELECT c.id FROM contacts c WHERE c.id = ANY(${first_param}::bigint[]) AND c.deleted_at IS NULL",
            [list(contact_ids)],
        )
    compiled = compile_filter(definition, first_param=first_param)
    sql = (
        "SELECT c.id FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id"
        f" WHERE c.deleted_at IS NULL AND {compiled.sql}"
    )
    return sql, compiled.params


async def add_members(
    pool: asyncpg.Pool, actor: Actor, list_id: int, *, contact_ids: Sequence[int] | None = None, definition: Any = None
) -> int:
    """Add contacts by ids or by filter (all that match, not a page of them); return how many were new."""
    selection, params = _selection(contact_ids, definition, first_param=3)
    async with pool.acquire() as conn, conn.transaction():
        await _lock_list(conn, list_id)
        added = await conn.fetchval(
            f"""WITH added AS (
                  INSERT INTO list_members (list_id, contact_id, added_by)
                  SELECT $1, id, $2 FROM ({selection}) picked
                  ON CONFLICT DO NOTHING RETURNING 1)
                SELECT count(*) FROM added""",
            list_id,
            actor.user_id,
            *params,
        )
        await conn.execute("UPDATE static_lists SET updated_at = now() WHERE id = $1", list_id)
        await audit.record(conn, actor, "list.add_members", "static_list", list_id, {"added": added})
    return int(added)


async def remove_members(
    pool: asyncpg.Pool, actor: Actor, list_id: int, *, contact_ids: Sequence[int] | None = None, definition: Any = None
) -> int:
    selection, params = _selection(contact_ids, definition, first_param=2)
    async with pool.acquire() as conn, conn.transaction():
        await _lock_list(conn, list_id)
        removed = await conn.fetchval(
            f"""WITH removed AS (
                  DELETE FROM list_members WHERE list_id = $1 AND contact_id IN ({selection}) RETURNING 1)
                SELECT count(*) FROM removed""",
            list_id,
            *params,
        )
        await conn.execute("UPDATE static_lists SET updated_at = now() WHERE id = $1", list_id)
        await audit.record(conn, actor, "list.remove_members", "static_list", list_id, {"removed": removed})
    return int(removed)


async def _lock_list(conn: asyncpg.Connection, list_id: int) -> None:
    if (
        await conn.fetchval("SELECT id FROM static_lists WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", list_id)
        is None
    ):
        raise ListNotFound(f"list {list_id} does not exist")


async def members_page(pool: asyncpg.Pool, list_id: int, *, limit: int, after_id: int | None) -> list[ContactRow]:
    await get(pool, list_id)
    rows = await pool.fetch(
        f"""SELECT {CONTACT_COLUMNS} FROM list_members lm
              JOIN contacts c ON c.id = lm.contact_id AND c.deleted_at IS NULL
              LEFT JOIN accounts a ON a.id = c.account_id
             WHERE lm.list_id = $1 AND ($3::bigint IS NULL OR c.id > $3)
             ORDER BY c.id LIMIT $2""",
        list_id,
        limit,
        after_id,
    )
    return [ContactRow(**dict(row)) for row in rows]
