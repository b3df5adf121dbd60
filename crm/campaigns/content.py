"""Call scripts, qualification forms and disposition catalogues in PostgreSQL. Each edit bumps a version; a
script or form a live campaign uses cannot be deleted."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from crm import audit
from crm.audit import Actor
from crm.campaigns.forms import FormField
from crm.campaigns.scripts import check


class ContentNotFound(LookupError):
    pass


class ContentConflict(ValueError):
    pass


class ContentInvalid(ValueError):
    """Well-formed but contradictory (422)."""


class ScriptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    body: str = Field("", max_length=50_000)

    @field_validator("body")
    @classmethod
    def _merge_fields(cls, value: str) -> str:
        check(value)
        return value


class FormBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    description: str = Field("", max_length=2000)
    fields: list[FormField] = Field(max_length=100)

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[FormField]) -> list[FormField]:
        keys = [f.key for f in value]
        if len(set(keys)) != len(keys):
            raise ValueError("field keys repeat")
        return value


class DispositionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    label: str = Field(min_length=1, max_length=200)
    is_positive: bool = False
    is_dnc: bool = False
    is_callback: bool = False
    is_final: bool = False
    retry_after_minutes: int | None = Field(None, ge=0, le=525_600)
    hotkey: str | None = Field(None, pattern=r"^[0-9A-Za-z]$")


class CatalogueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    description: str = Field("", max_length=2000)
    copy_from: int | None = Field(None, ge=1, le=2**63 - 1, description="start from this catalogue's dispositions")
    dispositions: list[DispositionBody] = Field(default_factory=list, max_length=100)


_KINDS = {"script": ("scripts", "name, body"), "form": ("qualification_forms", "name, description, fields")}


async def _in_use(conn: asyncpg.Connection, column: str, item_id: int) -> bool:
    return bool(await conn.fetchval(
        f"""SELECT 1 FROM campaigns WHERE {column} = $1 AND deleted_at IS NULL
              AND status NOT IN ('completed', 'archived') LIMIT 1""",
        item_id,
    ))  # fmt: skip


async def save(
    pool: asyncpg.Pool, actor: Actor, kind: str, values: dict[str, Any], item_id: int | None
) -> dict[str, Any]:
    """Create (``item_id`` None) or replace a script or form; a name in use by another is a conflict."""
    table, _ = _KINDS[kind]
    names = list(values)
    async with pool.acquire() as conn, conn.transaction():
        try:
            if item_id is None:
                item_id = await conn.fetchval(
                    f"""INSERT INTO {table} ({", ".join(names)}, created_by)
                        VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}, ${len(names) + 1})
                        RETURNING id""",
                    *values.values(), actor.user_id,
                )  # fmt: skip
                action = "created"
            else:
                sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, start=2))
                found = await conn.fetchval(
                    f"""UPDATE {table} SET {sets}, version = version + 1, updated_at = now()
                         WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
                    item_id, *values.values(),
                )  # fmt: skip
                if found is None:
                    raise ContentNotFound(f"{kind} {item_id} does not exist")
                action = "updated"
        except asyncpg.UniqueViolationError:
            raise ContentConflict(f"a {kind} named {values['name']!r} exists already") from None
        await audit.record(conn, actor, f"{kind}.{action}", kind, item_id, {"name": values["name"]})
        return await get(conn, kind, item_id)


async def get(conn: asyncpg.Pool | asyncpg.Connection, kind: str, item_id: int) -> dict[str, Any]:
    table, columns = _KINDS[kind]
    row = await conn.fetchrow(
        f"""SELECT id, {columns}, version, created_by, created_at, updated_at FROM {table}
             WHERE id = $1 AND deleted_at IS NULL""",
        item_id,
    )
    if row is None:
        raise ContentNotFound(f"{kind} {item_id} does not exist")
    return dict(row)


async def page(pool: asyncpg.Pool, kind: str, *, limit: int, after_id: int | None) -> list[dict[str, Any]]:
    table, columns = _KINDS[kind]
    rows = await pool.fetch(
        f"""SELECT id, {columns}, version, created_by, created_at, updated_at FROM {table}
             WHERE deleted_at IS NULL AND id > $1 ORDER BY id LIMIT $2""",
        after_id or 0, limit,
    )  # fmt: skip
    return [dict(row) for row in rows]


async def delete(pool: asyncpg.Pool, actor: Actor, kind: str, item_id: int) -> None:
    table, _ = _KINDS[kind]
    column = "script_id" if kind == "script" else "qualification_form_id"
    async with pool.acquire() as conn, conn.transaction():
        # Locked first: a campaign being pointed at it now either commits before (and is seen) or waits.
        await conn.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", item_id)
        if await _in_use(conn, column, item_id):
            raise ContentConflict(f"a campaign that has not completed uses this {kind}")
        found = await conn.fetchval(
            f"UPDATE {table} SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL RETURNING id",
            item_id,
        )
        if found is None:
            raise ContentNotFound(f"{kind} {item_id} does not exist")
        await audit.record(conn, actor, f"{kind}.deleted", kind, item_id)


_DISPOSITION_COLUMNS = ("code", "label", "is_positive", "is_dnc", "is_callback", "is_final", "is_system",
                        "retry_after_minutes", "hotkey", "sort_order")  # fmt: skip


async def catalogues(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT c.id, c.code, c.name, c.description,
                   coalesce((SELECT jsonb_agg(jsonb_build_object({", ".join(f"'{n}', d.{n}" for n in
                                      ("id", *_DISPOSITION_COLUMNS))}) ORDER BY d.sort_order, d.id)
                               FROM dispositions d WHERE d.catalogue_id = c.id AND d.deleted_at IS NULL), '[]')
                     AS dispositions
              FROM disposition_catalogues c WHERE c.deleted_at IS NULL ORDER BY c.id"""
    )  # fmt: skip
    return [dict(row) for row in rows]


async def create_catalogue(pool: asyncpg.Pool, actor: Actor, body: CatalogueBody) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        try:
            catalogue_id = await conn.fetchval(
                "INSERT INTO disposition_catalogues (code, name, description) VALUES ($1, $2, $3) RETURNING id",
                body.code, body.name, body.description,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise ContentConflict(f"a catalogue with code {body.code!r} exists already") from None
        if body.copy_from is not None:
            copied = await conn.fetchval(
                f"""WITH copied AS (
                      INSERT INTO dispositions (catalogue_id, {", ".join(_DISPOSITION_COLUMNS)})
                      SELECT $1, {", ".join(_DISPOSITION_COLUMNS)} FROM dispositions
                       WHERE catalogue_id = $2 AND deleted_at IS NULL RETURNING 1)
                    SELECT count(*) FROM copied""",
                catalogue_id, body.copy_from,
            )  # fmt: skip
            if not copied:
                raise ContentNotFound(f"catalogue {body.copy_from} does not exist or is empty")
        for order, item in enumerate(body.dispositions, start=1):
            try:
                await conn.execute(
                    """INSERT INTO dispositions (catalogue_id, code, label, is_positive, is_dnc, is_callback,
                                                 is_final, retry_after_minutes, hotkey, sort_order)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                       ON CONFLICT (catalogue_id, code) DO UPDATE SET label = EXCLUDED.label,
                         is_positive = EXCLUDED.is_positive, is_dnc = EXCLUDED.is_dnc,
                         is_callback = EXCLUDED.is_callback, is_final = EXCLUDED.is_final,
                         retry_after_minutes = EXCLUDED.retry_after_minutes, hotkey = EXCLUDED.hotkey
                       WHERE NOT dispositions.is_system""",
                    catalogue_id, item.code, item.label, item.is_positive, item.is_dnc, item.is_callback,
                    item.is_final, item.retry_after_minutes, item.hotkey, 1000 + order,
                )  # fmt: skip
            except asyncpg.CheckViolationError:
                raise ContentInvalid(
                    f"{item.code}: a DNC outcome is final and not positive; a callback is not final"
                ) from None
            system = await conn.fetchval(
                "SELECT is_system FROM dispositions WHERE catalogue_id = $1 AND code = $2", catalogue_id, item.code
            )
            if system:
                raise ContentInvalid(f"{item.code} is an outcome the dialer sets itself; choose another code")
        await audit.record(conn, actor, "disposition_catalogue.created", "disposition_catalogue", catalogue_id,
                           {"code": body.code})  # fmt: skip
    return next(c for c in await catalogues(pool) if c["id"] == catalogue_id)
