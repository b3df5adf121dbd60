"""Benchmark: CSV export and segment preview over N contacts (default 1,000,000 across N/10 accounts).

Fills a throwaway database with SQL (fast, deterministic), starts the real daemon on it, and measures through
HTTP: the full contacts export (streamed CSV) and the segment preview (count + first page) for three-condition
filters. Targets (issue 3): export of 1,000,000 contacts <= 30 s; preview count <= 500 ms.

    .venv/bin/python bench/audience_queries.py [--rows 1000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_api import _free_port, _start

FILL = """
INSERT INTO accounts (name, domain, registrable_domain, industry, employee_count, office_country)
SELECT 'Company ' || g, 'company' || g || '.com', 'company' || g || '.com',
       (ARRAY['Banking', 'Retail', 'Software', 'Insurance', 'Energy'])[1 + g % 5], 10 + (g * 37) % 5000,
       CASE WHEN g % 4 = 0 THEN 'GB' ELSE 'US' END
  FROM generate_series(1, $1::int) g;
INSERT INTO contacts (account_id, first_name, last_name, job_title, email, phone_e164, phone_country, country)
SELECT 1 + (g % $1::int),
       (ARRAY['Ann', 'Bob', 'Cara', 'Dan', 'Eve', 'Fay'])[1 + g % 6],
       (ARRAY['Lee', 'Stone', 'Jones', 'Brown', 'Smith'])[1 + g % 5],
       (ARRAY['CEO', 'VP Sales', 'Head of IT', 'CFO', 'Finance Director', 'Buyer'])[1 + g % 6],
       'person' || g || '@company' || (1 + g % $1::int) || '.com',
       '+1415' || lpad((2000000 + g % 7999999)::text, 7, '0'), 'US',
       CASE WHEN g % 4 = 0 THEN 'GB' ELSE 'US' END
  FROM generate_series(1, $2::int) g;
ANALYZE accounts;
ANALYZE contacts;
"""

FILTERS = {
    "country + title contains + employees range": {"all": [
        {"field": "contact.country", "op": "equals", "value": "GB"},
        {"field": "contact.job_title", "op": "contains", "value": "finance"},
        {"field": "account.employee_count", "op": "between", "value": [100, 1000]},
    ]},
    "industry in + email ends_with + any(title)": {"all": [
        {"field": "account.industry", "op": "in", "value": ["Banking", "Insurance"]},
        {"field": "contact.email", "op": "ends_with", "value": "7.com"},
        {"any": [{"field": "contact.job_title", "op": "equals", "value": "cfo"},
                 {"field": "contact.job_title", "op": "starts_with", "value": "vp"}]},
    ]},
}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("PIVOTAL_TEST_DATABASE_URL"))
    parser.add_argument("--repeat", type=int, default=10, help="preview requests per filter")
    parser.add_argument("--skip-preview", action="store_true", help="only export and search")
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("give --database-url (a PostgreSQL server to create a throwaway database on)")

    name = f"pivotal_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(args.database_url)._replace(path="/" + name))
    try:
        with tempfile.TemporaryDirectory(prefix="pivotal-bench-") as tmp:
            port = _free_port()
            process, password = await _start(Path(tmp), url, port)
            base = f"http://127.0.0.1:{port}"
            try:
                started = time.perf_counter()
                conn = await asyncpg.connect(url)
                await conn.execute("SET statement_timeout = 0")
                values = (args.rows // 10, args.rows)
                for statement in FILL.split(";"):
                    if statement.strip():
                        used = sum(f"${i}" in statement for i in (1, 2))
                        await conn.execute(statement, *values[:used])
                await conn.close()
                print(f"filled {args.rows:,} contacts in {time.perf_counter() - started:.1f} s")
                async with aiohttp.ClientSession() as session:
                    login = await session.post(
                        f"{base}/api/auth/login", json={"email": "admin@pivotal.local", "password": password}
                    )
                    auth = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
                    started = time.perf_counter()
                    size = lines = 0
                    async with session.get(f"{base}/api/contacts/export", headers=auth) as response:
                        async for chunk in response.content.iter_chunked(1 << 16):
                            size += len(chunk)
                            lines += chunk.count(b"\n")
                    elapsed = time.perf_counter() - started
                    print(
                        f"export:  {lines - 1:,} contacts, {size / 1e6:.0f} MB in {elapsed:.1f} s "
                        f"({(lines - 1) / elapsed:,.0f} rows/s; target <= 30 s for 1,000,000)"
                    )
                    for label, definition in {} if args.skip_preview else FILTERS.items():
                        timings = []
                        count = 0
                        for _ in range(args.repeat):
                            started = time.perf_counter()
                            response = await session.post(
                                f"{base}/api/segments/preview", json={"filter": definition, "limit": 25}, headers=auth
                            )
                            count = (await response.json())["count"]
                            timings.append((time.perf_counter() - started) * 1000)
                        print(
                            f"preview [{label}]: {count:,} match, p50 {statistics.median(timings):.0f} ms, "
                            f"max {max(timings):.0f} ms over {args.repeat} (target <= 500 ms)"
                        )
                    searches = []
                    for i in range(1, 41):
                        n = (i * 24_989) % args.rows + 1
                        searches += [f"person{n}@company{1 + n % (args.rows // 10)}.com", f"person{n}@",
                                     f"+1 (415) {2000 + n % 7999:03d}", f"company{1 + n % 1000}.com",
                                     f"Company {n % 9000 + 1}", "cara jon"]  # fmt: skip
                    timings = []
                    for q in searches:
                        started = time.perf_counter()
                        response = await session.get(f"{base}/api/search", params={"q": q}, headers=auth)
                        await response.read()
                        assert response.status == 200, q
                        timings.append((time.perf_counter() - started) * 1000)
                    timings.sort()
                    p95 = timings[int(len(timings) * 0.95) - 1]
                    print(
                        f"search: {len(timings)} queries (e-mail, e-mail prefix, phone, domain, company, name): "
                        f"p50 {statistics.median(timings):.0f} ms, p95 {p95:.0f} ms (target p95 <= 100 ms)"
                    )
            finally:
                process.terminate()
                await process.wait()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
