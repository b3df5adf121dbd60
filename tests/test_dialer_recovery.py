"""kill -9 in the middle of a campaign: the daemon is a child process, the simulated carrier lives on in this
process (as Telnyx would), and bot agents work through it all. After the restart: calls the crash left
behind are hung up at the carrier, no acknowledged disposition is missing, nobody was dialled twice outside
the retry rules, and the agents reconnect and settle what they owed."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from sim.bot_agents import BotOptions, ensure_bots, run_bots
from sim.carrier import Options, SimCarrier
from tests.conftest import PASSWORD
from tests.daemon import PIVOTAL, Daemon, clean_environment, free_port
from tests.dialer_setup import make_campaign, settled


async def _daemon(env: dict[str, str], data_dir: str, port: int) -> Daemon:
    daemon = Daemon([PIVOTAL, "--data-dir", data_dir, "run", "--port", str(port)], env)
    await daemon.start()
    await daemon.wait_for_log("listening", timeout=60)
    return daemon


async def test_kill_9_mid_campaign_loses_nothing_and_dials_nobody_twice(
    database_url: str, role_users: Any, dialer_db: asyncpg.Pool, tmp_path: Any
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    carrier = SimCarrier(Options(seed=7, speed=20.0, channel_limit=1000, webhook_url=f"{base}/webhooks/telnyx"))
    sim = TestServer(carrier.app(), host="127.0.0.1")
    await sim.start_server()
    sim_url = str(sim.make_url("")).rstrip("/")
    env = clean_environment(
        PIVOTAL_DATABASE_URL=database_url, PIVOTAL_LOGGING__FORMAT="json", PIVOTAL_TELEPHONY__SANDBOX="false",
        PIVOTAL_TELEPHONY__API_BASE_URL=f"{sim_url}/v2", PIVOTAL_TELEPHONY__WEBHOOK_PUBLIC_KEY=carrier.public_key,
        PIVOTAL_TELEPHONY__SECRETS_KEY=base64.b64encode(os.urandom(32)).decode(), PIVOTAL_AUTH__BCRYPT_ROUNDS="4",
    )  # fmt: skip
    data_dir = str(tmp_path)
    daemon = await _daemon(env, data_dir, port)
    try:
        async with aiohttp.ClientSession(base_url=base) as http:
            login = await http.post("/api/auth/login", json={"email": "admin@test.example", "password": PASSWORD})
            admin = {"Authorization": f"Bearer {(await login.json())['access_token']}"}
            connection = await http.post("/api/telephony/connections", headers=admin, json={
                "name": "Sim", "connection_id": "sim", "credential_connection_id": "sim-agents", "api_key": "k",
                "is_default": True})  # fmt: skip
            assert connection.status == 201, await connection.text()
            # A retry delay of an hour: within this test nobody may be dialled twice.
            cid = await make_campaign(_Client(http), admin, mode="progressive", retry_minutes=60)
        bots = await ensure_bots(base, "admin@test.example", PASSWORD, 3, PASSWORD)
        options = BotOptions(base, cid, PASSWORD, wrap_s=(0.2, 0.5), positive_share=0.3, max_talk_s=2.0,
                             rtc_url=f"{sim_url.replace('http', 'ws', 1)}/_sim/rtc")  # fmt: skip
        first = asyncio.create_task(run_bots(bots, options, duration_s=30))
        deadline = time.monotonic() + 30
        talking = (
            "SELECT count(*) FROM call_attempts WHERE campaign_id = $1 AND bridged_at IS NOT NULL AND ended_at IS NULL"
        )
        while await dialer_db.fetchval(talking, cid) < 1:
            assert time.monotonic() < deadline, "no conversation started"
            await asyncio.sleep(0.05)
        daemon.signal(signal.SIGKILL)
        await daemon.wait()
        before = await first
        live_at_crash = await dialer_db.fetchval(
            "SELECT count(*) FROM call_attempts WHERE campaign_id = $1 AND ended_at IS NULL", cid
        )
        assert live_at_crash >= 1

        daemon = await _daemon(env, data_dir, port)
        recovered = await daemon.wait_for_log("dialer_recovered")
        assert recovered["live_attempts"] == live_at_crash
        # Every call the crash left behind is hung up at the carrier.
        deadline = time.monotonic() + 10
        while any(leg.state != "ended" and leg.agent is None for leg in carrier.legs.values()):
            assert time.monotonic() < deadline, "orphan calls still up at the carrier"
            await asyncio.sleep(0.05)
        # The agents come back, settle what they owed and work on.
        after = await run_bots(bots, options, duration_s=6)
        async with aiohttp.ClientSession(base_url=base) as http:
            await http.post(f"/api/campaigns/{cid}/actions/pause", headers=admin)
        await settled(dialer_db, cid)
    finally:
        await daemon.stop()
        await sim.close()

    stored = {r["call_attempt_id"]: r["disposition_code"] for r in await dialer_db.fetch(
        "SELECT call_attempt_id, disposition_code FROM attempt_dispositions WHERE campaign_id = $1", cid)}  # fmt: skip
    acked = {**before.acked, **after.acked}
    assert acked, "the bots saved dispositions"
    assert {a: stored.get(a) for a in acked} == acked, "an acknowledged disposition was lost"
    per_contact = await dialer_db.fetch(
        "SELECT contact_id, count(*) AS n FROM call_attempts WHERE campaign_id = $1 GROUP BY contact_id", cid
    )
    assert max(r["n"] for r in per_contact) == 1, "a contact was dialled twice inside its retry delay"
    assert await dialer_db.fetchval("SELECT count(*) FROM call_attempts WHERE ended_at IS NULL") == 0
    assert after.errors == []


class _Client:
    """aiohttp's ClientSession with a base URL, shaped like the test client make_campaign expects."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def post(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.http.post(path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.http.put(path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> aiohttp.ClientResponse:
        return await self.http.get(path, **kwargs)
