"""Orders in PostgreSQL: created by clients, linked to campaigns by managers, filled by allocation.

``allocate_published`` is the one writer of ``leads.campaign_order_id``: under a transaction-scoped advisory
lock it loads the active orders and what they hold, runs the pure allocator over the published leads no order
holds yet, and writes the result in one statement. Several nodes may call it; they take turns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audit import Actor
from crm.orders import deliveries
from crm.orders.allocation import Book, LeadFacts, Order, OrderFilter, allocate
from crm.orders.steering import steer

_ALLOCATION_LOCK = 0x4F52444552  # "ORDER"
#: the order's columns a client or manager sets (criteria as given, the rest as columns)
TERMS = ("name", "reference", "lead_target", "per_account_cap", "criteria", "starts_on", "ends_on",
         "weekly_pace", "price_per_lead", "currency", "over_delivery_pct", "returns_window_days", "dedupe_scope",
         "webhook_url")  # fmt: skip
_ORDER = f"""SELECT o.id, o.client_organisation_id, o.status::text AS status, {", ".join("o." + t for t in TERMS)},
       o.webhook_secret_encrypted IS NOT NULL AS has_webhook_secret, o.created_at, o.updated_at,
       ARRAY(SELECT campaign_id FROM order_campaigns oc WHERE oc.order_id = o.id ORDER BY campaign_id) AS campaign_ids,
       (SELECT count(*) FROM leads l WHERE l.campaign_order_id = o.id AND l.status <> 'returned') AS delivered,
       (SELECT count(*) FROM leads l WHERE l.campaign_order_id = o.id AND l.status = 'returned') AS returned
  FROM campaign_orders o"""


class OrderNotFound(LookupError):
    pass


class OrderConflict(ValueError):
    pass


class OrderChanged(OrderConflict):
    """The order is no longer as the caller read it."""


async def create(pool: asyncpg.Pool, actor: Actor, client_id: int, terms: dict[str, Any],
                 webhook_secret: bytes | None) -> int:  # fmt: skip
    columns = [t for t in TERMS if t in terms]
    values = [terms[t] for t in columns]
    placeholders = ", ".join(f"${n}" for n in range(4, 4 + len(columns)))
    async with pool.acquire() as conn, conn.transaction():
        order_id = await conn.fetchval(
            f"""INSERT INTO campaign_orders (client_organisation_id, created_by, webhook_secret_encrypted,
                                             {", ".join(columns)})
                VALUES ($1, $2, $3, {placeholders}) RETURNING id""",
            client_id, actor.user_id, webhook_secret, *values,
        )  # fmt: skip
        await audit.record(conn, actor, "order.create", "order", order_id, {"client_organisation_id": client_id})
        return int(order_id)


async def get(pool: asyncpg.Pool, order_id: int, today: date, client_id: int | None = None) -> dict[str, Any]:
    """The order with its campaigns and counts; ``client_id``: only if it is that client's (else not found)."""
    row = await pool.fetchrow(
        _ORDER + " WHERE o.id = $1 AND ($2::bigint IS NULL OR o.client_organisation_id = $2)", order_id, client_id
    )
    if row is None:
        raise OrderNotFound(f"order {order_id} does not exist")
    return _with_progress(dict(row), today)


async def page(pool: asyncpg.Pool, today: date, client_id: int | None, status: str | None, after: int | None,
               limit: int) -> list[dict[str, Any]]:  # fmt: skip
    rows = await pool.fetch(
        _ORDER + """ WHERE ($1::bigint IS NULL OR o.client_organisation_id = $1)
                       AND ($2::order_status IS NULL OR o.status = $2::order_status)
                       AND ($3::bigint IS NULL OR o.id < $3)
                     ORDER BY o.id DESC LIMIT $4""",
        client_id, status, after, limit + 1,
    )  # fmt: skip
    return [_with_progress(dict(row), today) for row in rows]


def _with_progress(order: dict[str, Any], today: date) -> dict[str, Any]:
    spec = _spec(order, {})
    order["cap"] = spec.cap
    order["due_by_now"] = spec.allowed_by(today)
    order["behind_pace"] = max(0, spec.allowed_by(today) - order["delivered"])
    return order


async def update_terms(pool: asyncpg.Pool, actor: Actor, order_id: int, terms: dict[str, Any],
                       client_id: int | None = None) -> None:  # fmt: skip
    """Changes terms; a client may change only a draft order of its own."""
    if not terms:
        return
    columns = [t for t in TERMS if t in terms]
    sets = ", ".join(f"{c} = ${n}" for n, c in enumerate(columns, start=2))
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT status::text AS status FROM campaign_orders WHERE id = $1 AND ($2::bigint IS NULL "
            "OR client_organisation_id = $2) FOR UPDATE",
            order_id, client_id,
        )  # fmt: skip
        if row is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        if client_id is not None and row["status"] != "draft":
            raise OrderConflict(f"the order is {row['status']}: ask your account manager to change it")
        await conn.execute(f"UPDATE campaign_orders SET {sets}, updated_at = now() WHERE id = $1",
                           order_id, *[terms[c] for c in columns])  # fmt: skip
        await audit.record(conn, actor, "order.update", "order", order_id, {"fields": columns})


async def set_webhook(pool: asyncpg.Pool, actor: Actor, order_id: int, url: str | None,
                      sealed_secret: bytes | None) -> None:  # fmt: skip
    """Sets (or, with None, removes) where the order's leads are pushed; pending pushes go to the new URL."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE campaign_orders SET webhook_url = $2, webhook_secret_encrypted = $3, updated_at = now()
                WHERE id = $1""",
            order_id, url, sealed_secret,
        )  # fmt: skip
        if url is None:  # nowhere to push: the pending pushes end (the leads stay to pull)
            await conn.execute(
                """UPDATE lead_deliveries SET status = 'failed', last_error = 'the webhook was removed'
                    WHERE order_id = $1 AND status = 'pending'""",
                order_id,
            )
        await audit.record(conn, actor, "order.webhook_set" if url else "order.webhook_removed", "order", order_id,
                           {"url": url})  # fmt: skip


_MOVES = {"activate": ({"draft", "paused"}, "active"), "pause": ({"active"}, "paused"),
          "cancel": ({"draft", "active", "paused"}, "cancelled"),
          "fulfil": ({"active", "paused"}, "fulfilled")}  # fmt: skip


async def act(pool: asyncpg.Pool, actor: Actor, order_id: int, action: str, *,
              read_at: datetime | None = None) -> None:  # fmt: skip
    """Moves the order along its lifecycle. With ``read_at`` (the ``updated_at`` of the order as the caller read
    it), only if nothing changed since - terms a client edited meanwhile are not activated unseen."""
    starts, to = _MOVES[action]
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT status::text AS status, updated_at FROM campaign_orders WHERE id = $1 FOR UPDATE", order_id
        )
        if row is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        if read_at is not None and row["updated_at"] != read_at:
            raise OrderChanged(f"order {order_id} changed since you read it (now updated_at "
                               f"{row['updated_at'].isoformat()}): read it again")  # fmt: skip
        if row["status"] not in starts:
            raise OrderConflict(f"cannot {action} an order that is {row['status']}")
        if action == "activate" and not await conn.fetchval(
            "SELECT count(*) FROM order_campaigns WHERE order_id = $1", order_id
        ):
            raise OrderConflict("link at least one campaign to the order before activating it")
        await conn.execute("UPDATE campaign_orders SET status = $2::order_status, updated_at = now() WHERE id = $1",
                           order_id, to)  # fmt: skip
        await audit.record(conn, actor, f"order.{action}", "order", order_id, {"from": row["status"], "to": to})


async def link_campaigns(pool: asyncpg.Pool, actor: Actor, order_id: int, campaign_ids: Sequence[int]) -> None:
    """Replaces the campaigns working for the order."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status::text FROM campaign_orders WHERE id = $1 FOR UPDATE", order_id)
        if status is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        if not campaign_ids and status == "active":
            raise OrderConflict("an active order needs at least one campaign (pause it first)")
        rows = await conn.fetch(
            "SELECT id FROM campaigns WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL", list(campaign_ids)
        )
        known = {r["id"] for r in rows}
        missing = sorted(set(campaign_ids) - known)
        if missing:
            raise OrderConflict(f"campaigns do not exist: {', '.join(map(str, missing))}")
        await conn.execute("DELETE FROM order_campaigns WHERE order_id = $1", order_id)
        await conn.executemany(
            "INSERT INTO order_campaigns (order_id, campaign_id, linked_by) VALUES ($1, $2, $3)",
            [(order_id, campaign_id, actor.user_id) for campaign_id in sorted(known)],
        )
        # the steering's fingerprint watches updated_at: the linked campaigns change what it decides
        await conn.execute("UPDATE campaign_orders SET updated_at = now() WHERE id = $1", order_id)
        await audit.record(conn, actor, "order.link_campaigns", "order", order_id, {"campaign_ids": sorted(known)})


# -- allocation -----------------------------------------------------------------------------------------------


def _spec(order: dict[str, Any], account_sets: dict[tuple[str, int], frozenset[int]]) -> Order:
    criteria = order.get("criteria") or {}

    def words(key: str, upper: bool = False) -> frozenset[str] | None:
        values = criteria.get(key)
        if not values:
            return None
        return frozenset(v.upper() if upper else v.casefold() for v in values)

    accounts: frozenset[int] | None = None
    for key in ("account_list_id", "domain_set_id"):
        if criteria.get(key) is not None:
            found = account_sets.get((key, int(criteria[key])), frozenset())
            accounts = found if accounts is None else accounts & found
    return Order(
        id=order["id"], client_id=order["client_organisation_id"], campaigns=frozenset(order.get("campaign_ids") or ()),
        quantity=order["lead_target"], over_delivery_pct=order["over_delivery_pct"], weekly_pace=order["weekly_pace"],
        starts_on=order["starts_on"], ends_on=order["ends_on"], dedupe_scope=order["dedupe_scope"],
        per_account_cap=order["per_account_cap"],
        filter=OrderFilter(job_functions=words("job_functions"), seniorities=words("seniorities"),
                           min_employees=criteria.get("min_employees"), max_employees=criteria.get("max_employees"),
                           industries=words("industries"), countries=words("countries", upper=True),
                           account_ids=accounts),
    )  # fmt: skip


async def _account_sets(
    conn: asyncpg.Connection, orders: list[dict[str, Any]]
) -> dict[tuple[str, int], frozenset[int]]:
    lists = {int(o["criteria"]["account_list_id"]) for o in orders if o["criteria"].get("account_list_id")}
    sets = {int(o["criteria"]["domain_set_id"]) for o in orders if o["criteria"].get("domain_set_id")}
    out: dict[tuple[str, int], frozenset[int]] = {}
    for list_id in lists:
        rows = await conn.fetch(
            """SELECT DISTINCT c.account_id FROM list_members m JOIN contacts c ON c.id = m.contact_id
                WHERE m.list_id = $1 AND c.account_id IS NOT NULL""",
            list_id,
        )
        out["account_list_id", list_id] = frozenset(r["account_id"] for r in rows)
    for set_id in sets:
        rows = await conn.fetch(
            """SELECT DISTINCT account_id FROM domain_set_items
                WHERE domain_set_id = $1 AND match_status = 'matched'""",
            set_id,
        )
        out["domain_set_id", set_id] = frozenset(r["account_id"] for r in rows)
    return out


_FACTS = """c.job_title, a.employee_count, a.industry, coalesce(c.country, a.office_country)::text AS country"""


def _facts(row: asyncpg.Record) -> LeadFacts:
    return LeadFacts(row["id"], row["campaign_id"], row["contact_id"], row["account_id"], row["job_title"],
                     row["employee_count"], row["industry"], row["country"])  # fmt: skip


async def _orders_and_book(conn: asyncpg.Connection) -> tuple[list[Order], Book]:
    """The active orders, and what they (and their clients' other orders) hold now."""
    rows = [dict(r) for r in await conn.fetch(_ORDER + " WHERE o.status = 'active'")]
    if not rows:
        return [], Book()
    account_sets = await _account_sets(conn, rows)
    orders = [_spec(row, account_sets) for row in rows]
    by_id = {order.id: order for order in orders}
    clients = sorted({order.client_id for order in orders})
    book = Book()
    for held in await conn.fetch(
        """SELECT l.campaign_order_id, o.client_organisation_id, l.contact_id, l.account_id,
                  l.status = 'returned' AS returned
             FROM leads l JOIN campaign_orders o ON o.id = l.campaign_order_id
            WHERE o.client_organisation_id = ANY($1::bigint[])""",
        clients,
    ):
        order = by_id.get(held["campaign_order_id"])
        if order is None:  # an inactive order of the same client: its people count for client-wide scopes
            book.client_contacts[held["client_organisation_id"]].add(held["contact_id"])
            continue
        book.add(order, LeadFacts(0, 0, held["contact_id"], held["account_id"]), counts=not held["returned"])
    return orders, book


async def allocate_published(pool: asyncpg.Pool, now: datetime, *, wait: bool = True) -> int | None:
    """Gives published leads that no order holds to the active orders they fit; how many were given. Without
    ``wait``, None at once while another node is allocating."""
    async with pool.acquire() as conn, conn.transaction():
        if not wait:
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _ALLOCATION_LOCK):
                return None
        else:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ALLOCATION_LOCK)
        orders, book = await _orders_and_book(conn)
        if not orders:
            return 0
        campaigns = sorted({c for order in orders for c in order.campaigns})
        leads = [
            _facts(r)
            for r in await conn.fetch(
                f"""SELECT l.id, l.campaign_id, l.contact_id, l.account_id, {_FACTS}
                     FROM leads l JOIN contacts c ON c.id = l.contact_id LEFT JOIN accounts a ON a.id = l.account_id
                    WHERE l.status = 'published' AND l.campaign_order_id IS NULL
                      AND l.campaign_id = ANY($1::bigint[])
                    ORDER BY l.published_at, l.id""",
                campaigns,
            )
        ]
        pairs = allocate(leads, orders, book, now.date())
        if pairs:  # the buyer is the order's client: leads.client_organisation_id stays the campaign's
            await conn.execute(
                """UPDATE leads l SET campaign_order_id = u.order_id,
                          allocated_at = $3, updated_at = $3
                     FROM unnest($1::bigint[], $2::bigint[]) AS u(lead_id, order_id)
                    WHERE l.id = u.lead_id AND l.campaign_order_id IS NULL""",
                [lead_id for lead_id, _ in pairs], [order_id for _, order_id in pairs], now,
            )  # fmt: skip
            await deliveries.enqueue(conn, [lead_id for lead_id, _ in pairs], [order_id for _, order_id in pairs])
        return len(pairs)


async def steer_campaigns(pool: asyncpg.Pool, today: date) -> int:
    """Sets each still-to-dial member's priority and hold from the campaign's active orders
    (``crm.orders.steering``), and releases the members of campaigns no active order works through any more
    (found in the table itself, so a restart forgets nothing). Returns the members changed."""
    changed = 0
    async with pool.acquire() as conn:
        orders, book = await _orders_and_book(conn)
        campaigns = sorted({c for order in orders for c in order.campaigns})
        status = await conn.execute(
            """UPDATE campaign_members SET priority = 0, held_for_orders = false, updated_at = now()
                WHERE (priority <> 0 OR held_for_orders) AND NOT (campaign_id = ANY($1::bigint[]))""",
            campaigns,
        )
        changed += int(status.split()[-1])
        for campaign_id in campaigns:
            members = await conn.fetch(
                f"""SELECT 0 AS id, m.campaign_id, m.contact_id, m.account_id, {_FACTS}
                      FROM campaign_members m JOIN contacts c ON c.id = m.contact_id
                      LEFT JOIN accounts a ON a.id = c.account_id
                     WHERE m.campaign_id = $1 AND m.status IN ('new', 'scheduled')""",
                campaign_id,
            )
            decided = steer([_facts(m) for m in members], orders, book, today)
            status = await conn.execute(
                """UPDATE campaign_members m SET priority = u.priority, held_for_orders = u.held, updated_at = now()
                     FROM unnest($2::bigint[], $3::int[], $4::bool[]) AS u(contact_id, priority, held)
                    WHERE m.campaign_id = $1 AND m.contact_id = u.contact_id
                      AND (m.priority, m.held_for_orders) IS DISTINCT FROM (u.priority, u.held)""",
                campaign_id, [d[0] for d in decided], [d[1] for d in decided], [d[2] for d in decided],
            )  # fmt: skip
            changed += int(status.split()[-1])
    return changed


#: campaign -> (read at, its active orders' specs and rows): lead pages ask for every lead, orders change seldom
Servable = dict[int, tuple[float, list[tuple[Order, dict[str, Any]]]]]
SERVABLE_TTL_S = 5.0


async def orders_for_lead(pool: asyncpg.Pool, campaign_id: int, facts: LeadFacts, now: float,
                          cache: Servable) -> list[dict[str, Any]]:  # fmt: skip
    """The active orders working through the campaign whose filters the lead fits (room or not). ``cache``
    (the node's; cleared when an order changes here) keeps what another node changed at most SERVABLE_TTL_S."""
    cached = cache.get(campaign_id)
    if cached is None or now - cached[0] > SERVABLE_TTL_S:
        async with pool.acquire() as conn:
            rows = [dict(r) for r in await conn.fetch(
                """SELECT o.id, o.name, o.client_organisation_id, o.lead_target, o.over_delivery_pct, o.weekly_pace,
                          o.starts_on, o.ends_on, o.dedupe_scope, o.per_account_cap, o.criteria,
                          ARRAY[$1::bigint] AS campaign_ids
                     FROM campaign_orders o JOIN order_campaigns oc ON oc.order_id = o.id AND oc.campaign_id = $1
                    WHERE o.status = 'active'""",
                campaign_id,
            )]  # fmt: skip
            account_sets = await _account_sets(conn, rows) if rows else {}
        if len(cache) > 1000:
            cache.clear()
        cached = cache[campaign_id] = (now, [(_spec(row, account_sets), row) for row in rows])
    return [{"order_id": row["id"], "name": row["name"], "client_organisation_id": row["client_organisation_id"]}
            for spec, row in cached[1] if spec.filter.matches(facts)]  # fmt: skip
