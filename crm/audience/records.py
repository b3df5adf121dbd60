"""Single accounts and contacts written through the API: the same normalisation and identity rules as
imports, each write traced to a record source of kind ``api`` (per field, in ``field_sources``)."""

from __future__ import annotations

from typing import Any

import asyncpg

from crm import audit
from crm.audience.domains import normalise_domain
from crm.audience.emails import normalise_email
from crm.audience.phones import normalise_phone
from crm.audience.rows import COUNTRIES, known_zone
from crm.audit import Actor


class RecordError(ValueError):
    """A value is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RecordNotFound(LookupError):
    pass


class IdentityTaken(ValueError):
    """Another live record already has this identity (domain for accounts, e-mail for contacts)."""


#: The unique indexes that are identities, and how to say so.
_IDENTITIES = {
    "accounts_domain_idx": "a live account with this domain exists already",
    "contacts_lower_email_idx": "a live contact with this e-mail exists already",
}


def _identity_error(exc: asyncpg.UniqueViolationError) -> Exception:
    message = _IDENTITIES.get(getattr(exc, "constraint_name", None) or "")
    return IdentityTaken(message) if message else exc


async def api_source(conn: asyncpg.Connection, actor: Actor, label: str) -> int:
    """A record source for one API change, so records and fields can say who set them."""
    source_id: int = await conn.fetchval(
        "INSERT INTO record_sources (kind, label, user_id, request_id) VALUES ('api', $1, $2, $3) RETURNING id",
        label,
        actor.user_id,
        actor.request_id,
    )
    return source_id


def _country(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in COUNTRIES:
        raise RecordError(field, "not an ISO 3166 alpha-2 country code")
    return value.upper()


def account_values(fields: dict[str, Any], default_region: str) -> dict[str, Any]:
    """Validate and normalise account fields given to the API (only those present)."""
    values: dict[str, Any] = {}
    if "name" in fields and not (fields["name"] or "").strip():
        raise RecordError("name", "an account needs a name")
    for key in ("name", "industry", "employee_count", "custom_fields"):
        if key in fields:
            values[key] = fields[key] if key != "custom_fields" or fields[key] is not None else {}
    if "office_country" in fields:
        values["office_country"] = _country("office_country", fields["office_country"])
    if "domain" in fields:
        if fields["domain"] is None:
            values["domain"] = values["registrable_domain"] = None
        else:
            domain = normalise_domain(fields["domain"])
            if domain.domain is None:
                raise RecordError("domain", str(domain.invalid_reason))
            values["domain"], values["registrable_domain"] = domain.domain, domain.registrable
    if "main_line" in fields:
        if fields["main_line"] is None:
            values["main_line_e164"] = None
        else:
            phone = normalise_phone(fields["main_line"], values.get("office_country") or default_region)
            if phone.e164 is None:
                raise RecordError("main_line", str(phone.invalid_reason))
            values["main_line_e164"] = phone.e164
    return values


def contact_values(fields: dict[str, Any], default_region: str) -> dict[str, Any]:
    """Validate and normalise contact fields. Invalid e-mails and phones are refused here (an API caller can
    correct them at once), unlike imports, which keep them with a reason."""
    values: dict[str, Any] = {}
    for key in ("first_name", "last_name", "job_title"):
        if key in fields:
            values[key] = fields[key] or ""
    if "account_id" in fields:
        values["account_id"] = fields["account_id"]
    if "custom_fields" in fields:
        values["custom_fields"] = fields["custom_fields"] or {}
    if "country" in fields:
        values["country"] = _country("country", fields["country"])
    if "timezone" in fields:
        if fields["timezone"] is not None and not known_zone(fields["timezone"]):
            raise RecordError("timezone", "not an IANA time zone")
        values["timezone"] = fields["timezone"]
    if "email" in fields:
        if fields["email"] is None:
            values.update(email=None, email_original=None, email_invalid_reason=None)
        else:
            email = normalise_email(fields["email"])
            if email.email is None:
                raise RecordError("email", str(email.invalid_reason))
            values.update(email=email.email, email_original=email.original, email_invalid_reason=None)
    if "phone" in fields:
        if fields["phone"] is None:
            values.update(phone_e164=None, phone_original=None, phone_invalid_reason=None, phone_extension=None)
        else:
            phone = normalise_phone(fields["phone"], values.get("country") or default_region)
            if phone.e164 is None:
                raise RecordError("phone", str(phone.invalid_reason))
            values.update(
                phone_e164=phone.e164, phone_original=phone.original, phone_country=phone.country,
                phone_line_type=phone.line_type, phone_extension=phone.extension, phone_invalid_reason=None,
            )  # fmt: skip
    return values


async def _insert(conn: asyncpg.Connection, table: str, values: dict[str, Any], source_id: int) -> int:
    columns = [*values, "source_id", "last_source_id"]
    params = [*values.values(), source_id, source_id]
    placeholders = ", ".join(f"${i}" for i in range(1, len(params) + 1))
    # Column names come from the validated dictionaries above, never from the request.
    record_id: int = await conn.fetchval(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id", *params
    )
    return record_id


async def create(pool: asyncpg.Pool, actor: Actor, table: str, values: dict[str, Any]) -> int:
    async with pool.acquire() as conn, conn.transaction():
        source_id = await api_source(conn, actor, f"API create in {table}")
        if table == "contacts" and values.get("email") is None and values.get("phone_e164") is None:
            raise RecordError("email", "a contact needs a valid e-mail or phone to be identified")
        try:
            record_id = await _insert(conn, table, values, source_id)
        except asyncpg.UniqueViolationError as exc:
            raise _identity_error(exc) from None
        except asyncpg.ForeignKeyViolationError:
            raise RecordError("account_id", "no such account") from None
        await audit.record(conn, actor, f"{table[:-1]}.create", table[:-1], record_id)
    return record_id


async def update(pool: asyncpg.Pool, actor: Actor, table: str, record_id: int, values: dict[str, Any]) -> int:
    """Write the values that differ; return how many fields changed (0: nothing written)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(f"SELECT * FROM {table} WHERE id = $1 AND deleted_at IS NULL FOR UPDATE", record_id)
        if row is None:
            raise RecordNotFound(f"{table[:-1]} {record_id} does not exist")
        if "custom_fields" in values and values["custom_fields"] is not None:
            values["custom_fields"] = {**row["custom_fields"], **values["custom_fields"]}
        keeps_identity = values.get("email", row["email"]) or values.get("phone_e164", row["phone_e164"])
        if table == "contacts" and not keeps_identity:
            raise RecordError("email", "a contact must keep a valid e-mail or phone to be identified")
        changed = {key: value for key, value in values.items() if row[key] != value}
        if not changed:
            return 0
        source_id = await api_source(conn, actor, f"API update of {table[:-1]} {record_id}")
        try:
            await _update(conn, table, record_id, source_id, changed)
        except asyncpg.UniqueViolationError as exc:
            raise _identity_error(exc) from None
        except asyncpg.ForeignKeyViolationError:
            raise RecordError("account_id", "no such account") from None
        await audit.record(conn, actor, f"{table[:-1]}.update", table[:-1], record_id, {"fields": sorted(changed)})
    return len(changed)


async def _update(
    conn: asyncpg.Connection, table: str, record_id: int, source_id: int, changed: dict[str, Any]
) -> None:
    params: list[Any] = [record_id, source_id, *changed.values()]
    assignments = [f"{key} = ${i}" for i, key in enumerate(changed, start=3)]
    assignments += ["last_source_id = $2", "updated_at = now()"]
    params.append({key: source_id for key in changed})
    assignments.append(f"field_sources = field_sources || ${len(params)}")
    # Column names are keys of the validated value dictionaries, never request text.
    await conn.execute(f"UPDATE {table} SET {', '.join(assignments)} WHERE id = $1", *params)


async def soft_delete(pool: asyncpg.Pool, actor: Actor, table: str, record_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            f"UPDATE {table} SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL"
            " RETURNING id",
            record_id,
        )
        if deleted is None:
            raise RecordNotFound(f"{table[:-1]} {record_id} does not exist")
        await audit.record(conn, actor, f"{table[:-1]}.delete", table[:-1], record_id)
