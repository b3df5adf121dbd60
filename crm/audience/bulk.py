"""Bulk changes to contacts over a selection (ids, or every contact a filter matches), each in one transaction.

A field update writes only the contacts whose value differs and records the change in ``field_sources`` as an
API change; a soft delete stamps ``deleted_at`` (the contact leaves every list, segment and export, and its
history stays). Both are audited with the selection and the count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from crm import audit
from crm.audience.filters import compile_filter
from crm.audience.records import api_source
from crm.audience.rows import COUNTRIES, known_zone
from crm.audit import Actor

#: field -> column; values are validated by :func:`check_value`.
UPDATABLE = {
    "first_name": "first_name",
    "last_name": "last_name",
    "job_title": "job_title",
    "country": "country",
    "timezone": "timezone",
}
_CUSTOM = re.compile(r"^custom\.([A-Za-z][A-Za-z0-9_]{0,62})$")


class BulkError(ValueError):
    """The field or value cannot be applied; the message says which."""


def check_value(field: str, value: str | None) -> str | None:
    if field not in UPDATABLE and not _CUSTOM.match(field):
        raise BulkError(f"field {field!r} cannot be bulk-updated (use one of {sorted(UPDATABLE)} or custom.<name>)")
    if value is not None and len(value) > 500:
        raise BulkError("value longer than 500 characters")
    if field == "country" and value is not None and value.upper() not in COUNTRIES:
        raise BulkError(f"{value!r} is not an ISO 3166 alpha-2 country code")
    if field == "timezone" and value is not None and not known_zone(value):
        raise BulkError(f"{value!r} is not an IANA time zone")
    if field in ("first_name", "last_name", "job_title") and value is None:
        return ""
    return value.upper() if field == "country" and value else value


def _selection(contact_ids: Sequence[int] | None, definition: Any, first_param: int) -> tuple[str, list[Any]]:
    if contact_ids is not None:
        return f"c.id = ANY(${first_param}::bigint[])", [list(contact_ids)]
    compiled = compile_filter(definition, first_param=first_param)
    return compiled.sql, compiled.params


async def update_field(
    pool: asyncpg.Pool,
    actor: Actor,
    *,
    field: str,
    value: str | None,
    contact_ids: Sequence[int] | None = None,
    definition: Any = None,
) -> tuple[int, int]:
    """Set ``field`` on every selected live contact; return ``(matched, changed)``."""
    value = check_value(field, value)
    custom = _CUSTOM.match(field)
    where, params = _selection(contact_ids, definition, first_param=3)
    if custom:
        key = custom.group(1)
        current = f"(c.custom_fields ->> '{key}')"  # key matched [A-Za-z][A-Za-z0-9_]*: safe as a literal
        new_value = (
            f"CASE WHEN $1::text IS NULL THEN c.custom_fields - '{key}'"
            f" ELSE c.custom_fields || jsonb_build_object('{key}', $1::text) END"
        )
        column = "custom_fields"
    else:
        column = UPDATABLE[field]
        current, new_value = f"c.{column}", "$1::text"
    async with pool.acquire() as conn, conn.transaction():
        source_id = await api_source(conn, actor, f"bulk update of {field}")
        base = f"FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id WHERE c.deleted_at IS NULL AND {where}"
        count_where, count_params = _selection(contact_ids, definition, first_param=1)
        matched = await conn.fetchval(
            "SELECT count(*) FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id"
            f" WHERE c.deleted_at IS NULL AND {count_where}",
            *count_params,
        )
        changed = await conn.fetchval(
            f"""WITH changed AS (
                  UPDATE contacts c SET {column} = {new_value}, updated_at = now(), last_source_id = $2,
                         field_sources = c.field_sources || jsonb_build_object('{column}', $2::bigint)
                   WHERE c.id IN (SELECT c.id {base}) AND {current} IS DISTINCT FROM $1::text
                  RETURNING 1)
                SELECT count(*) FROM changed""",
            value,
            source_id,
            *params,
        )
        detail = {"field": field, "value": value, "matched": matched, "changed": changed}
        await audit.record(
            conn, actor, "contacts.bulk_update", "contact", None, detail | _describe(contact_ids, definition)
        )
    return int(matched), int(changed)


async def soft_delete(
    pool: asyncpg.Pool, actor: Actor, *, contact_ids: Sequence[int] | None = None, definition: Any = None
) -> int:
    where, params = _selection(contact_ids, definition, first_param=1)
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            f"""WITH deleted AS (
                  UPDATE contacts SET deleted_at = now(), updated_at = now()
                   WHERE id IN (SELECT c.id FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id
                                 WHERE c.deleted_at IS NULL AND {where})
                  RETURNING 1)
                SELECT count(*) FROM deleted""",
            *params,
        )
        await audit.record(
            conn,
            actor,
            "contacts.bulk_delete",
            "contact",
            None,
            {"deleted": deleted, **_describe(contact_ids, definition)},
        )
    return int(deleted)


def _describe(contact_ids: Sequence[int] | None, definition: Any) -> dict[str, Any]:
    return {"contact_ids": list(contact_ids)[:100]} if contact_ids is not None else {"filter": definition}
