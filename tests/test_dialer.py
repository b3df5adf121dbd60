"""The dialer end to end: the real daemon in sandbox mode (the simulated carrier at 20x speed), a campaign made
through the API, bot agents over the real websocket protocol and softphones, then what PostgreSQL holds."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import websockets

from admin_api.services import SERVICES
from crm.roles import Role
from sim.bot_agents import BotOptions, ensure_bots, run_bots
from tests.conftest import PASSWORD, AppFactory, bearer, login
from tests.dialer_setup import make_campaign, sandbox_daemon, settled


async def test_progressive_campaign_end_to_end(make_client: AppFactory, role_users: Any, dialer_db: Any) -> None:
    client = await sandbox_daemon(make_client, sandbox_speed=20.0)
    base = str(client.make_url("")).rstrip("/")
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="progressive")
    bots = await ensure_bots(base, "admin@test.example", PASSWORD, 3, PASSWORD)
    stats = await run_bots(bots, BotOptions(base, cid, PASSWORD, wrap_s=(0.1, 0.4), positive_share=0.3,
                                            max_talk_s=1.5), duration_s=12)  # fmt: skip
    await client.post(f"/api/campaigns/{cid}/actions/pause", headers=manager)
    await settled(dialer_db, cid)
    assert stats.errors == []
    assert stats.calls >= 3, "the bots took calls"

    attempts = await dialer_db.fetch("SELECT * FROM call_attempts WHERE campaign_id = $1", cid)
    assert len(attempts) >= 10
    dispositions = {r["call_attempt_id"]: r for r in await dialer_db.fetch(
        "SELECT * FROM attempt_dispositions WHERE campaign_id = $1", cid)}  # fmt: skip
    # Nothing acknowledged is missing, and what was acknowledged is what was stored.
    for attempt_id, code in stats.acked.items():
        assert dispositions[attempt_id]["disposition_code"] == code
    bridged = [a for a in attempts if a["bridged_at"] is not None]
    assert len(bridged) == stats.calls
    for a in attempts:
        d = dispositions[a["id"]]
        assert (d["agent_user_id"] is not None) == (a["bridged_at"] is not None), dict(a)
    # Progressive dialling never leaves a person without an agent.
    assert not any(a["abandoned"] for a in attempts)
    # Never two calls at once to one number, nor to two lines of one account (the multi-line rule).
    for key in ("to_e164", "account_id"):
        spans: dict[Any, list[tuple[Any, Any]]] = {}
        for a in attempts:
            spans.setdefault(a[key], []).append((a["created_at"], a["ended_at"]))
        for intervals in spans.values():
            intervals.sort()
            for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
                assert start >= end, f"overlapping calls by {key}"
    # Positive dispositions made leads with the form's answers; members moved on.
    leads = await dialer_db.fetch("SELECT * FROM leads WHERE campaign_id = $1", cid)
    positive = [d for d in dispositions.values() if d["disposition_code"] == "qualified"]
    assert len(leads) == len(positive)
    for lead in leads:
        assert lead["form_answers"] == {"timeline": "q1", "budget": 1000}
        assert lead["status"] == "new"
    # Pausing gives the hopper back: no member stays claimed.
    for _ in range(50):
        in_progress = await dialer_db.fetchval(
            "SELECT count(*) FROM campaign_members WHERE campaign_id = $1 AND status = 'in_progress'", cid
        )
        if in_progress == 0:
            break
        await asyncio.sleep(0.1)
    assert in_progress == 0
    metrics = await (await client.get("/metrics")).text()
    assert f'pivotal_dialer_dials_total{{campaign="{cid}"}}' in metrics
    assert "pivotal_dialer_answer_to_bridge_seconds_bucket" in metrics
    changes = await dialer_db.fetchval("SELECT count(*) FROM agent_state_changes WHERE campaign_id = $1", cid)
    assert changes > 0


async def test_the_agent_socket_refuses_bad_tokens_and_bad_frames(
    make_client: AppFactory, role_users: Any, dialer_db: Any
) -> None:
    client = await sandbox_daemon(make_client)
    url = str(client.make_url("/ws/agent")).replace("http", "ws", 1)
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, subprotocols=["pivotal.v1", "bearer.nope"]):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 401
    token = await login(client, f"{Role.AGENT}@test.example")
    async with websockets.connect(url + f"?access_token={token}") as socket:
        welcome = json.loads(await socket.recv())
        assert welcome["type"] == "welcome"
        offline = json.loads(await socket.recv())  # no session yet: the console is told so
        assert (offline["type"], offline["state"], offline["campaign_id"]) == ("state", "offline", None)
        for bad, code in (("{", "bad_json"), ('{"type": "fly"}', "unknown_type"), ('{"type": "ready"}', "not_joined"),
                          ('{"type": "join", "campaign_id": 999}', "not_running")):  # fmt: skip
            await socket.send(bad)
            answer = await socket.recv()
            assert f'"code": "{code}"' in str(answer) or f'"code":"{code}"' in str(answer), answer


async def test_a_person_nobody_can_take_hears_the_message_within_two_seconds(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    """The only agent's console goes away while the call rings: the person who answers is given the abandon
    message within 2 s of the answer, hung up on, counted as abandoned, and locked out for 72 h."""
    client = await sandbox_daemon(make_client)
    sim = client.app[SERVICES].carriers.base_url.removesuffix("/v2")
    async with aiohttp.ClientSession() as http:
        script = {"to": "+12125550001", "outcome": "human", "ring_ms": 2500, "greeting_ms": 300, "talk_ms": 20000}
        response = await http.post(f"{sim}/_sim/scenario", json=script, headers={"Authorization": "Bearer x"})
        assert response.status == 200, await response.text()
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="progressive", contacts=1, rules={"abandon_lockout": True})
    ws, rtc, _ = await _agent_console(client, cid, f"{Role.AGENT}@test.example")
    try:
        await ws.send(json.dumps({"type": "ready", "id": "r"}))
        assert await _answer(ws, "r") == "ack"
        attempt = await _poll(dialer_db, "SELECT id FROM call_attempts WHERE campaign_id = $1", cid)
        await ws.close()  # nobody at the desk: the agent is paused at once
        await _poll(dialer_db, "SELECT 1 FROM call_attempts WHERE id = $1 AND ended_at IS NOT NULL", attempt, 20)
    finally:
        await ws.close()
        await rtc.close()
    row = await dialer_db.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt)
    assert row["abandoned"]
    assert row["bridged_at"] is None
    disposition = await dialer_db.fetchrow("SELECT * FROM attempt_dispositions WHERE call_attempt_id = $1", attempt)
    assert (disposition["disposition_code"], disposition["agent_user_id"]) == ("abandoned", None)
    spoke = await dialer_db.fetchval(
        "SELECT min(occurred_at) FROM call_events WHERE call_control_id = $1 AND event_type = 'call.speak.started'",
        row["call_control_id"],
    )
    assert spoke is not None, "the abandon message was played"
    assert (spoke - row["answered_at"]).total_seconds() < 2.0
    locked = await dialer_db.fetchval(
        "SELECT locked_until - now() FROM campaign_members WHERE campaign_id = $1 AND contact_id = 1", cid
    )
    assert locked.total_seconds() > 71 * 3600
    metrics = await (await client.get("/metrics")).text()
    assert f'pivotal_dialer_abandons_total{{campaign="{cid}"}} 1.0' in metrics


@pytest.mark.parametrize("outcome", ["human", "no_answer"])
async def test_a_pause_waits_for_the_call_dialled_for_the_agent(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool, outcome: str
) -> None:
    """Progressive: the only agent asks for a pause while the call dialled for them rings. The pause is held
    (still ready, the pause pending, nothing more dialled): a person who answers is put through to the agent and
    the pause follows the call; a call nobody answers ends and the pause is taken then. Nobody is abandoned."""
    client = await sandbox_daemon(make_client, sandbox_speed=1.0 if outcome == "human" else 5.0)  # 15 s of ringing
    await _set_scripts(client, [{"to": "+12125550001", "outcome": outcome, "ring_ms": 2500, "greeting_ms": 300,
                                 "talk_ms": 20000}])  # fmt: skip
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="progressive", contacts=2)
    ws, rtc, _ = await _agent_console(client, cid, f"{Role.AGENT}@test.example")
    try:
        await ws.send(json.dumps({"type": "ready", "id": "r"}))
        assert await _answer(ws, "r") == "ack"
        attempt = await _poll(dialer_db, "SELECT id FROM call_attempts WHERE campaign_id = $1", cid)
        await ws.send(json.dumps({"type": "pause", "reason": "coffee", "id": "p"}))
        held = await _frame(ws, lambda f: f["type"] == "state" and f.get("pending_pause") == "coffee")
        assert held["state"] == "ready"
        assert await _answer(ws, "p") == "ack"
        await ws.send(json.dumps({"type": "leave", "id": "l"}))  # nor may the agent walk away from the call
        refused = await _frame(ws, lambda f: f.get("id") == "l")
        assert (refused["type"], refused["code"]) == ("error", "calls_ringing")
        if outcome == "human":
            bridged = await _frame(ws, lambda f: f["type"] == "call" and f.get("state") == "bridged", 15)
            assert bridged["attempt_id"] == attempt
            await ws.send(json.dumps({"type": "hangup", "attempt_id": attempt, "id": "h"}))
            await _frame(ws, lambda f: f["type"] == "call" and f.get("state") == "ended")
            await ws.send(json.dumps({"type": "disposition", "attempt_id": attempt, "code": "not_interested",
                                      "answers": {}, "id": "d"}))  # fmt: skip
        states: list[dict[str, Any]] = []  # the state frames up to the pause (the disposition's ack comes after it)

        def paused(frame: dict[str, Any]) -> bool:
            if frame["type"] == "state":
                states.append(frame)
            return bool(frame["type"] == "state" and frame["state"] == "paused")

        await _frame(ws, paused, 20)
        assert [(f["state"], f["reason"], f["pending_pause"]) for f in states][-1] == ("paused", "coffee", None)
        assert all(f["state"] != "ready" for f in states), "from the call to the pause, never ready in between"
        await asyncio.sleep(1.0)  # a paused agent: nothing more is dialled
    finally:
        await ws.close()
        await rtc.close()
    rows = await dialer_db.fetch("SELECT * FROM call_attempts WHERE campaign_id = $1", cid)
    assert [r["id"] for r in rows] == [attempt], "one call: none dialled for an agent on their way to a pause"
    assert not rows[0]["abandoned"]
    assert (rows[0]["bridged_at"] is not None) == (outcome == "human")
    code = await dialer_db.fetchval("SELECT disposition_code FROM attempt_dispositions WHERE call_attempt_id = $1",
                                    attempt)  # fmt: skip
    assert code == ("not_interested" if outcome == "human" else "no_answer")


async def _answer(ws: Any, frame_id: str) -> str:
    frame = await _frame(ws, lambda f: f.get("id") == frame_id and f["type"] in ("ack", "error"))
    return str(frame["type"])


async def _frame(ws: Any, wanted: Any, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if wanted(frame):
                return dict(frame)


async def _poll(pool: asyncpg.Pool, query: str, arg: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while (value := await pool.fetchval(query, arg)) is None:
        assert time.monotonic() < deadline, query
        await asyncio.sleep(0.05)
    return value


async def _agent_console(client: Any, cid: int, email: str) -> tuple[Any, Any, Any]:
    """An agent signed in, joined, with its softphone parked: (console socket, softphone socket, token)."""
    token = await login(client, email)
    phone = await (await client.get("/api/telephony/softphone", headers=bearer(token))).json()
    url = str(client.make_url("/ws/agent")).replace("http", "ws", 1)
    ws = await websockets.connect(f"{url}?access_token={token}")
    rtc = await websockets.connect(phone["rtc_url"])
    for _ in range(100):
        await ws.send(json.dumps({"type": "join", "campaign_id": cid, "id": "j"}))
        if await _answer(ws, "j") == "ack":
            break
        await asyncio.sleep(0.1)
    await rtc.send(json.dumps({"type": "login", "login_token": phone["login_token"]}))
    await rtc.send(json.dumps({"type": "invite", "destination": "sip:pivotal@sip.telnyx.com"}))
    await _frame(ws, lambda f: f["type"] == "softphone" and f["connected"])
    return ws, rtc, token


async def _set_scripts(client: Any, scripts: list[dict[str, Any]]) -> None:
    sim = client.app[SERVICES].carriers.base_url.removesuffix("/v2")
    async with aiohttp.ClientSession() as http:
        for script in scripts:
            response = await http.post(f"{sim}/_sim/scenario", json=script, headers={"Authorization": "Bearer x"})
            assert response.status == 200, await response.text()


async def test_preview_mode_offers_skips_and_dials_what_the_agent_accepts(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    client = await sandbox_daemon(make_client, sandbox_speed=5.0)
    await _set_scripts(client, [{"to": f"+1212555000{n}", "outcome": "human", "ring_ms": 1000, "greeting_ms": 300,
                                 "talk_ms": 60000} for n in (1, 2)])  # fmt: skip
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="preview", contacts=2, retry_minutes=60,
                              fields={"record_calls": True})  # fmt: skip
    ws, rtc, _ = await _agent_console(client, cid, f"{Role.AGENT}@test.example")
    try:
        await ws.send(json.dumps({"type": "ready", "id": "r"}))
        first = await _frame(ws, lambda f: f["type"] == "preview")
        assert first["contact"]["first_name"] == f"First{first['contact_id']}"
        assert await dialer_db.fetchval("SELECT count(*) FROM call_attempts") == 0, "nothing dials by itself"
        await ws.send(json.dumps({"type": "preview_skip", "contact_id": first["contact_id"], "id": "s"}))
        assert await _answer(ws, "s") == "ack"
        second = await _frame(ws, lambda f: f["type"] == "preview")
        assert second["contact_id"] != first["contact_id"]
        await ws.send(json.dumps({"type": "preview_accept", "contact_id": first["contact_id"], "id": "bad"}))
        assert await _answer(ws, "bad") == "error", "only the contact on offer can be dialled"
        await ws.send(json.dumps({"type": "preview_accept", "contact_id": second["contact_id"], "id": "a"}))
        assert await _answer(ws, "a") == "ack"
        pop = await _frame(ws, lambda f: f["type"] == "screen_pop")
        assert pop["contact_id"] == second["contact_id"]
        assert pop["script"] == f"Hi First{second['contact_id']}"
        await _frame(ws, lambda f: f["type"] == "call" and f["state"] == "bridged")
        refused = {"type": "disposition", "attempt_id": pop["attempt_id"], "code": "not_interested", "id": "d0"}
        await ws.send(json.dumps(refused))
        assert await _answer(ws, "d0") == "error", "not before the call is over"
        await ws.send(json.dumps({"type": "hangup", "attempt_id": pop["attempt_id"], "id": "h"}))
        await _frame(ws, lambda f: f["type"] == "call" and f["state"] == "ended")
        positive = {"type": "disposition", "attempt_id": pop["attempt_id"], "code": "qualified", "id": "d1",
                    "answers": {"budget": 5}}  # fmt: skip
        await ws.send(json.dumps(positive))
        error = await _frame(ws, lambda f: f.get("id") == "d1")
        assert error["code"] == "invalid_answers", error
        assert "budget" in error["message"]
        assert "timeline: required" in error["message"]
        positive["answers"], positive["id"] = {"budget": 5000, "timeline": "q2"}, "d2"
        await ws.send(json.dumps(positive))
        saved = await _frame(ws, lambda f: f.get("id") == "d2")
        assert (saved["type"], saved["repeated"]) == ("ack", False)
        positive["id"] = "d3"
        await ws.send(json.dumps(positive))  # a console that lost the answer sends it again
        again = await _frame(ws, lambda f: f.get("id") == "d3")
        assert (again["lead_id"], again["repeated"]) == (saved["lead_id"], True)
    finally:
        await ws.close()
        await rtc.close()
    lead = await dialer_db.fetchrow("SELECT * FROM leads WHERE id = $1", saved["lead_id"])
    assert lead["form_answers"] == {"budget": 5000, "timeline": "q2"}
    # Recorded from the bridge: the carrier's file copied into our storage and linked from the lead.
    for _ in range(150):
        if await dialer_db.fetchval("SELECT recording_file FROM call_attempts WHERE id = $1", pop["attempt_id"]):
            break
        await asyncio.sleep(0.1)
    detail = await (await client.get(f"/api/leads/{lead['id']}", headers=manager)).json()
    assert detail["recording_url"] == f"/api/call-attempts/{pop['attempt_id']}/recording"
    audio = await client.get(detail["recording_url"], headers=manager)
    assert audio.status == 200
    assert audio.content_type == "audio/mpeg"
    assert len(await audio.read()) > 0
    assert (await client.get("/api/call-attempts/999999/recording", headers=manager)).status == 404
    assert await dialer_db.fetchval("SELECT count(*) FROM attempt_dispositions") == 1
    skipped = await dialer_db.fetchrow(
        "SELECT status::text, next_attempt_at > now() + interval '50 minutes' AS later FROM campaign_members "
        "WHERE contact_id = $1", first["contact_id"],
    )  # fmt: skip
    assert dict(skipped) == {"status": "new", "later": True}


async def test_machines_detected_by_amd_are_hung_up_and_never_reach_an_agent(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    client = await sandbox_daemon(make_client, sandbox_speed=5.0)
    await _set_scripts(client, [{"to": "+12125550001", "outcome": "machine", "ring_ms": 1000, "greeting_ms": 6000,
                                 "amd_delay_ms": 800, "talk_ms": 30000}])  # fmt: skip
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="progressive", contacts=1)
    patched = await client.patch(f"/api/campaigns/{cid}", json={"amd_mode": "detect"}, headers=manager)
    if patched.status == 409:  # running campaigns are edited while paused
        await client.post(f"/api/campaigns/{cid}/actions/pause", headers=manager)
        patched = await client.patch(f"/api/campaigns/{cid}", json={"amd_mode": "detect"}, headers=manager)
        await client.post(f"/api/campaigns/{cid}/actions/resume", headers=manager)
    assert patched.status == 200, await patched.text()
    ws, rtc, _ = await _agent_console(client, cid, f"{Role.AGENT}@test.example")
    try:
        await asyncio.sleep(1.5)  # the runner picks up the change
        await ws.send(json.dumps({"type": "ready", "id": "r"}))
        assert await _answer(ws, "r") == "ack"
        attempt = await _poll(dialer_db, "SELECT id FROM call_attempts WHERE campaign_id = $1", cid)
        await _poll(dialer_db, "SELECT 1 FROM call_attempts WHERE id = $1 AND ended_at IS NOT NULL", attempt, 20)
    finally:
        await ws.close()
        await rtc.close()
    row = await dialer_db.fetchrow("SELECT * FROM call_attempts WHERE id = $1", attempt)
    assert (row["amd_result"], row["bridged_at"], row["hangup_source"]) == ("machine", None, "caller")
    code = await dialer_db.fetchval("SELECT disposition_code FROM attempt_dispositions WHERE call_attempt_id = $1",
                                    attempt)  # fmt: skip
    assert code == "machine"


async def test_lead_caps_and_callbacks_steer_what_is_dialled_next(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    """Contacts 1 and 21 share an account capped at one qualified lead; contact 2 asks to be called back. After
    1 qualifies, 21 is not dialled; 2 is called again when due, by the same agent, and the callback is closed."""
    client = await sandbox_daemon(make_client, sandbox_speed=5.0)
    await _set_scripts(client, [{"to": f"+121255500{n:02d}", "outcome": "human", "ring_ms": 500, "greeting_ms": 200,
                                 "talk_ms": 120000} for n in (1, 2, 21)])  # fmt: skip
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="progressive", contact_ids=[1, 2, 21], retry_minutes=60,
                              fields={"account_cap_mode": "positive_dispositions", "account_cap": 1})  # fmt: skip
    ws, rtc, _ = await _agent_console(client, cid, f"{Role.AGENT}@test.example")
    seen: list[int] = []

    async def take_call(code: str, **extra: Any) -> dict[str, Any]:
        pop = await _frame(ws, lambda f: f["type"] == "screen_pop", timeout=20)
        seen.append(pop["contact_id"])
        await _frame(ws, lambda f: f["type"] == "call" and f["state"] == "bridged")
        await ws.send(json.dumps({"type": "hangup", "attempt_id": pop["attempt_id"]}))
        await _frame(ws, lambda f: f["type"] == "call" and f["state"] == "ended")
        frame_id = f"d{len(seen)}"
        await ws.send(json.dumps({"type": "disposition", "attempt_id": pop["attempt_id"], "code": code,
                                  "id": frame_id, **extra}))  # fmt: skip
        answer = await _frame(ws, lambda f: f.get("id") == frame_id)
        assert answer["type"] == "ack", answer
        return pop

    try:
        await ws.send(json.dumps({"type": "ready", "id": "r"}))
        assert await _answer(ws, "r") == "ack"
        await take_call("qualified", answers={"budget": 2000, "timeline": "q1"})
        due = datetime.now(UTC) + timedelta(seconds=4)
        first = await take_call("callback", callback={"due_at": due.isoformat(), "personal": True})
        again = await take_call("not_interested")
    finally:
        await ws.close()
        await rtc.close()
    assert seen == [1, 2, 2], "21's account reached its cap; 2 was called back"
    assert again["callback_id"] is not None
    callback = await dialer_db.fetchrow("SELECT * FROM callbacks WHERE id = $1", again["callback_id"])
    assert (callback["status"], callback["kind"], callback["source_attempt_id"]) == (
        "completed", "personal", first["attempt_id"])  # fmt: skip
    assert callback["completed_attempt_id"] == again["attempt_id"]
    assert await dialer_db.fetchval("SELECT count(*) FROM call_attempts WHERE contact_id = 21") == 0
    held = await dialer_db.fetchrow(
        "SELECT status::text, next_attempt_at > now() + interval '10 minutes' AS later FROM campaign_members "
        "WHERE contact_id = 21"
    )
    assert dict(held) == {"status": "new", "later": True}, "held back, not excluded: the cap may lift"
    assert await dialer_db.fetchval("SELECT count(*) FROM leads") == 1


async def test_a_second_console_takes_the_session_over_and_the_first_is_closed(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    client = await sandbox_daemon(make_client)
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="progressive", contacts=1)
    first, rtc, token = await _agent_console(client, cid, f"{Role.AGENT}@test.example")
    try:
        url = str(client.make_url("/ws/agent")).replace("http", "ws", 1)
        async with websockets.connect(url, subprotocols=["pivotal.v1", f"bearer.{token}"]) as second:  # type: ignore[list-item]
            assert second.subprotocol == "pivotal.v1"
            resumed = await _frame(second, lambda f: f["type"] == "state")
            assert (resumed["state"], resumed["campaign_id"]) == ("paused", cid), "the session resumes here"
            replaced = await _frame(first, lambda f: f["type"] == "error")
            assert replaced["code"] == "replaced"
            with pytest.raises(websockets.ConnectionClosed):  # the old console is closed: it can no longer act
                await _stale_frames(first)
            await second.send(json.dumps({"type": "ready", "id": "r"}))
            assert await _answer(second, "r") == "ack"
    finally:
        await first.close()
        await rtc.close()


async def _stale_frames(socket: Any) -> None:
    for _ in range(20):
        await socket.send(json.dumps({"type": "ready", "id": "stale"}))
        frame = json.loads(await asyncio.wait_for(socket.recv(), 2))
        assert frame.get("id") != "stale" or frame["type"] == "error"
