"""Global search across accounts and contacts: names, e-mail, phone in any format, domain.

The query is read for what it looks like: a phone number is normalised to E.164 and matched exactly; an
e-mail (or its start) is a prefix match on the address; a domain (or URL) is normalised and matched on the
account's domain or registrable domain, and brings the accounts' contacts; words are prefix-matched on names
with PostgreSQL full text (``simple`` configuration, no stemming). Every path uses an index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import asyncpg

from crm.audience.domains import normalise_domain
from crm.audience.phones import normalise_phone
from crm.audience.segments import CONTACT_COLUMNS, ContactRow

_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-/]{6,30}$")
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 6


@dataclass(frozen=True, slots=True)
class AccountHit:
    id: int
    name: str
    domain: str | None
    registrable_domain: str | None
    main_line_e164: str | None


@dataclass
class SearchResult:
    interpreted_as: list[str] = field(default_factory=list)
    accounts: list[AccountHit] = field(default_factory=list)
    contacts: list[ContactRow] = field(default_factory=list)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _tsquery(words: list[str]) -> str:
    # Words are \\w+ matches, so nothing in them is tsquery syntax.
    return " & ".join(f"{word}:*" for word in words)


_ACCOUNT_COLUMNS = "a.id, a.name, a.domain, a.registrable_domain, a.main_line_e164"
_FROM_CONTACTS = "contacts c LEFT JOIN accounts a ON a.id = c.account_id"


async def search(pool: asyncpg.Pool, query: str, *, region: str, limit: int) -> SearchResult:
    text = query.strip()
    result = SearchResult()
    account_ids: dict[int, AccountHit] = {}
    contact_ids: dict[int, ContactRow] = {}
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        # No ORDER BY beside the LIMIT: it would tempt the planner into walking the primary key and testing
        # every row (seconds over a million contacts) instead of using the selective index. Hits are
        # sorted here instead.
        async def accounts(where: str, *params: object) -> list[int]:
            rows = await conn.fetch(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts a WHERE a.deleted_at IS NULL AND {where} LIMIT {int(limit)}",
                *params,
            )
            rows = sorted(rows, key=lambda row: row["id"])
            for row in rows:
                account_ids.setdefault(row["id"], AccountHit(**dict(row)))
            return [row["id"] for row in rows]

        async def contacts(where: str, *params: object) -> None:
            rows = await conn.fetch(
                f"SELECT {CONTACT_COLUMNS} FROM {_FROM_CONTACTS} WHERE c.deleted_at IS NULL AND {where}"
                f" LIMIT {int(limit)}",
                *params,
            )
            for row in sorted(rows, key=lambda row: row["id"]):
                contact_ids.setdefault(row["id"], ContactRow(**dict(row)))

        if _PHONE_LIKE.match(text) and sum(ch.isdigit() for ch in text) >= 6:
            phone = normalise_phone(text, region)
            if phone.e164 is not None:
                result.interpreted_as.append(f"phone {phone.e164}")
                await contacts("c.phone_e164 = $1", phone.e164)
                await accounts("a.main_line_e164 = $1", phone.e164)
        if "@" in text:
            local, _, host = text.lower().rpartition("@")
            if local:
                result.interpreted_as.append("e-mail")
                await contacts("lower(c.email) LIKE $1", _like_prefix(text.lower()))
            elif host:
                text = host  # "@acme.com": the contacts of a domain
        if "." in text and " " not in text and "@" not in text:
            domain = normalise_domain(text)
            if domain.domain is not None:
                result.interpreted_as.append(f"domain {domain.domain}")
                ids = await accounts("(a.domain = $1 OR a.registrable_domain = $1)", domain.domain)
                if ids:
                    await contacts("c.account_id = ANY($1::bigint[])", ids)
        words = _WORD.findall(text.lower())[:MAX_WORDS]
        if words and not result.interpreted_as:
            result.interpreted_as.append("name")
            query_text = _tsquery(words)
            await contacts(
                "to_tsvector('simple', c.first_name || ' ' || c.last_name) @@ to_tsquery('simple', $1)", query_text
            )
            await accounts("to_tsvector('simple', a.name) @@ to_tsquery('simple', $1)", query_text)
    result.accounts = list(account_ids.values())[:limit]
    result.contacts = list(contact_ids.values())[:limit]
    return result
