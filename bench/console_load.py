"""Benchmark: many agent consoles and supervisor dashboards on one daemon (issue 7).

``pivotal run`` in its own process (sandbox carrier, throwaway database); in this process, N agent consoles
and M supervisor dashboards over the real websockets (the protocols the browser pages speak). Every agent
joins a campaign and then changes its pause reason every few seconds (a state change: an ack and a state frame
for the agent, a row for every dashboard). Reported, against the issue's targets:

- agent message latency: a request sent -> its ack received (p50, p99, max; target p99 <= 100 ms);
- dashboard latency: an agent's request sent -> the change seen by each dashboard (same target);
- the daemon's memory per agent connection and per dashboard (resident set growth / connections);
- the daemon's event-loop lag p99 (its own histogram) and what the dashboards received;
- with ``--browser-pages K``, K of the dashboards are the real page in headless Chromium (the rest protocol
  clients): the rows it shows at the end and its main thread's long tasks (> 50 ms) while measured.

    .venv/bin/python bench/console_load.py [--agents 1000] [--supervisors 20] [--seconds 60] [--every 2.0]
        [--browser-pages 2]

The clients share the machine's two cores with the daemon, so the latencies include their own scheduling.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import websockets
from dialer_live import make_campaign, prepare, quantile_from_buckets
from throwaway import free_port, throwaway_database, wait_ready

from sim.bot_agents import ensure_bots, login

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))
ADMIN_PASSWORD = "bench-admin-password"
USER_PASSWORD = "bench-user-password"
REASONS = ("break", "lunch")


@dataclass
class Load:
    sent: dict[int, tuple[int, str, float]] = field(default_factory=dict)  # user -> (seq, reason, sent at)
    ack_ms: list[float] = field(default_factory=list)
    dashboard_ms: list[float] = field(default_factory=list)
    dashboard_frames: int = 0
    dashboard_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    measuring: bool = False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def agent(ws_base: str, token: str, campaign_id: int, every: float, load: Load, joined: asyncio.Event,
                stop: asyncio.Event) -> None:  # fmt: skip
    rng = random.Random(token)  # noqa: S311 - jitter
    async with websockets.connect(f"{ws_base}/ws/agent", subprotocols=["pivotal.v1", f"bearer.{token}"],  # type: ignore[list-item]
                                  max_size=2**20, ping_interval=None) as ws:  # fmt: skip
        welcome = json.loads(await ws.recv())
        user_id = welcome["user_id"]
        pending: dict[str, float] = {}

        async def read() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame["type"] == "ack" and frame.get("id") in pending:
                    started = pending.pop(frame["id"])
                    if load.measuring:
                        load.ack_ms.append((time.perf_counter() - started) * 1000)
                    if frame.get("session_id"):
                        joined.set()
                elif frame["type"] == "error":
                    load.errors.append(f"{user_id}: {frame['code']} {frame['message']}")

        reader = asyncio.create_task(read())
        pending["join"] = time.perf_counter()
        await ws.send(json.dumps({"type": "join", "id": "join", "campaign_id": campaign_id}))
        seq = 0
        await asyncio.sleep(rng.uniform(0, every))
        while not stop.is_set():
            seq += 1
            reason = REASONS[seq % 2]
            frame_id = f"p{seq}"
            now = time.perf_counter()
            pending[frame_id] = now
            load.sent[user_id] = (seq, reason, now)
            await ws.send(json.dumps({"type": "pause", "id": frame_id, "reason": reason}))
            await asyncio.sleep(every * rng.uniform(0.8, 1.2))
        await ws.send(json.dumps({"type": "leave", "id": "leave"}))
        await asyncio.sleep(0.2)
        reader.cancel()


async def dashboard(ws_base: str, token: str, load: Load, stop: asyncio.Event) -> None:
    seen: dict[int, int] = {}
    async with websockets.connect(f"{ws_base}/ws/supervisor", subprotocols=["pivotal.v1", f"bearer.{token}"],  # type: ignore[list-item]
                                  max_size=2**24, ping_interval=None) as ws:  # fmt: skip
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                continue
            now = time.perf_counter()
            frame = json.loads(raw)
            if load.measuring:
                load.dashboard_frames += 1
                load.dashboard_bytes += len(raw)
            if frame["type"] != "agents":
                continue
            for row in frame["agents"]:
                expected = load.sent.get(row["user_id"])
                if expected is None or seen.get(row["user_id"]) == expected[0] or row["reason"] != expected[1]:
                    continue
                seen[row["user_id"]] = expected[0]
                if load.measuring:
                    load.dashboard_ms.append((now - expected[2]) * 1000)


def summary(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (f"p50 {p(0.5):6.1f} ms  p99 {p(0.99):6.1f} ms  max {ordered[-1]:6.1f} ms  "
            f"mean {statistics.fmean(ordered):5.1f} ms over {len(ordered):,}")  # fmt: skip


def _collect(errors: list[str]) -> Any:
    return lambda exc: errors.append(str(exc))


class BrowserPages:
    """Real supervisor pages in headless Chromium (Playwright, Debian's Chromium), signed in with a token."""

    def __init__(self, base: str, tokens: list[str]) -> None:
        self.base, self.tokens = base, tokens
        self.pages: list[Any] = []
        self.errors: list[list[str]] = []

    async def open(self) -> None:
        if not self.tokens:
            return
        from playwright.async_api import async_playwright

        self.playwright = await async_playwright().start()
        args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]  # fmt: skip
        self.browser = await self.playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        for token in self.tokens:
            context = await self.browser.new_context(viewport={"width": 1400, "height": 900}, base_url=self.base)
            await context.add_init_script(f"sessionStorage.setItem('pivotal.token', {json.dumps(token)})")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", _collect(errors))
            await page.goto("/supervisor")
            self.pages.append(page)
            self.errors.append(errors)

    async def start_measuring(self) -> None:
        for page in self.pages:
            await page.evaluate("""() => { window.benchLong = []; new PerformanceObserver((list) => {
                for (const entry of list.getEntries()) window.benchLong.push(entry.duration); })
                .observe({ type: "longtask" }); }""")

    async def results(self) -> list[tuple[int, int, float, int]]:
        out = []
        for page, errors in zip(self.pages, self.errors, strict=True):
            rows = await page.evaluate("document.querySelectorAll('#agents tbody tr').length")
            long_tasks = await page.evaluate("window.benchLong")
            out.append((rows, len(long_tasks), max(long_tasks, default=0.0), len(errors)))
        return out

    async def close(self) -> None:
        if self.pages:
            await self.browser.close()
            await self.playwright.stop()


async def users(base: str, count: int, role: str, prefix: str) -> list[str]:
    if role == "agent":
        return await ensure_bots(base, "bench@pivotal.local", ADMIN_PASSWORD, count, USER_PASSWORD)
    emails = [f"{prefix}-{i}@pivotal.local" for i in range(1, count + 1)]
    async with aiohttp.ClientSession() as http:
        token = await login(http, base, "bench@pivotal.local", ADMIN_PASSWORD)
        for email in emails:
            body = {"email": email, "password": USER_PASSWORD, "roles": [role], "display_name": email.split("@")[0]}
            async with http.post(f"{base}/api/users", json=body, headers={"Authorization": f"Bearer {token}"}) as r:
                if r.status not in (201, 409):
                    raise SystemExit(f"creating {email}: {r.status} {await r.text()}")
    return emails


async def tokens(base: str, emails: list[str]) -> list[str]:
    gate = asyncio.Semaphore(16)
    async with aiohttp.ClientSession() as http:

        async def one(email: str) -> str:
            async with gate:
                return await login(http, base, email, USER_PASSWORD)

        return list(await asyncio.gather(*(one(e) for e in emails)))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--supervisors", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between an agent's state changes")
    parser.add_argument("--browser-pages", type=int, default=0, help="dashboards that are the real page in Chromium")
    default_url = os.environ.get("PIVOTAL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-url", default=default_url)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ws_base = f"ws://127.0.0.1:{port}"
    async with throwaway_database(args.database_url) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
        env |= {"PIVOTAL_DATABASE_URL": url, "PIVOTAL_LOGGING__LEVEL": "warning", "PIVOTAL_AUTH__BCRYPT_ROUNDS": "4",
                "PIVOTAL_DATABASE__POOL_MAX": "20"}  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            argv = [PIVOTAL, "--data-dir", tmp, "user", "create", "--email", "bench@pivotal.local", "--role", "admin",
                    "--password-stdin"]  # fmt: skip
            create = subprocess.run(argv, input=ADMIN_PASSWORD + "\n", env=env, text=True, capture_output=True)  # noqa: ASYNC221
            if create.returncode:
                raise SystemExit(create.stderr)
            await prepare(url, 100)
            daemon = await asyncio.create_subprocess_exec(
                PIVOTAL, "--data-dir", tmp, "run", "--port", str(port), env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                await wait_ready(base, timeout_s=60)
                await run(args, base, ws_base, daemon.pid)
            finally:
                daemon.terminate()
                await daemon.wait()


async def run(args: argparse.Namespace, base: str, ws_base: str, pid: int) -> None:
    async with aiohttp.ClientSession(base_url=base) as http:
        admin = {"Authorization": f"Bearer {await login(http, base, 'bench@pivotal.local', ADMIN_PASSWORD)}"}
        cid = await make_campaign(http, admin, 100)
        async with http.post(f"/api/campaigns/{cid}/actions/start", headers=admin) as r:
            assert r.status == 200, await r.text()
    started = time.monotonic()
    agent_tokens = await tokens(base, await users(base, args.agents, "agent", "bench-agent"))
    supervisor_tokens = await tokens(base, await users(base, args.supervisors, "supervisor", "bench-supervisor"))
    print(f"{args.agents} agents and {args.supervisors} supervisors signed in ({time.monotonic() - started:.0f} s)")
    await asyncio.sleep(2.0)  # the campaign's runner is up (the engine looks every second)
    load, stop = Load(), asyncio.Event()
    rss_start = rss_kib(pid)
    protocol_tokens = supervisor_tokens[args.browser_pages :]
    dashboards = [asyncio.create_task(dashboard(ws_base, t, load, stop)) for t in protocol_tokens]
    pages = BrowserPages(base, supervisor_tokens[: args.browser_pages])
    await pages.open()
    await asyncio.sleep(2.0)
    rss_dashboards = rss_kib(pid)
    joined = [asyncio.Event() for _ in agent_tokens]
    agents = []
    for token, event in zip(agent_tokens, joined, strict=True):  # connect at about 200 a second, as a shift starts
        agents.append(asyncio.create_task(agent(ws_base, token, cid, args.every, load, event, stop)))
        await asyncio.sleep(0.005)
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in joined)), 120)
    await asyncio.sleep(2.0)
    rss_agents = rss_kib(pid)
    print(f"all {args.agents} agents joined; measuring for {args.seconds:.0f} s")
    await pages.start_measuring()
    load.measuring = True
    measured_from = time.monotonic()
    await asyncio.sleep(args.seconds)
    load.measuring = False
    page_results = await pages.results()
    await pages.close()
    elapsed = time.monotonic() - measured_from
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as r:
        metrics = await r.text()
    stop.set()
    results = await asyncio.gather(*agents, *dashboards, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    lag, probes = quantile_from_buckets(metrics, "pivotal_event_loop_lag_seconds", 0.99)

    print(f"\nconsole load: {args.agents} agent consoles, {args.supervisors} supervisor dashboards, one daemon, "
          f"{elapsed:.0f} s measured, a state change per agent every {args.every:.1f} s")  # fmt: skip
    print(f"  agent request -> ack:            {summary(load.ack_ms)}   (target p99 <= 100 ms)")
    print(f"  agent request -> each dashboard: {summary(load.dashboard_ms)}   (target p99 <= 100 ms)")
    print(f"  dashboards received {load.dashboard_frames / elapsed / max(1, args.supervisors):.1f} frames/s each, "
          f"{load.dashboard_bytes / elapsed / max(1, args.supervisors) / 1024:.0f} KiB/s each")  # fmt: skip
    per_dashboard = (rss_dashboards - rss_start) / max(1, args.supervisors)
    per_agent = (rss_agents - rss_dashboards) / max(1, args.agents)
    print(f"  daemon memory: {rss_start / 1024:.0f} MiB before; +{per_dashboard:.0f} KiB per dashboard; "
          f"+{per_agent:.0f} KiB per agent connection (joined, with its session)")  # fmt: skip
    print(f"  event-loop lag p99 <= {lag * 1000 if lag is not None else float('nan'):.0f} ms over {probes} probes")
    for rows, long_tasks, longest, errors in page_results:
        print(f"  browser dashboard: {rows} agent rows shown (of {args.agents}), {long_tasks} long tasks > 50 ms "
              f"(longest {longest:.0f} ms) in {elapsed:.0f} s, {errors} JavaScript errors")  # fmt: skip
    print(f"  errors: {len(load.errors)} refused frames, {len(failures)} connections failed")
    for line in (load.errors + [repr(f) for f in failures])[:5]:
        print("   ", line)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
