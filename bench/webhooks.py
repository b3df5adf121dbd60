"""Benchmark: signed webhook ingestion through a real daemon (issue 5).

Starts ``pivotal run`` on a throwaway database with a generated webhook key, pre-signs N call events (each
leg: initiated, answered, AMD verdict, bridged, hangup; 5% re-delivered as duplicates), then posts them over
keep-alive connections:
- throughput: as fast as C concurrent clients can send (target >= 2,500 events/s on one core for the daemon);
- latency: at a fixed 1,000 events/s, receipt to state change (the answer is sent after the leg changed;
  measured at the client, so it includes the loopback round trip) p99 (target <= 20 ms).
Then checks every event was stored exactly once.

    .venv/bin/python bench/webhooks.py [--events 20000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from nacl.signing import SigningKey
from throwaway import free_port, throwaway_database

from dialer.webhook_signature import public_key_text, sign

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))
STEPS = [
    ("call.initiated", {"direction": "outgoing", "state": "bridging"}),
    ("call.answered", {}),
    ("call.machine.premium.detection.ended", {"result": "human_business"}),
    ("call.bridged", {}),
    ("call.hangup", {"hangup_cause": "normal_clearing", "hangup_source": "callee", "sip_hangup_cause": "200"}),
]


def events(count: int, key: SigningKey, seed: int) -> tuple[list[tuple[bytes, dict[str, str]]], int]:
    """Pre-signed deliveries (so the client's CPU goes to sending) and how many distinct events they hold."""
    rng = random.Random(seed)  # noqa: S311 - benchmark data
    now = int(time.time())
    deliveries: list[tuple[bytes, dict[str, str]]] = []
    distinct = 0
    while len(deliveries) < count:
        leg = f"v3:{uuid.uuid4().hex}"
        for step, (event_type, extra) in enumerate(STEPS):
            payload = {"call_control_id": leg, "call_leg_id": leg[3:], "call_session_id": leg[3:], **extra}
            data = {"record_type": "event", "event_type": event_type, "id": str(uuid.uuid4()),
                    "occurred_at": f"2026-11-24T15:00:0{step}.000000Z", "payload": payload}  # fmt: skip
            body = json.dumps({"data": data, "meta": {"attempt": 1, "delivered_to": "bench"}}).encode()
            deliveries.append((body, {**sign(key, body, now), "Content-Type": "application/json"}))
            distinct += 1
            if rng.random() < 0.05:  # the carrier delivers it again
                deliveries.append(deliveries[-1])
    kept = deliveries[:count]
    return kept, len({body for body, _ in kept})


async def send(session: aiohttp.ClientSession, url: str, batch: list[tuple[bytes, dict[str, str]]],
               latencies: list[float], rate: float | None) -> None:  # fmt: skip
    started = time.perf_counter()
    for index, (body, headers) in enumerate(batch):
        if rate is not None:
            due = started + index / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
        sent = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 200:
                raise SystemExit(f"delivery refused: {response.status} {await response.text()}")
        latencies.append(time.perf_counter() - sent)


async def run(url: str, total: int, clients: int) -> None:
    key = SigningKey.generate()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    env |= {"PIVOTAL_DATABASE_URL": url, "PIVOTAL_TELEPHONY__WEBHOOK_PUBLIC_KEY": public_key_text(key),
            "PIVOTAL_TELEPHONY__SANDBOX": "false",
            "PIVOTAL_LOGGING__LEVEL": "warning"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        daemon = await asyncio.create_subprocess_exec(
            PIVOTAL, "--data-dir", tmp, "run", "--port", str(port), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            endpoint = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                for _ in range(100):
                    try:
                        async with session.get(f"{endpoint}/readyz") as ready:
                            if ready.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
                deliveries, distinct = events(total, key, seed=1)
                half = len(deliveries) // 2
                # Throughput: C clients as fast as they can.
                latencies: list[float] = []
                started = time.perf_counter()
                chunks = [deliveries[i:half:clients] for i in range(clients)]
                await asyncio.gather(
                    *(send(session, f"{endpoint}/webhooks/telnyx", c, latencies, None) for c in chunks)
                )
                elapsed = time.perf_counter() - started
                print(f"throughput: {half:,} deliveries in {elapsed:.2f} s = {half / elapsed:,.0f} events/s "
                      f"with {clients} concurrent senders (target >= 2,500/s)")  # fmt: skip
                # Latency at a steady 1,000 events/s.
                latencies = []
                rest = deliveries[half:]
                paced = [rest[i::10] for i in range(10)]
                await asyncio.gather(
                    *(send(session, f"{endpoint}/webhooks/telnyx", c, latencies, 100.0) for c in paced)
                )
                latencies.sort()
                p50 = statistics.median(latencies) * 1000
                p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
                worst = latencies[-1] * 1000
                print(f"latency at 1,000 events/s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms "
                      f"over {len(latencies):,} deliveries (target p99 <= 20 ms)")  # fmt: skip
            conn = await asyncpg.connect(url)
            for _ in range(50):
                stored = await conn.fetchval("SELECT count(*) FROM call_events")
                if stored >= distinct:
                    break
                await asyncio.sleep(0.1)
            applied = await conn.fetchval("SELECT count(*) FROM call_events WHERE handling = 'applied'")
            await conn.close()
            print(f"stored: {stored:,} events for {distinct:,} distinct ({len(deliveries) - distinct:,} re-deliveries "
                  f"dropped), {applied:,} applied; lost or doubled: {abs(stored - distinct)}")  # fmt: skip
        finally:
            daemon.terminate()
            await asyncio.wait_for(daemon.wait(), timeout=20)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--database-url", default=os.environ.get("PIVOTAL_TEST_DATABASE_URL"),
                        help="server to create a throwaway database on (required)")  # fmt: skip
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("give --database-url (or PIVOTAL_TEST_DATABASE_URL)")
    async with throwaway_database(args.database_url) as url:
        await run(url, args.events, args.clients)


if __name__ == "__main__":
    asyncio.run(main())
