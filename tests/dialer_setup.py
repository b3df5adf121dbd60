"""Setting up the dialer end to end in tests: the daemon in sandbox mode, a campaign made through the API, and
waiting for it to settle. Shared by the dialer's tests and the browser tests of the console."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from pivotal.server import ON_LISTENING
from tests.conftest import AppFactory

ALL_WEEK = {day: [["00:00", "24:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
FORM = {"name": "BANT", "fields": [
    {"key": "budget", "label": "Budget", "type": "integer", "required": True, "min": 1000},
    {"key": "timeline", "label": "Timeline", "type": "select", "required": True,
     "options": [{"value": "q1", "label": "Q1"}, {"value": "q2", "label": "Q2"}]},
]}  # fmt: skip


async def sandbox_daemon(make_client: AppFactory, **telephony: Any) -> Any:
    """The daemon in sandbox mode on a real socket, its simulated carrier told where to send webhooks (what
    ``pivotal run`` does once it listens)."""
    client = await make_client(telephony={"sandbox": True, **telephony})
    assert client.server.port is not None
    for point_webhooks in client.app[ON_LISTENING]:
        point_webhooks(client.server.port)
    return client


async def make_campaign(
    client: Any,
    manager: dict[str, str],
    *,
    mode: str,
    contacts: int = 60,
    retry_minutes: int = 0,
    rules: dict[str, Any] | None = None,
    contact_ids: list[int] | None = None,
    fields: dict[str, Any] | None = None,
    start: bool = True,
) -> int:
    """A campaign through the API (script, form, the default catalogue, a list, an all-week window), started."""
    script = await (await client.post("/api/scripts", json={"name": "Opener", "body": "Hi {{contact.first_name}}"},
                                      headers=manager)).json()  # fmt: skip
    form = await (await client.post("/api/forms", json=FORM, headers=manager)).json()
    catalogues = await (await client.get("/api/disposition-catalogues", headers=manager)).json()
    default = next(c for c in catalogues["items"] if c["code"] == "default")
    targets = await (await client.post("/api/lists", json={"name": "Targets"}, headers=manager)).json()
    members = contact_ids or list(range(1, contacts + 1))
    await client.post(f"/api/lists/{targets['id']}/members", json={"contact_ids": members},
                      headers=manager)  # fmt: skip
    created = await client.post("/api/campaigns", json={
        "name": f"E2E {mode}", "dial_mode": mode, "script_id": script["id"], "qualification_form_id": form["id"],
        "disposition_catalogue_id": default["id"], "caller_id_e164": "+12125550199", "ring_timeout_secs": 15,
        "abandon_message": "Acme calling; press 9 to opt out.", "wrap_up_seconds": 30, **(fields or {})},
        headers=manager)  # fmt: skip
    assert created.status == 201, await created.text()
    cid: int = (await created.json())["id"]
    rule = {"rules": [{"mode": "include", "list_id": targets["id"]}]}
    audience = await client.put(f"/api/campaigns/{cid}/audience", json=rule, headers=manager)
    assert audience.status == 200, await audience.text()
    compliance = await client.put(f"/api/campaigns/{cid}/compliance", json={
        "calling_window": ALL_WEEK, "default_retry_minutes": retry_minutes, "max_attempts": 3,
        "max_attempts_per_day": 3, **(rules or {})},
        headers=manager)  # fmt: skip
    assert compliance.status == 200, await compliance.text()
    if start:
        started = await client.post(f"/api/campaigns/{cid}/actions/start", headers=manager)
        assert started.status == 200, await started.text()
    return cid


async def settled(pool: asyncpg.Pool, campaign_id: int, timeout: float = 30.0) -> None:
    """Every call over and every conversation dispositioned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = await pool.fetchval(
            """SELECT count(*) FROM call_attempts a WHERE a.campaign_id = $1 AND (a.ended_at IS NULL OR NOT EXISTS
                 (SELECT 1 FROM attempt_dispositions d WHERE d.call_attempt_id = a.id))""",
            campaign_id,
        )
        if left == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{left} attempts still open")
