"""Consent per contact and channel: an append-only history whose latest entry is the current state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audit import Actor

STATUSES = ("granted", "withdrawn", "unknown")
LAWFUL_BASES = ("consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests")
SOURCES = ("import", "api", "manual", "agent", "system")


class ContactNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    id: int
    contact_id: int
    channel: str
    status: str
    lawful_basis: str | None
    source: str
    proof: dict[str, Any]
    recorded_at: datetime
    recorded_by: int | None
    created_at: datetime


_COLUMNS = "id, contact_id, channel, status, lawful_basis, source, proof, recorded_at, recorded_by, created_at"


async def record(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    contact_id: int,
    channel: str,
    status: str,
    lawful_basis: str | None,
    source: str,
    proof: dict[str, Any],
    recorded_at: datetime | None = None,
) -> ConsentEntry:
    """Append one entry (in the caller's transaction if any); it is durable when this returns."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT 1 FROM contacts WHERE id = $1 AND deleted_at IS NULL", contact_id):
            raise ContactNotFound(f"contact {contact_id} does not exist")
        row = await conn.fetchrow(
            f"""INSERT INTO consents (contact_id, channel, status, lawful_basis, source, proof, recorded_at,
                                      recorded_by)
                VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), $8) RETURNING {_COLUMNS}""",
            contact_id, channel, status, lawful_basis, source, proof, recorded_at, actor.user_id,
        )  # fmt: skip
        await audit.record(
            conn, actor, "consent.recorded", "contact", contact_id,
            {"channel": channel, "status": status, "lawful_basis": lawful_basis, "consent_id": row["id"]},
        )  # fmt: skip
    return ConsentEntry(**dict(row))


async def history(pool: asyncpg.Pool, contact_id: int, channel: str | None = None) -> list[ConsentEntry]:
    """Newest first: the first entry per channel is the current state."""
    if not await pool.fetchval("SELECT 1 FROM contacts WHERE id = $1 AND deleted_at IS NULL", contact_id):
        raise ContactNotFound(f"contact {contact_id} does not exist")
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM consents WHERE contact_id = $1 AND ($2::contact_channel IS NULL OR channel = $2)
             ORDER BY recorded_at DESC, id DESC""",
        contact_id,
        channel,
    )
    return [ConsentEntry(**dict(row)) for row in rows]


def current(entries: list[ConsentEntry]) -> dict[str, str]:
    """Current status per channel from a newest-first history ("unknown" where nothing is recorded)."""
    state = {"phone": "unknown", "email": "unknown"}
    seen: set[str] = set()
    for entry in entries:
        if entry.channel not in seen:
            seen.add(entry.channel)
            state[entry.channel] = entry.status
    return state
