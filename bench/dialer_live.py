"""Benchmark: the live dialer in real time (issue 6). ``pivotal run`` in its own process on a throwaway database;
the simulated carrier and the bot agents here (they are the outside world: Telnyx and the call centre).

A predictive campaign of N contacts, M bot agents over the real websocket protocol, each with a softphone leg
parked at the carrier; the carrier plays every number's seeded script in real time (35% people, 20%
machines, the rest no answer, busy or failures). After the run it reports, against the issue's targets:

- p99 from the human-answer webhook to the bridge command (the daemon's histogram; target <= 50 ms);
- event-loop lag p99 (a 100 ms timer in the daemon; target <= 50 ms);
- concurrent calls at the carrier (customer legs, and with the agents' parked legs; target >= 600);
- dispositions acknowledged to bots and missing from PostgreSQL (target 0);
- calls, bridges, abandons (the US rate), talk time per agent-hour.

    .venv/bin/python bench/dialer_live.py [--agents 200] [--minutes 10] [--contacts 40000]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

The baseline in the same run is the issue's own target figures (no other dialer runs on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer
from throwaway import free_port, throwaway_database, wait_ready

from sim.bot_agents import BotOptions, ensure_bots, run_bots
from sim.carrier import Options, SimCarrier
from sim.scenarios import Script

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))
ADMIN_PASSWORD = "bench-admin-password"
#: What a dialled number does: 5% people, 3% machines, most ring out (the ring timeout is 20 s).
LIST_MIX = {"human": 0.05, "machine": 0.03, "no_answer": 0.72, "busy": 0.1, "unavailable": 0.05, "invalid": 0.05}
ALL_WEEK = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def quantile_from_buckets(text: str, metric: str, q: float) -> tuple[float | None, int]:
    """The upper bound of the bucket holding the q-quantile, summed over every label set, and the count."""
    buckets: dict[float, float] = {}
    for match in re.finditer(rf'^{metric}_bucket\{{(?:[^}}]*,)?le="([^"]+)"\}} ([0-9.e+]+)$', text, re.M):
        bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
        buckets[bound] = buckets.get(bound, 0.0) + float(match.group(2))
    if not buckets:
        return None, 0
    total = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound, int(total)
    return None, int(total)


async def prepare(url: str, contacts: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO contacts (first_name, last_name, phone_e164, timezone)
               SELECT 'First' || c, 'Last' || c, '+1646' || lpad(c::text, 7, '0'), 'America/New_York'
                 FROM generate_series(1, $1) c""",
            contacts,
        )
    finally:
        await conn.close()


async def seed_history(url: str, campaign_id: int, connected: int, abandoned: int) -> None:
    """Yesterday's calls of this campaign (other contacts, not in today's list): a campaign on its second day,
    whose 30-day abandon rate has room. On day one with no history the pacer's guard holds it to dials that
    can hardly abandon anyone until enough people have been connected for an abandon to fit under the ceiling."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """WITH extra AS (
                 INSERT INTO contacts (first_name, phone_e164, timezone)
                 SELECT 'Yesterday', '+1917' || lpad(c::text, 7, '0'), 'America/New_York'
                   FROM generate_series(1, $2::int + $3::int) c RETURNING id)
               INSERT INTO call_attempts (campaign_id, contact_id, attempt_number, to_e164, from_e164, dial_command_id,
                                          state, created_at, dialed_at, answered_at, bridged_at, ended_at, abandoned)
               SELECT $1, e.id, 1, '+19170000000', '+12125550199', 'history-' || e.id,
                      CASE WHEN row_number() OVER () <= $3::int THEN 'abandoned' ELSE 'completed' END::call_state,
                      now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
                      CASE WHEN row_number() OVER () <= $3::int THEN NULL ELSE now() - interval '1 day' END,
                      now() - interval '1 day' + interval '2 minutes', row_number() OVER () <= $3::int
                 FROM extra e""",
            campaign_id, connected, abandoned,
        )  # fmt: skip
    finally:
        await conn.close()


async def make_campaign(http: aiohttp.ClientSession, admin: dict[str, str], contacts: int) -> int:
    async def call(method: str, path: str, body: Any = None) -> Any:
        async with http.request(method, path, json=body, headers=admin) as response:
            data = await response.json()
            if response.status >= 300:
                raise SystemExit(f"{method} {path}: {response.status} {data}")
            return data

    script = await call("POST", "/api/scripts", {"name": "Opener", "body": "Hi {{contact.first_name}}"})
    form = await call("POST", "/api/forms", {"name": "Qualify", "fields": [
        {"key": "budget", "label": "Budget", "type": "integer", "required": True, "min": 1}]})  # fmt: skip
    catalogues = await call("GET", "/api/disposition-catalogues")
    default = next(c for c in catalogues["items"] if c["code"] == "default")
    targets = await call("POST", "/api/lists", {"name": "Bench"})
    for first in range(1, contacts + 1, 10_000):
        ids = list(range(first, min(first + 10_000, contacts + 1)))
        await call("POST", f"/api/lists/{targets['id']}/members", {"contact_ids": ids})
    campaign = await call("POST", "/api/campaigns", {
        "name": "Live bench", "dial_mode": "predictive", "script_id": script["id"],
        "qualification_form_id": form["id"], "disposition_catalogue_id": default["id"],
        "caller_id_e164": "+12125550199", "ring_timeout_secs": 20, "lines_per_agent": 3.5,
        "abandon_message": "Bench calling; press 9 to opt out.", "hopper_size": 2000})  # fmt: skip
    cid = int(campaign["id"])
    await call("PUT", f"/api/campaigns/{cid}/audience", {"rules": [{"mode": "include", "list_id": targets["id"]}]})
    await call("PUT", f"/api/campaigns/{cid}/compliance", {"calling_window": ALL_WEEK, "max_attempts": 1,
                                                           "one_call_per_account": False})  # fmt: skip
    return cid


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--contacts", type=int, default=25_000)
    parser.add_argument("--no-history", dest="history", action="store_false",
                        help="start as a campaign's first day (the pacer stays progressive for a while)")  # fmt: skip
    default_url = os.environ.get("PIVOTAL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-url", default=default_url)
    parser.add_argument("--daemon-log", type=Path, help="write the daemon's log (warnings and up) to this file")
    parser.add_argument("--nice", type=int, default=10,
                        help="niceness of this process (carrier and bots) once the daemon runs: they stand for Telnyx "
                             "and 200 browsers on other machines and should not take the daemon's CPU")  # fmt: skip
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    carrier = SimCarrier(Options(seed=11, channel_limit=5000, webhook_url=f"{base}/webhooks/telnyx",
                                 events_kept=100))  # fmt: skip
    rng = random.Random(11)  # noqa: S311 - simulation
    for n in range(1, args.contacts + 1):  # a low-contact B2B list: few answer, most ring out (pacing.md S1-like)
        outcome = rng.choices(list(LIST_MIX), weights=list(LIST_MIX.values()))[0]
        carrier.scripts[f"+1646{n:07d}"] = Script(outcome, ring_ms=rng.randint(3000, 12000) if outcome in (
            "human", "machine") else rng.randint(1000, 4000), greeting_ms=rng.randint(800, 2500),
            talk_ms=rng.randint(30_000, 150_000))  # fmt: skip
    sim = TestServer(carrier.app(), host="127.0.0.1")
    await sim.start_server()
    sim_url = str(sim.make_url("")).rstrip("/")
    async with throwaway_database(args.database_url) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
        env |= {"PIVOTAL_DATABASE_URL": url, "PIVOTAL_TELEPHONY__WEBHOOK_PUBLIC_KEY": carrier.public_key,
                "PIVOTAL_TELEPHONY__SANDBOX": "false", "PIVOTAL_TELEPHONY__API_BASE_URL": f"{sim_url}/v2",
                "PIVOTAL_LOGGING__LEVEL": "warning", "PIVOTAL_AUTH__BCRYPT_ROUNDS": "4",
                "PIVOTAL_DATABASE__POOL_MAX": "20"}  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            argv = [PIVOTAL, "--data-dir", tmp, "user", "create", "--email", "bench@pivotal.local", "--role", "admin",
                    "--password-stdin"]  # fmt: skip
            create = subprocess.run(argv, input=ADMIN_PASSWORD + "\n", env=env, text=True, capture_output=True)  # noqa: ASYNC221
            if create.returncode:
                raise SystemExit(create.stderr)
            await prepare(url, args.contacts)
            log = args.daemon_log.open("wb") if args.daemon_log else subprocess.DEVNULL
            daemon = await asyncio.create_subprocess_exec(
                PIVOTAL, "--data-dir", tmp, "run", "--port", str(port), env=env, stdout=log, stderr=log,
            )  # fmt: skip
            if args.nice:
                os.nice(args.nice)  # after the daemon started: it keeps the normal priority
            try:
                await wait_ready(base, timeout_s=60)
                async with aiohttp.ClientSession(base_url=base) as http:
                    async with http.post(
                        "/api/auth/login", json={"email": "bench@pivotal.local", "password": ADMIN_PASSWORD}
                    ) as r:
                        admin = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
                    async with http.post("/api/telephony/connections", headers=admin, json={
                            "name": "Sim", "connection_id": "sim", "credential_connection_id": "sim-agents",
                            "api_key": "k", "is_default": True, "max_dials_per_second": 30}) as r:  # fmt: skip
                        assert r.status == 201, await r.text()
                    cid = await make_campaign(http, admin, args.contacts)
                    if args.history:
                        await seed_history(url, cid, 4000, 60)  # 1.5%: the campaign has room under 3%
                    async with http.post(f"/api/campaigns/{cid}/actions/start", headers=admin) as r:
                        assert r.status == 200, await r.text()
                emails = await ensure_bots(base, "bench@pivotal.local", ADMIN_PASSWORD, args.agents, "bench-bot-pw")
                options = BotOptions(base, cid, "bench-bot-pw", wrap_s=(3.0, 10.0), positive_share=0.1,
                                     rtc_url=f"{sim_url.replace('http', 'ws', 1)}/_sim/rtc")  # fmt: skip
                samples: list[tuple[int, int]] = []

                async def sample() -> None:
                    while True:
                        live = [leg for leg in carrier.legs.values() if leg.state != "ended"]
                        customers = sum(1 for leg in live if not leg.agent)
                        samples.append((customers, len(live)))
                        await asyncio.sleep(1.0)

                sampler = asyncio.create_task(sample())
                started = time.monotonic()
                stats = await run_bots(emails, options, args.minutes * 60)
                elapsed = args.minutes * 60  # the shift; the wind-down after it (calls finishing) is not counted
                print(f"(the run took {(time.monotonic() - started) / 60:.1f} min with the wind-down)")
                sampler.cancel()
                async with aiohttp.ClientSession() as http:
                    metrics = await (await http.get(f"{base}/metrics")).text()
                await report(url, cid, stats, samples, metrics, elapsed, args)
            finally:
                daemon.terminate()
                await daemon.wait()
    await sim.close()


async def report(url: str, cid: int, stats: Any, samples: list[tuple[int, int]], metrics: str, elapsed: float,
                 args: argparse.Namespace) -> None:  # fmt: skip
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT call_attempt_id, disposition_code FROM attempt_dispositions")
        stored = {r["call_attempt_id"]: r["disposition_code"] for r in rows}
        row = await conn.fetchrow(
            """SELECT count(*) AS dials, count(answered_at) AS answered, count(bridged_at) AS bridged,
                      count(*) FILTER (WHERE abandoned) AS abandoned,
                      count(*) FILTER (WHERE abandoned AND bridged_at IS NOT NULL) AS late,
                      coalesce(sum(extract(epoch FROM ended_at - bridged_at)) FILTER (WHERE bridged_at IS NOT NULL
                               AND ended_at IS NOT NULL), 0) AS talk_s
                 FROM call_attempts WHERE campaign_id = $1 AND dial_command_id NOT LIKE 'history-%'""",
            cid,
        )
    finally:
        await conn.close()
    lost = [a for a, code in stats.acked.items() if stored.get(a) != code]
    bridge_p99, bridges = quantile_from_buckets(metrics, "pivotal_dialer_answer_to_bridge_seconds", 0.99)
    bridge_p50, _ = quantile_from_buckets(metrics, "pivotal_dialer_answer_to_bridge_seconds", 0.50)
    queue_p50, queued = quantile_from_buckets(metrics, "pivotal_dialer_queue_wait_seconds", 0.50)
    lag_p99, lag_n = quantile_from_buckets(metrics, "pivotal_event_loop_lag_seconds", 0.99)
    steady = samples[len(samples) // 5 :] or samples  # past the first fifth: the ramp-up
    print(
        f"live dialer: {args.agents} bot agents, a {elapsed / 60:.1f} min shift in real time, {args.contacts} contacts"
    )
    people = row["bridged"] + row["abandoned"] - row["late"]
    rate = row["abandoned"] / people if people else 0.0
    history = (f"; the 30 days with yesterday's seeded 60 of 4,060: {(row['abandoned'] + 60) / (people + 4060):.2%}"
               if args.history else "")  # fmt: skip
    print(f"  dials {row['dials']}, answered {row['answered']}, bridged {row['bridged']}, abandoned "
          f"{row['abandoned']} ({row['late']} of them late bridges): {rate:.2%} of answers today (machines "
          f"included: no AMD){history}")  # fmt: skip
    print(f"  concurrent customer calls at the carrier: max {max(s[0] for s in samples)}, steady mean "
          f"{sum(s[0] for s in steady) / len(steady):.0f}; with the agents' parked legs: max "
          f"{max(s[1] for s in samples)}   (target >= 600)")  # fmt: skip
    print(
        f"  human answer -> bridge command: p50 <= {bridge_p50 * 1000 if bridge_p50 else 0:.1f} ms, "
        f"p99 <= {bridge_p99 * 1000 if bridge_p99 else 0:.1f} ms over {bridges} bridges   (target <= 50 ms)"
    )
    print(f"  people who waited for an agent: {queued}, median wait <= {queue_p50 or 0:.2f} s")
    print(f"  event-loop lag p99 <= {lag_p99 * 1000 if lag_p99 else 0:.1f} ms over {lag_n} probes   (target <= 50 ms)")
    print(f"  talk time {float(row['talk_s']) / 60 / (args.agents * elapsed / 3600):.1f} min per agent-hour")
    print(f"  dispositions acknowledged {len(stats.acked)}, missing or different in PostgreSQL {len(lost)}   "
          f"(target 0); bot errors {len(stats.errors)}")  # fmt: skip
    for error in stats.errors[:10]:
        print(f"    {error}")


if __name__ == "__main__":
    asyncio.run(main())
