"""Benchmark: the simulated carrier against a real daemon, with chaotic webhook delivery (issue 5).

The simulator runs here (in-process); ``pivotal run`` runs as a subprocess with the simulator's webhook key on
a throwaway database. Through the real carrier adapter (telnyx SDK, dial limiter, command ids, retries) this
script dials N seeded numbers at the carrier's 30 dials/s, keeps a pool of agents on parked softphone legs
(pattern 2) and bridges each answered person to a free agent with ``park_after_unbridge``. Meanwhile the
simulator duplicates 20% of deliveries, lets each wander up to 300 ms (events of one leg overtake each other),
loses 5% of first attempts (retried a second later) and answers API calls with log-normal latency (p50 80 ms).

Then it checks, against the simulator's record of what it sent:
- lost: events sent but not in ``call_events`` (target 0);
- double-applied: deliveries the daemon took as new beyond the distinct events sent, from its metrics
  (target 0); every other delivery must have been answered "duplicate";
- order independence: each leg replayed from ``call_events`` in arrival order ends exactly as the same events
  replayed once in the order they were sent (state, facts, bridges; target 0 differences).

    .venv/bin/python bench/carrier_chaos.py [--calls 1200] [--agents 20] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from throwaway import free_port, throwaway_database, wait_ready

from dialer.carrier import Carrier, CarrierError
from dialer.leg_state import Leg, LegKind
from sim.carrier import Options, SimCarrier

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            raise SystemExit(f"gave up waiting after {timeout_s} s")
        await asyncio.sleep(0.2)


class MiniDialer:
    """Just enough of a dialer to make bridges: agents parked and answered, each answered person bridged to a
    free agent (decided from the simulator's own view of the calls: this is a load generator, not the engine)."""

    def __init__(self, carrier: SimCarrier, adapter: Carrier) -> None:
        self.sim = carrier
        self.adapter = adapter
        self.free: list[str] = []
        self.bridges = 0
        self.bridge_refusals = 0

    async def park_agents(self, count: int) -> None:
        for index in range(count):
            credential = await self.adapter.create_credential("bench-credentials", f"agent-{index}")
            agent = self.sim.softphones.register(credential.sip_username, auto_answer=True, socket=None)
            leg = self.sim.softphones.invite(agent, str(uuid.uuid4()), "+15550000000", [])
            await self.adapter.answer(leg.call_control_id)
            self.free.append(leg.call_control_id)

    async def bridge_answered(self, stop: asyncio.Event) -> None:
        handled: set[str] = set()
        while not stop.is_set():
            for leg in list(self.sim.legs.values()):
                if leg.agent is not None and leg.state == "answered" and leg.call_control_id not in self.free:
                    self.free.append(leg.call_control_id)  # its customer left: parked again
                if (leg.agent is None and leg.script.outcome == "human" and leg.state == "answered"
                        and leg.call_control_id not in handled and self.free):  # fmt: skip
                    handled.add(leg.call_control_id)
                    agent = self.free.pop(0)
                    try:
                        await self.adapter.bridge(agent, leg.call_control_id, park_after_unbridge=True)
                        self.bridges += 1
                    except CarrierError:
                        self.bridge_refusals += 1  # the person hung up first
                        self.free.append(agent)
            await asyncio.sleep(0.05)


def replay(events: list[tuple[str, str, dict[str, Any], Any]]) -> Leg:
    """A leg fed these events in this order, each once."""
    leg = Leg(str(events[0][2].get("call_control_id")), LegKind.of(events[0][2]))
    for _, event_type, payload, at in events:
        leg.apply(event_type, payload, at)
    return leg


async def check(url: str, sim: SimCarrier, metrics: str) -> None:
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    sent = {event_id: position for position, (event_id, _, _) in enumerate(sim.emitted)}
    for _ in range(100):
        stored = await conn.fetchval("SELECT count(*) FROM call_events")
        if stored >= len(sent):
            break
        await asyncio.sleep(0.1)
    rows = await conn.fetch("SELECT event_id, event_type, payload, occurred_at FROM call_events ORDER BY id")
    await conn.close()
    stored_ids = {row["event_id"] for row in rows}
    lost = len(set(sent) - stored_ids)
    counts = {line.split('result="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
              for line in metrics.splitlines() if line.startswith("pivotal_webhooks_total{")}  # fmt: skip
    taken = sum(value for result, value in counts.items() if result != "duplicate")
    duplicates = counts.get("duplicate", 0.0)
    deliveries = sim.webhooks.deliveries
    by_arrival: dict[str, list[tuple[str, str, dict[str, Any], Any]]] = {}
    for row in rows:
        payload = row["payload"]["data"]["payload"]
        if payload.get("call_control_id"):
            by_arrival.setdefault(payload["call_control_id"], []).append(
                (row["event_id"], row["event_type"], payload, row["occurred_at"])
            )
    overtaken = differences = 0
    for events in by_arrival.values():
        in_order = sorted(events, key=lambda event: sent.get(event[0], -1))
        held, truth = replay(events), replay(in_order)
        if held != truth:
            differences += 1
            print(f"  differs: {held} != {truth}")
        overtaken += sum(1 for a, b in zip(events, events[1:], strict=False) if sent.get(b[0], -1) < sent.get(a[0], -1))
    print(f"events sent: {len(sent):,} distinct; deliveries made: {deliveries:,} "
          f"({sim.duplicated:,} duplicated, {sim.webhooks.dropped:,} first attempts lost and retried); "
          f"{overtaken:,} events arrived after a later event of their leg")  # fmt: skip
    print(f"daemon: took {taken:,.0f} as new, {duplicates:,.0f} as duplicates; stored {len(rows):,}")
    print(f"lost: {lost} | double-applied: {taken - len(sent):,.0f} | duplicates not recognised: "
          f"{deliveries - len(sent) - duplicates:,.0f} | legs ending differently from in-order delivery: "
          f"{differences} of {len(by_arrival):,}  (targets: all 0)")  # fmt: skip


async def run(url: str, calls: int, agents: int, seed: int) -> None:
    port = free_port()
    chaos = Options(
        seed=seed,
        speed=20.0,
        channel_limit=100_000,
        duplicate_prob=0.2,
        reorder_window_ms=300,
        drop_prob=0.05,
        api_latency_ms=80.0,
        events_kept=10_000_000,
        webhook_url=f"http://127.0.0.1:{port}/webhooks/telnyx",
    )
    sim = SimCarrier(chaos)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    sim_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sim_port).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    env |= {"PIVOTAL_DATABASE_URL": url, "PIVOTAL_TELEPHONY__WEBHOOK_PUBLIC_KEY": sim.public_key,
            "PIVOTAL_TELEPHONY__SANDBOX": "false", "PIVOTAL_LOGGING__LEVEL": "warning"}  # fmt: skip
    adapter = Carrier("bench-key", f"http://127.0.0.1:{sim_port}/v2")
    with tempfile.TemporaryDirectory() as tmp:
        daemon = await asyncio.create_subprocess_exec(
            PIVOTAL, "--data-dir", tmp, "run", "--port", str(port), env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            endpoint = f"http://127.0.0.1:{port}"
            await wait_ready(endpoint)
            dialer = MiniDialer(sim, adapter)
            await dialer.park_agents(agents)
            stop = asyncio.Event()
            bridging = asyncio.create_task(dialer.bridge_answered(stop))
            started = time.perf_counter()
            amd = ("premium", "detect", "detect_beep")

            async def dial(index: int) -> None:
                await adapter.dial(connection_id="bench", from_="+15550100001", to=f"+1555{2000000 + index:07d}",
                                   amd=amd[index % 3], timeout_secs=30)  # fmt: skip

            await asyncio.gather(*(dial(i) for i in range(calls)))
            dialled = time.perf_counter() - started
            await until(lambda: all(leg.state == "ended" for leg in sim.legs.values() if leg.agent is None), 600)
            stop.set()
            await bridging
            for ccid in list(dialer.free):
                await adapter.hangup(ccid)
            await until(sim.quiet, 120)
            await asyncio.sleep(1.0)
            print(f"{calls:,} calls dialled in {dialled:.1f} s through the adapter ({calls / dialled:.1f}/s: 150 "
                  f"at once, then 30/s, the carrier's rule), {adapter.retries} command retries, "
                  f"{dialer.bridges:,} bridges to {agents} parked agents ({dialer.bridge_refusals} refused: the "
                  f"person had hung up), "
                  f"all done in {time.perf_counter() - started:.1f} s")  # fmt: skip
            async with aiohttp.ClientSession() as session, session.get(f"{endpoint}/metrics") as response:
                metrics = await response.text()
            await check(url, sim, metrics)
        finally:
            daemon.terminate()
            await asyncio.wait_for(daemon.wait(), timeout=20)
            await adapter.close()
            await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("PIVOTAL_TEST_DATABASE_URL"),
                        help="server to create a throwaway database on (required)")  # fmt: skip
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("give --database-url (or PIVOTAL_TEST_DATABASE_URL)")
    async with throwaway_database(args.database_url) as url:
        await run(url, args.calls, args.agents, args.seed)


if __name__ == "__main__":
    asyncio.run(main())
