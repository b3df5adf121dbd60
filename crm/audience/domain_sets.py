"""Domain sets for account-based marketing: upload domains or company names, match them to accounts.

Each entry is normalised (a domain with ``normalise_domain``; anything that is not a domain is a company
name, folded: lower case, punctuation and legal suffixes such as "Inc" or "GmbH" removed) and de-duplicated
within the set. Matching, best first:

- ``exact`` (confidence 1.0): an account whose domain is the entry's domain;
- ``alias`` (0.95): an account known by that domain (``account_domain_aliases``);
- ``subdomain`` (0.9): accounts sharing the entry's registrable domain (``eu.acme.com`` and ``acme.com``);
  several such accounts make the entry ``ambiguous``;
- ``name`` (up to 0.9): for company names, the closest account name by string similarity, when at least
  0.85 similar and clearly better than the runner-up (else ``ambiguous``).

Matched accounts' contacts can then become a static list.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from crm import audit
from crm.audience.domains import normalise_domain
from crm.audit import Actor

MAX_ENTRY = 300
NAME_THRESHOLD = 0.85
NAME_MARGIN = 0.03
NAME_CONFIDENCE_CAP = 0.9
_LEGAL = {
    "inc", "incorporated", "ltd", "limited", "llc", "llp", "plc", "corp", "corporation", "co", "company", "gmbh",
    "ag", "sa", "sas", "sarl", "bv", "nv", "oy", "ab", "as", "spa", "srl", "pty", "pte", "kk", "the", "group",
}  # fmt: skip
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


class DomainSetNotFound(LookupError):
    pass


class DomainSetNameTaken(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    entry: str
    match_key: str
    domain: str | None = None
    registrable_domain: str | None = None
    company_name: str | None = None


@dataclass
class Parsed:
    entries: list[Entry] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0


def fold_company_name(name: str) -> str:
    words = [w for w in _NON_WORD.split(name.lower()) if w]
    kept = [w for w in words if w not in _LEGAL]
    return " ".join(kept or words)


def _looks_like_domain(text: str) -> bool:
    return "." in text and " " not in text.strip()


def parse_entries(lines: Iterable[str]) -> Parsed:
    """Normalise and de-duplicate uploaded lines (a CSV's first column, or plain text, one entry a line)."""
    parsed = Parsed()
    seen: set[str] = set()
    for raw in lines:
        text = raw.strip().strip('"').strip()
        if not text or text.startswith("#"):
            continue
        if len(text) > MAX_ENTRY:
            parsed.invalid.append((text[:60] + "...", f"longer than {MAX_ENTRY} characters"))
            continue
        if _looks_like_domain(text):
            domain = normalise_domain(text)
            if domain.domain is None:
                parsed.invalid.append((text, f"not a domain: {domain.invalid_reason}"))
                continue
            entry = Entry(text, "d:" + domain.domain, domain=domain.domain, registrable_domain=domain.registrable)
        else:
            folded = fold_company_name(text)
            if not folded:
                parsed.invalid.append((text, "neither a domain nor a company name"))
                continue
            entry = Entry(text, "n:" + folded, company_name=text)
        if entry.match_key in seen:
            parsed.duplicates += 1
            continue
        seen.add(entry.match_key)
        parsed.entries.append(entry)
    return parsed


async def create(pool: asyncpg.Pool, actor: Actor, name: str, description: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        try:
            set_id = await conn.fetchval(
                "INSERT INTO domain_sets (name, description, created_by) VALUES ($1, $2, $3) RETURNING id",
                name,
                description,
                actor.user_id,
            )
        except asyncpg.UniqueViolationError:
            raise DomainSetNameTaken(f"a domain set named {name!r} exists already") from None
        await audit.record(conn, actor, "domain_set.create", "domain_set", set_id, {"name": name})
    return int(set_id)


async def exists(pool: asyncpg.Pool, set_id: int) -> None:
    if not await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM domain_sets WHERE id = $1 AND deleted_at IS NULL)", set_id
    ):
        raise DomainSetNotFound(f"domain set {set_id} does not exist")


async def add_entries(pool: asyncpg.Pool, actor: Actor, set_id: int, parsed: Parsed) -> int:
    """Store new entries (ones already in the set are skipped); return how many were added."""
    await exists(pool, set_id)
    records = [(set_id, e.entry, e.match_key, e.domain, e.registrable_domain, e.company_name) for e in parsed.entries]
    async with pool.acquire() as conn, conn.transaction():
        added = await conn.fetchval(
            """WITH added AS (
                 INSERT INTO domain_set_items (domain_set_id, entry, match_key, domain, registrable_domain,
                                               company_name)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                 ON CONFLICT (domain_set_id, match_key) DO NOTHING RETURNING 1)
               SELECT count(*) FROM added""",
            *[list(column) for column in zip(*records, strict=True)] if records else [[]] * 6,
        )
        await audit.record(conn, actor, "domain_set.add_entries", "domain_set", set_id, {"added": added})
    return int(added)


_MATCH_DOMAINS = """
WITH candidates AS (
  SELECT i.id AS item_id, a.id AS account_id,
         CASE WHEN a.domain = i.domain THEN 1
              WHEN EXISTS (SELECT 1 FROM account_domain_aliases al
                            WHERE al.account_id = a.id AND al.domain IN (i.domain, i.registrable_domain)) THEN 2
              ELSE 3 END AS rank
    FROM domain_set_items i
    JOIN accounts a ON a.deleted_at IS NULL
     AND (a.domain = i.domain OR a.registrable_domain = i.registrable_domain
          OR a.id IN (SELECT al.account_id FROM account_domain_aliases al
                       WHERE al.domain IN (i.domain, i.registrable_domain)))
   WHERE i.domain_set_id = $1 AND i.domain IS NOT NULL),
best AS (
  SELECT item_id, min(rank) AS rank FROM candidates GROUP BY item_id),
chosen AS (
  SELECT c.item_id, b.rank, array_agg(c.account_id ORDER BY c.account_id) AS accounts
    FROM candidates c JOIN best b ON b.item_id = c.item_id AND b.rank = c.rank
   GROUP BY c.item_id, b.rank)
UPDATE domain_set_items i
   SET match_status = CASE WHEN cardinality(ch.accounts) = 1 THEN 'matched' ELSE 'ambiguous' END,
       match_method = (ARRAY['exact', 'alias', 'subdomain'])[ch.rank],
       confidence = CASE WHEN cardinality(ch.accounts) = 1 THEN (ARRAY[1.0, 0.95, 0.9])[ch.rank] END,
       account_id = CASE WHEN cardinality(ch.accounts) = 1 THEN ch.accounts[1] END,
       candidate_account_ids = CASE WHEN cardinality(ch.accounts) > 1 THEN ch.accounts ELSE '{}' END
  FROM chosen ch
 WHERE i.id = ch.item_id
"""


async def match(pool: asyncpg.Pool, set_id: int) -> dict[str, int]:
    """(Re)match every entry of the set; return the counts per status."""
    await exists(pool, set_id)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE domain_set_items SET match_status = 'unmatched', match_method = NULL, confidence = NULL,
                      account_id = NULL, candidate_account_ids = '{}' WHERE domain_set_id = $1""",
            set_id,
        )
        await conn.execute(_MATCH_DOMAINS, set_id)
        for item in await conn.fetch(
            "SELECT id, company_name FROM domain_set_items WHERE domain_set_id = $1 AND company_name IS NOT NULL",
            set_id,
        ):
            await _match_name(conn, item["id"], item["company_name"])
    return await counts(pool, set_id)


async def _match_name(conn: asyncpg.Connection, item_id: int, company_name: str) -> None:
    folded = fold_company_name(company_name)
    words = folded.split()
    # Candidates share the most distinctive (longest) word, found through the name's full-text index.
    anchor = max(words, key=len)
    rows = await conn.fetch(
        """SELECT id, name FROM accounts
            WHERE deleted_at IS NULL AND to_tsvector('simple', name) @@ to_tsquery('simple', $1)
            LIMIT 200""",
        re.sub(r"\W", "", anchor) + ":*",
    )
    scored = sorted(
        ((difflib.SequenceMatcher(None, folded, fold_company_name(row["name"])).ratio(), row["id"]) for row in rows),
        reverse=True,
    )
    if not scored or scored[0][0] < NAME_THRESHOLD:
        return
    best, best_id = scored[0]
    rivals = [account for score, account in scored if best - score <= NAME_MARGIN]
    if len(rivals) > 1:
        await conn.execute(
            """UPDATE domain_set_items SET match_status = 'ambiguous', match_method = 'name',
                      candidate_account_ids = $2 WHERE id = $1""",
            item_id,
            sorted(rivals),
        )
        return
    await conn.execute(
        """UPDATE domain_set_items SET match_status = 'matched', match_method = 'name', account_id = $2,
                  confidence = $3 WHERE id = $1""",
        item_id,
        best_id,
        round(best * NAME_CONFIDENCE_CAP, 3),
    )


async def counts(pool: asyncpg.Pool, set_id: int) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT match_status, count(*) FROM domain_set_items WHERE domain_set_id = $1 GROUP BY match_status", set_id
    )
    result = {"matched": 0, "unmatched": 0, "ambiguous": 0}
    result.update({row["match_status"]: row["count"] for row in rows})
    return result


async def items(
    pool: asyncpg.Pool, set_id: int, *, status: str | None, limit: int, after_id: int | None
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT id, entry, domain, registrable_domain, company_name, match_status, match_method,
                  confidence::float8 AS confidence, account_id, candidate_account_ids
             FROM domain_set_items
            WHERE domain_set_id = $1 AND ($2::text IS NULL OR match_status = $2) AND ($4::bigint IS NULL OR id > $4)
            ORDER BY id LIMIT $3""",
        set_id,
        status,
        limit,
        after_id,
    )
    return [dict(row) for row in rows]


async def to_list(pool: asyncpg.Pool, actor: Actor, set_id: int, list_id: int) -> int:
    """Add the live contacts of every matched account to a static list; return how many were new."""
    await exists(pool, set_id)
    async with pool.acquire() as conn, conn.transaction():
        added = await conn.fetchval(
            """WITH added AS (
                 INSERT INTO list_members (list_id, contact_id, added_by)
                 SELECT $2, c.id, $3 FROM contacts c
                  WHERE c.deleted_at IS NULL AND c.account_id IN (
                        SELECT account_id FROM domain_set_items
                         WHERE domain_set_id = $1 AND match_status = 'matched')
                 ON CONFLICT DO NOTHING RETURNING 1)
               SELECT count(*) FROM added""",
            set_id,
            list_id,
            actor.user_id,
        )
        await audit.record(
            conn, actor, "domain_set.to_list", "domain_set", set_id, {"list_id": list_id, "added": added}
        )
    return int(added)
