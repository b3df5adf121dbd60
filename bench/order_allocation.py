"""Benchmark: allocating published leads to client orders (issue 9: 100,000 leads across 200 orders in <= 5 s).

A throwaway database gets 100,000 contacts (titles, company sizes, industries, countries spread out), 20
campaigns, 200 active orders of 50 clients (each linked to one to three campaigns; filters by function,
seniority, company size, industry or country, some paced, some de-duplicated client-wide, some capped per
account) and 100,000 published leads no order holds. Then the daemon's own ``allocate_published`` runs once,
timed: load, decide, write.

    .venv/bin/python bench/order_allocation.py [--leads 100000] [--orders 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta

import asyncpg
from email_send import daemon_env
from throwaway import migrate, throwaway_database

TITLES = ["CTO", "VP Engineering", "Head of IT", "IT Manager", "Senior Software Engineer", "CMO", "VP Marketing",
          "Marketing Manager", "CFO", "Finance Director", "Head of People", "Sales Director", "Account Executive",
          "COO", "Operations Manager", "General Counsel", "Product Manager", "CEO", "Security Engineer",
          "CISO"]  # fmt: skip
INDUSTRIES = ["Software", "Banking", "Retail", "Healthcare", "Manufacturing", "Insurance", "Telecom", "Energy"]
COUNTRIES = ["US", "GB", "DE", "FR", "CA", "AU", "NL", "SE"]


async def prepare(url: str, leads: int, orders: int, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO accounts (name, domain, industry, employee_count, office_country)
               SELECT 'Company ' || n, 'company' || n || '.example', ($1::text[])[1 + n % 8], (n * 37) % 20000,
                      ($2::text[])[1 + n % 8]
                 FROM generate_series(1, $3) n""",
            INDUSTRIES, COUNTRIES, leads // 20,
        )  # fmt: skip
        await conn.execute(
            """INSERT INTO contacts (account_id, first_name, last_name, job_title, email)
               SELECT 1 + n % $2, 'F' || n, 'L' || n, ($1::text[])[1 + (n * 7) % 20], 'p' || n || '@x.example'
                 FROM generate_series(1, $3) n""",
            TITLES, leads // 20, leads,
        )  # fmt: skip
        await conn.execute("INSERT INTO campaigns (name, channel) SELECT 'Campaign ' || n, 'phone' "
                           "FROM generate_series(1, 20) n")  # fmt: skip
        await conn.execute(
            """INSERT INTO leads (campaign_id, contact_id, account_id, status, published_at)
               SELECT 1 + c.id % 20, c.id, c.account_id, 'published', now() - make_interval(secs => $1 - c.id)
                 FROM contacts c""",
            float(leads),
        )
        await conn.execute(
            "INSERT INTO client_organisations (name) SELECT 'Client ' || n FROM generate_series(1, 50) n"
        )
        functions = ["engineering", "it", "marketing", "finance", "sales", "operations", "security", "executive"]
        rows = []
        for n in range(orders):
            criteria: dict[str, object] = {}
            kind = n % 6
            if kind == 1:
                criteria["job_functions"] = rng.sample(functions, 2)
            elif kind == 2:
                criteria["seniorities"] = rng.sample(["c_level", "vp", "director", "manager"], 2)
            elif kind == 3:
                criteria["min_employees"] = 500
            elif kind == 4:
                criteria["industries"] = rng.sample(INDUSTRIES, 3)
            elif kind == 5:
                criteria["countries"] = rng.sample(COUNTRIES, 4)
            rows.append((1 + n % 50, f"Order {n}", rng.randint(200, 900), json.dumps(criteria),
                         rng.choice([None, None, 400]), date.today() - timedelta(days=rng.randint(0, 60)),
                         rng.choice(["order", "order", "client"]), rng.choice([None, None, 30]),
                         rng.choice([0, 0, 10])))  # fmt: skip
        await conn.executemany(
            """INSERT INTO campaign_orders (client_organisation_id, name, lead_target, criteria, weekly_pace, starts_on,
                                            dedupe_scope, per_account_cap, over_delivery_pct, status)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, 'active')""",
            rows,
        )
        links = {(o, 1 + (o * k) % 20) for o in range(1, orders + 1) for k in range(1, 2 + o % 3)}
        await conn.executemany("INSERT INTO order_campaigns (order_id, campaign_id) VALUES ($1, $2)", sorted(links))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def main() -> None:
    from crm.orders.store import allocate_published

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    default_url = os.environ.get("PIVOTAL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-url", default=default_url)
    args = parser.parse_args()
    seconds, given = [], []
    for run in range(args.runs):
        async with throwaway_database(args.database_url) as url:
            with tempfile.TemporaryDirectory() as tmp:
                migrate(tmp, daemon_env(url))
            await prepare(url, args.leads, args.orders, seed=run)
            pool = await asyncpg.create_pool(url, min_size=1, max_size=2, init=_json_codec)
            assert pool is not None
            try:
                started = time.perf_counter()
                given.append(await allocate_published(pool, datetime.now(UTC)) or 0)
                seconds.append(time.perf_counter() - started)
                capacity = await pool.fetchval(
                    "SELECT sum(lead_target + lead_target * over_delivery_pct / 100) FROM campaign_orders"
                )
            finally:
                await pool.close()
    print(f"order allocation: {args.leads:,} published leads, {args.orders} active orders of 50 clients "
          f"(capacity {capacity:,} leads, filters, paces, client-wide de-duplication, account caps), "
          f"{args.runs} runs on fresh databases; PostgreSQL on the same {os.cpu_count()}-core machine")  # fmt: skip
    print(f"  allocated {statistics.mean(given):,.0f} leads a run in {min(seconds):.2f}-{max(seconds):.2f} s "
          f"(median {statistics.median(seconds):.2f} s)   (target <= 5 s)")  # fmt: skip


async def _json_codec(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


if __name__ == "__main__":
    asyncio.run(main())
