"""Other domains an account is known by (acquisitions, regional sites, old brands).

Domain-set matching treats an alias like the account's own domain (``domain_sets``). An alias is stored
normalised, like ``accounts.domain``; one domain names one live account, so an alias that is another
live account's domain or alias is refused rather than making matches ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from crm import audit
from crm.audience.domains import normalise_domain
from crm.audit import Actor


class AliasError(ValueError):
    """The domain is invalid or already names another account."""


class AccountNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Alias:
    domain: str
    registrable_domain: str | None
    created_at: datetime


async def _live_account(conn: asyncpg.Connection, account_id: int, *, lock: bool = False) -> None:
    found = await conn.fetchval(
        f"SELECT 1 FROM accounts WHERE id = $1 AND deleted_at IS NULL{' FOR UPDATE' if lock else ''}", account_id
    )
    if found is None:
        raise AccountNotFound(f"account {account_id} does not exist")


async def list_aliases(pool: asyncpg.Pool, account_id: int) -> list[Alias]:
    async with pool.acquire() as conn:
        await _live_account(conn, account_id)
        rows = await conn.fetch(
            "SELECT domain, created_at FROM account_domain_aliases WHERE account_id = $1 ORDER BY domain", account_id
        )
    return [Alias(row["domain"], normalise_domain(row["domain"]).registrable, row["created_at"]) for row in rows]


async def add_alias(pool: asyncpg.Pool, actor: Actor, account_id: int, raw: str) -> tuple[str, bool]:
    """Add a normalised alias; return it and whether it is new (adding it again changes nothing)."""
    domain = normalise_domain(raw)
    if domain.domain is None:
        raise AliasError(f"not a company domain: {domain.invalid_reason}")
    async with pool.acquire() as conn, conn.transaction():
        await _live_account(conn, account_id, lock=True)
        # Serialise alias changes per domain so two accounts cannot claim one at the same moment.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", domain.domain)
        owner = await conn.fetchval(
            """SELECT id FROM accounts WHERE domain = $1 AND deleted_at IS NULL
               UNION ALL
               SELECT al.account_id FROM account_domain_aliases al JOIN accounts a ON a.id = al.account_id
                WHERE al.domain = $1 AND a.deleted_at IS NULL
               LIMIT 1""",
            domain.domain,
        )
        if owner is not None and owner != account_id:
            raise AliasError(f"{domain.domain} already names account {owner}")
        if owner == account_id:
            return domain.domain, False
        await conn.execute(
            "INSERT INTO account_domain_aliases (account_id, domain) VALUES ($1, $2)", account_id, domain.domain
        )
        await audit.record(conn, actor, "account.alias_added", "account", account_id, {"domain": domain.domain})
    return domain.domain, True


async def remove_alias(pool: asyncpg.Pool, actor: Actor, account_id: int, raw: str) -> bool:
    """Remove an alias (given in any spelling); False when the account had no such alias."""
    domain = normalise_domain(raw).domain or raw.strip().lower()
    async with pool.acquire() as conn, conn.transaction():
        await _live_account(conn, account_id)
        status: str = await conn.execute(
            "DELETE FROM account_domain_aliases WHERE account_id = $1 AND domain = $2", account_id, domain
        )
        removed = status == "DELETE 1"
        if removed:
            await audit.record(conn, actor, "account.alias_removed", "account", account_id, {"domain": domain})
    return removed
