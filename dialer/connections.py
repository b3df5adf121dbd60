"""Telephony connections (our CRM's "SIP trunks") and agents' softphone credentials, secrets sealed at rest.

API keys and SIP passwords are encrypted with ``nacl.secret.SecretBox`` (XSalsa20-Poly1305, a random nonce
each time) under ``telephony.secrets_key``; nothing returns them. One connection is the default (a partial
unique index holds it); switching the default is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from crm import audit
from crm.audit import Actor


class TelephonyError(LookupError):
    """No such connection, or it cannot serve the request; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sealer:
    """Encrypts and decrypts secrets for storage."""

    def __init__(self, key: bytes) -> None:
        self._box = SecretBox(key)

    def seal(self, secret: str) -> bytes:
        return bytes(self._box.encrypt(secret.encode()))

    def open(self, sealed: bytes) -> str:
        try:
            return self._box.decrypt(sealed).decode()
        except CryptoError:
            raise TelephonyError(
                503,
                "a stored carrier secret cannot be decrypted: was telephony.secrets_key changed? Set the API key again",
            ) from None


@dataclass(frozen=True)
class Connection:
    id: int
    name: str
    provider: str
    connection_id: str
    credential_connection_id: str | None
    has_api_key: bool
    public_key: str | None
    max_channels: int | None
    max_dials_per_second: int
    is_default: bool
    is_active: bool
    created_at: datetime
    updated_at: datetime


_SELECT = f"""SELECT {", ".join(f.name for f in fields(Connection) if f.name != "has_api_key")},
                     api_key_encrypted IS NOT NULL AS has_api_key
                FROM telephony_connections WHERE deleted_at IS NULL"""
EDITABLE = ("name", "connection_id", "credential_connection_id", "public_key", "max_channels",
            "max_dials_per_second", "is_active")  # fmt: skip


async def list_connections(pool: asyncpg.Pool) -> list[Connection]:
    return [Connection(**dict(row)) for row in await pool.fetch(f"{_SELECT} ORDER BY id")]


async def get(pool: asyncpg.Pool | asyncpg.Connection, connection_id: int) -> Connection:
    row = await pool.fetchrow(f"{_SELECT} AND id = $1", connection_id)
    if row is None:
        raise TelephonyError(404, f"telephony connection {connection_id} does not exist")
    return Connection(**dict(row))


async def create(pool: asyncpg.Pool, actor: Actor, sealer: Sealer, fields_: dict[str, Any]) -> Connection:
    async with pool.acquire() as conn, conn.transaction():
        first = not await conn.fetchval("SELECT 1 FROM telephony_connections WHERE deleted_at IS NULL LIMIT 1")
        if fields_.get("is_default") or first:  # the first connection is the default
            await conn.execute(
                "UPDATE telephony_connections SET is_default = false, updated_at = now() WHERE is_default"
            )
        values = {key: fields_[key] for key in EDITABLE if key in fields_}
        values["is_default"] = bool(fields_.get("is_default")) or first
        if values["is_default"] and fields_.get("is_active") is False:
            raise TelephonyError(409, "an inactive connection cannot be the default")
        if fields_.get("api_key"):
            values["api_key_encrypted"] = sealer.seal(fields_["api_key"])
        names = list(values)
        try:
            new_id = await conn.fetchval(
                f"""INSERT INTO telephony_connections ({", ".join(names)})
                    VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING id""",
                *values.values(),
            )
        except asyncpg.UniqueViolationError:
            raise TelephonyError(409, f"a connection named {fields_.get('name')!r} exists already") from None
        await audit.record(conn, actor, "telephony_connection.created", "telephony_connection", new_id,
                           {k: v for k, v in values.items() if k != "api_key_encrypted"})  # fmt: skip
        return await get(conn, new_id)


async def update(
    pool: asyncpg.Pool, actor: Actor, sealer: Sealer, connection_id: int, fields_: dict[str, Any]
) -> Connection:
    async with pool.acquire() as conn, conn.transaction():
        current = await get(conn, connection_id)
        values = {key: fields_[key] for key in EDITABLE if key in fields_}
        if "api_key" in fields_:
            values["api_key_encrypted"] = sealer.seal(fields_["api_key"]) if fields_["api_key"] else None
        will_be_active = values.get("is_active", current.is_active)
        if fields_.get("is_default") is True and not will_be_active:
            raise TelephonyError(409, "an inactive connection cannot be the default; activate it too")
        if fields_.get("is_default") is True and not current.is_default:
            await conn.execute(
                "UPDATE telephony_connections SET is_default = false, updated_at = now() WHERE is_default"
            )
            values["is_default"] = True
        elif fields_.get("is_default") is False and current.is_default:
            raise TelephonyError(409, "make another connection the default instead")
        if values.get("is_active") is False and (current.is_default and "is_default" not in values):
            raise TelephonyError(409, "the default connection cannot be deactivated; make another the default")
        if values:
            assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, start=2))
            try:
                await conn.execute(
                    f"UPDATE telephony_connections SET {assignments}, updated_at = now() WHERE id = $1",
                    connection_id, *values.values(),
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise TelephonyError(409, f"a connection named {fields_.get('name')!r} exists already") from None
            changed = sorted(name.removesuffix("_encrypted") for name in values)
            await audit.record(conn, actor, "telephony_connection.updated", "telephony_connection", connection_id,
                               {"fields": changed})  # fmt: skip
        return await get(conn, connection_id)


async def delete(pool: asyncpg.Pool, actor: Actor, connection_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        current = await get(conn, connection_id)
        if current.is_default:
            raise TelephonyError(409, "the default connection cannot be deleted; make another the default first")
        await conn.execute(
            "UPDATE telephony_connections SET deleted_at = now(), is_active = false, updated_at = now() WHERE id = $1",
            connection_id,
        )
        await audit.record(conn, actor, "telephony_connection.deleted", "telephony_connection", connection_id)


async def api_key(pool: asyncpg.Pool, sealer: Sealer, connection_id: int) -> str | None:
    sealed = await pool.fetchval("SELECT api_key_encrypted FROM telephony_connections WHERE id = $1", connection_id)
    return sealer.open(sealed) if sealed is not None else None


async def default_connection(pool: asyncpg.Pool) -> Connection:
    row = await pool.fetchrow(f"{_SELECT} AND is_default AND is_active")
    if row is None:
        raise TelephonyError(503, "no active default telephony connection is configured")
    return Connection(**dict(row))
