"""Static lists: named sets of contacts."""

from __future__ import annotations

import asyncpg

from crm import audit
from crm.audit import Actor


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
