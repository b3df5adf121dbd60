"""The audit log: who changed what, written in the same transaction as the change itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, for the audit log: a user (None for the system itself) and the request it came in on."""

    user_id: int | None
    request_id: str | None = None
    client_ip: str | None = None


SYSTEM = Actor(user_id=None)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: int | None
    actor_email: str | None
    action: str
    entity_type: str
    entity_id: str | None
    detail: dict[str, Any]
    request_id: str | None
    client_ip: str | None


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: object,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor_id, action, entity_type, entity_id, detail, request_id, client_ip)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        actor.user_id,
        action,
        entity_type,
        None if entity_id is None else str(entity_id),
        detail or {},
        actor.request_id,
        actor.client_ip,
    )


async def list_entries(
    pool: asyncpg.Pool,
    *,
    limit: int,
    before_id: int | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    actor_id: int | None = None,
) -> list[AuditEntry]:
    """Newest first, keyset-paginated on id."""
    rows = await pool.fetch(
        """SELECT a.id, a.at, a.actor_id, u.email AS actor_email, a.action, a.entity_type, a.entity_id,
                  a.detail, a.request_id, a.client_ip
             FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
            WHERE ($2::bigint IS NULL OR a.id < $2)
              AND ($3::text IS NULL OR a.entity_type = $3)
              AND ($4::text IS NULL OR a.entity_id = $4)
              AND ($5::bigint IS NULL OR a.actor_id = $5)
            ORDER BY a.id DESC
            LIMIT $1""",
        limit,
        before_id,
        entity_type,
        entity_id,
        actor_id,
    )
    return [AuditEntry(**dict(row)) for row in rows]
