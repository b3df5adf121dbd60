"""Benchmark: the in-memory suppression index and the phone decision (issue 4).

Fills a throwaway database with N global phone DNC entries (default 10,000,000; 1% of them expiring), then:
- loads the index the way the daemon does (COPY, keys sorted by PostgreSQL): time and memory;
- 1,000,000 random lookups, half of them hits, one thread;
- the full phone decision (DNC + domain + consent + window + attempts + lead cap) for 10,000 varied contacts;
- propagation: 200 suppressions added through the store, each timed from the call until a listening node
  (its own connection) enforces it.
Targets: load <= 30 s, structure <= 400 MB, lookup <= 2 us, decision <= 20 us, propagation p99 <= 1 s.

    .venv/bin/python bench/compliance.py [--numbers 10000000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from config.settings import DatabaseSettings
from crm.audit import SYSTEM
from crm.compliance import suppressions
from crm.compliance.compact_sets import phone_key, text_key
from crm.compliance.decision import PhoneCampaign, PhoneTarget, decide_phone
from crm.compliance.feed import SuppressionFeed
from crm.compliance.local_time import local_zones
from crm.compliance.rules import AttemptHistory, AttemptRules
from crm.compliance.suppression_index import load_index
from pivotal.database import create_pool
from pivotal.embedded_pg import embedded_postgres
from pivotal.schema import apply_schema

FIRST = 2_012_000_000  # +1 201 200 0000 onwards: every 3rd number is suppressed
STEP = 3


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


async def fill(conn: asyncpg.Connection, numbers: int) -> float:
    started = time.perf_counter()
    await conn.execute("SET statement_timeout = 0")
    batch = 1_000_000
    for offset in range(0, numbers, batch):
        await conn.execute(
            f"""INSERT INTO suppressions (channel, scope, value, source, expires_at)
                SELECT 'phone', 'global', '+1' || ({FIRST} + i * {STEP})::text, 'import',
                       CASE WHEN i % 100 = 0 THEN now() + interval '30 days' END
                  FROM generate_series($1::bigint, $2::bigint) i""",
            offset,
            min(offset + batch, numbers) - 1,
        )
    await conn.execute("ANALYZE suppressions")
    return time.perf_counter() - started


def lookups(index_blocked, numbers: int, count: int = 1_000_000) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    rng = random.Random(4)  # noqa: S311 - benchmark data
    keys = []
    for i in range(count):
        n = rng.randrange(numbers)
        keys.append(10_000_000_000 + FIRST + n * STEP + (0 if i % 2 == 0 else 1))  # odd ones miss
    now = time.time()
    started = time.perf_counter()
    hits = sum(1 for key in keys if index_blocked("phone", key, None, now))
    return (time.perf_counter() - started) / count * 1e6, hits


def decisions(index, count: int = 10_000) -> float:  # type: ignore[no-untyped-def]
    rng = random.Random(5)  # noqa: S311
    campaign = PhoneCampaign(1, consent_required=False, attempts=AttemptRules(abandon_lockout_hours=72))
    now = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    numbers = ["+12125550100", "+13125550100", "+14155550100", "+442079460958", "+17095551234", "+919812345678"]
    targets = []
    for i in range(count):
        number = numbers[i % len(numbers)][:-4] + f"{rng.randrange(10_000):04d}"
        last = now - timedelta(hours=rng.randrange(1, 100))
        targets.append(
            PhoneTarget(
                i, phone_key(number), local_zones(phone_e164=number), None, (text_key(f"company{i % 500}.com"),),
                rng.choice(["granted", "unknown"]),
                AttemptHistory(rng.randrange(4), rng.randrange(2), last, rng.choice(["busy", "no_answer"]), None),
            )
        )  # fmt: skip
    started = time.perf_counter()
    allowed = sum(decide_phone(campaign, target, index, now).allowed for target in targets)
    elapsed = (time.perf_counter() - started) / count * 1e6
    print(f"decision: {elapsed:.1f} us per contact over {count:,} ({allowed:,} allowed; target <= 20 us)")
    return elapsed


async def propagation(url: str, pool: asyncpg.Pool, count: int = 200) -> list[float]:
    node = SuppressionFeed(lambda: asyncpg.connect(url))
    await node.start()
    delays = []
    try:
        for i in range(count):
            number = f"+1646555{i:04d}"
            key = phone_key(number)
            started = time.perf_counter()
            async with pool.acquire() as conn:
                await suppressions.add(conn, SYSTEM, channel="phone", value=number, source="manual")
            while not node.index.blocked("phone", key, None, time.time()):  # noqa: ASYNC110 - polling is the measurement
                await asyncio.sleep(0.0005)
            delays.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
    finally:
        await node.close()
    return delays


async def run(url: str, numbers: int) -> None:
    conn = await asyncpg.connect(url)
    await apply_schema(conn)
    print(f"filling {numbers:,} DNC numbers ...", flush=True)
    print(f"filled in {await fill(conn, numbers):.1f} s")
    before = rss_mb()
    started = time.perf_counter()
    index = await load_index(conn)
    load_s = time.perf_counter() - started
    after = rss_mb()
    print(f"load: {load_s:.1f} s for {len(index.global_sets['phone']):,} numbers (target <= 30 s)")
    print(f"memory: arrays {index.nbytes / 1e6:.0f} MB, process RSS +{after - before:.0f} MB (target <= 400 MB)")
    per_lookup, hits = lookups(index.blocked, numbers)
    print(f"lookup: {per_lookup:.2f} us each over 1,000,000 random numbers, {hits:,} hits (target <= 2 us)")
    decisions(index)
    await conn.close()
    pool = await create_pool(url, DatabaseSettings(pool_min=1, pool_max=2))
    delays = sorted(await propagation(url, pool))
    await pool.close()
    p50, p99 = statistics.median(delays), delays[int(len(delays) * 0.99) - 1]
    print(f"propagation: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms over "
          f"{len(delays)} additions, commit to a listening node's memory (target p99 <= 1 s)")  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=10_000_000)
    parser.add_argument("--database-url", default=os.environ.get("PIVOTAL_TEST_DATABASE_URL"),
                        help="server to create a throwaway database on (default: embedded PostgreSQL)")  # fmt: skip
    args = parser.parse_args()
    if not args.database_url:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="pivotal-bench-compliance-") as tmp:
            async with embedded_postgres(Path(tmp)) as url:
                await run(url, args.numbers)
        return
    name = f"pivotal_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        await run(urlunsplit(urlsplit(args.database_url)._replace(path="/" + name)), args.numbers)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
