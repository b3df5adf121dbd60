"""Suppressions in PostgreSQL: add (or renew), lift, list, look up. Every change NOTIFYs the nodes.

A write commits the row, its audit entry and the change event together: when the caller is told "saved",
the suppression is durable, and every node's index receives it within moments (``feed``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audience.domains import normalise_domain
from crm.audience.emails import normalise_email
from crm.audience.phones import normalise_phone
from crm.audit import Actor
from crm.compliance.feed import NOTIFY_CHANNEL

CHANNELS = ("phone", "email", "domain")
SCOPES = ("global", "campaign")
SOURCES = ("manual", "import", "api", "agent", "unsubscribe", "bounce", "complaint", "carrier")


class SuppressionError(ValueError):
    """A value or option is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SuppressionNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Suppression:
    id: int
    channel: str
    scope: str
    campaign_id: int | None
    value: str
    source: str
    reason: str
    detail: dict[str, Any]
    added_by: int | None
    added_at: datetime
    expires_at: datetime | None
    lifted_at: datetime | None
    lifted_by: int | None
    lift_reason: str | None

    def in_force(self, now: datetime) -> bool:
        return self.lifted_at is None and (self.expires_at is None or self.expires_at > now)


_COLUMNS = ", ".join(f.name for f in fields(Suppression))


def normalise_value(channel: str, raw: str, region: str) -> str:
    """The stored form of a value: E.164, a lower-case address, or a normalised domain."""
    if channel == "phone":
        phone = normalise_phone(raw, region)
        if phone.e164 is None:
            why = phone.invalid_reason or ""
            raise SuppressionError("value", why if why.startswith("not a") else f"not a phone number: {why}")
        return phone.e164
    if channel == "email":
        email = normalise_email(raw)
        if email.email is None:
            raise SuppressionError("value", f"not an e-mail address: {email.invalid_reason}")
        return email.email.lower()  # unsubscribes match any capitalisation of the local part
    if channel == "domain":
        domain = normalise_domain(raw)
        if domain.domain is None:
            raise SuppressionError("value", f"not a company domain: {domain.invalid_reason}")
        return domain.domain
    raise SuppressionError("channel", f"expected one of {', '.join(CHANNELS)}")


#: An entry that has lapsed (expired, never lifted) is replaced by a renewal as if it were new.
LAPSED = "(s.expires_at IS NOT NULL AND s.expires_at <= now())"
#: A renewal never shortens an entry in force: permanent stays permanent, otherwise the later expiry wins.
RENEWED_EXPIRY = f"""CASE WHEN {LAPSED} THEN EXCLUDED.expires_at
                          WHEN s.expires_at IS NULL OR EXCLUDED.expires_at IS NULL THEN NULL
                          ELSE greatest(s.expires_at, EXCLUDED.expires_at) END"""


def change_event(op: str, row: Suppression | asyncpg.Record) -> dict[str, Any]:
    get = row.__getitem__ if isinstance(row, asyncpg.Record) else lambda name: getattr(row, name)
    expires = get("expires_at")
    return {
        "op": op,
        "channel": get("channel"),
        "campaign_id": get("campaign_id"),
        "value": get("value"),
        "expires": int(expires.timestamp()) if expires is not None else 0,
        "at": time.time(),
    }


async def notify(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
    """Queue a change event; PostgreSQL delivers it to every listening node when the transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps(event, separators=(",", ":")))


async def add(
    conn: asyncpg.Connection,
    actor: Actor,
    *,
    channel: str,
    value: str,
    scope: str = "global",
    campaign_id: int | None = None,
    source: str = "api",
    reason: str = "",
    expires_at: datetime | None = None,
    detail: dict[str, Any] | None = None,
) -> tuple[Suppression, bool]:
    """Add a suppression, or renew the one in force for the same value; return it and whether it is new.

    A renewal can only lengthen an entry in force (a permanent one stays permanent) and keeps its source and
    reason (the audit log records the renewal); an entry that has lapsed is replaced.

    ``value`` must be normalised (``normalise_value``). Runs in the caller's transaction when there is one:
    a DNC disposition or an unsubscribe commits its suppression with its own writes.
    """
    if (scope == "campaign") != (campaign_id is not None):
        raise SuppressionError("campaign_id", "required for a campaign suppression, and only for one")
    async with conn.transaction():
        if campaign_id is not None and not await conn.fetchval(
            "SELECT 1 FROM campaigns WHERE id = $1 AND deleted_at IS NULL", campaign_id
        ):
            raise SuppressionError("campaign_id", f"campaign {campaign_id} does not exist")
        row = await conn.fetchrow(
            f"""INSERT INTO suppressions AS s (channel, scope, campaign_id, value, source, reason, detail, added_by,
                                               expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (channel, scope, campaign_id, value) WHERE lifted_at IS NULL
                DO UPDATE SET expires_at = {RENEWED_EXPIRY},
                              source = CASE WHEN {LAPSED} THEN EXCLUDED.source ELSE s.source END,
                              reason = CASE WHEN {LAPSED} THEN EXCLUDED.reason ELSE s.reason END,
                              detail = CASE WHEN {LAPSED} THEN EXCLUDED.detail ELSE s.detail END,
                              added_by = CASE WHEN {LAPSED} THEN EXCLUDED.added_by ELSE s.added_by END,
                              added_at = CASE WHEN {LAPSED} THEN now() ELSE s.added_at END,
                              updated_at = now()
                RETURNING {_COLUMNS}, (xmax = 0) AS created""",
            channel, scope, campaign_id, value, source, reason, detail or {}, actor.user_id, expires_at,
        )  # fmt: skip
        created = bool(row["created"])
        suppression = Suppression(**{f.name: row[f.name] for f in fields(Suppression)})
        await notify(conn, change_event("add", suppression))
        await audit.record(
            conn, actor, "suppression.added" if created else "suppression.renewed", "suppression", suppression.id,
            {"channel": channel, "scope": scope, "campaign_id": campaign_id, "value": value, "source": source},
        )  # fmt: skip
    return suppression, created


async def lift(pool: asyncpg.Pool, actor: Actor, suppression_id: int, reason: str) -> Suppression:
    """Lift (never delete) a suppression; the row stays for the record."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE suppressions SET lifted_at = now(), lifted_by = $2, lift_reason = $3, updated_at = now()
                 WHERE id = $1 AND lifted_at IS NULL RETURNING {_COLUMNS}""",
            suppression_id,
            actor.user_id,
            reason,
        )
        if row is None:
            exists = await conn.fetchval("SELECT lifted_at IS NOT NULL FROM suppressions WHERE id = $1", suppression_id)
            if exists is None:
                raise SuppressionNotFound(f"suppression {suppression_id} does not exist")
            raise SuppressionError("id", f"suppression {suppression_id} was lifted already")
        await notify(conn, change_event("lift", row))
        await audit.record(conn, actor, "suppression.lifted", "suppression", suppression_id, {"reason": reason})
    return Suppression(**{f.name: row[f.name] for f in fields(Suppression)})


async def get(pool: asyncpg.Pool, suppression_id: int) -> Suppression:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM suppressions WHERE id = $1", suppression_id)
    if row is None:
        raise SuppressionNotFound(f"suppression {suppression_id} does not exist")
    return Suppression(**dict(row))


async def search(
    pool: asyncpg.Pool,
    *,
    channel: str | None = None,
    scope: str | None = None,
    campaign_id: int | None = None,
    value_prefix: str | None = None,
    include_lifted: bool = False,
    limit: int = 50,
    after_id: int | None = None,
) -> list[Suppression]:
    """Newest first, by id; ``after_id`` continues below that id."""
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM suppressions
             WHERE ($1::suppression_channel IS NULL OR channel = $1)
               AND ($2::suppression_scope IS NULL OR scope = $2)
               AND ($3::bigint IS NULL OR campaign_id = $3)
               AND ($4::text IS NULL OR starts_with(value, $4))
               AND ($5 OR lifted_at IS NULL)
               AND ($6::bigint IS NULL OR id < $6)
             ORDER BY id DESC LIMIT $7""",
        channel, scope, campaign_id, value_prefix, include_lifted, after_id, limit,
    )  # fmt: skip
    return [Suppression(**dict(row)) for row in rows]


async def in_force_for(
    pool: asyncpg.Pool, values: list[tuple[str, str]], campaign_id: int | None = None
) -> list[Suppression]:
    """Entries in force that block any of ``(channel, value)``: global ones, and the campaign's if given."""
    if not values:
        return []
    rows = await pool.fetch(
        f"""SELECT {_COLUMNS} FROM suppressions s
             WHERE (s.channel::text, s.value) IN (SELECT * FROM unnest($1::text[], $2::text[]))
               AND s.lifted_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now())
               AND (s.scope = 'global' OR s.campaign_id = $3)
             ORDER BY s.id""",
        [channel for channel, _ in values],
        [value for _, value in values],
        campaign_id,
    )
    return [Suppression(**dict(row)) for row in rows]
