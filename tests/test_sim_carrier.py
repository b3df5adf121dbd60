"""Conformance: the real telnyx SDK drives the simulated carrier; its webhooks pass the SDK's verifier and ours."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

import jwt
import pytest
import telnyx
from aiohttp.test_utils import TestServer
from telnyx import AsyncTelnyx

from sim.carrier import Options, SimCarrier
from sim.scenarios import Script, script_for
from tests.sim_world import Receiver, events_of, fast


async def test_a_human_answer_with_premium_amd_then_bridge_and_hangup(
    world: tuple[SimCarrier, AsyncTelnyx, Receiver],
) -> None:
    carrier, client, receiver = world
    for number in ("+15550100011", "+15550100012"):
        carrier.scripts[number] = fast("human")
    state = base64.b64encode(b'{"campaign": 1}').decode()
    first = await client.calls.dial(
        connection_id="conn", from_="+15550100001", to="+15550100011", answering_machine_detection="premium",
        timeout_secs=20, client_state=state, command_id=str(uuid.uuid4()),
    )  # fmt: skip
    second = await client.calls.dial(connection_id="conn", from_="+15550100001", to="+15550100012", timeout_secs=20)
    assert first.data is not None
    assert second.data is not None
    a, b = first.data.call_control_id, second.data.call_control_id
    assert a is not None
    assert b is not None
    assert a.startswith("v3:")
    assert first.data.is_alive is False
    kinds = await events_of(receiver, a, "call.machine.premium.detection.ended")
    assert kinds[:3] == ["call.initiated", "call.answered", "call.machine.premium.detection.started"]
    await events_of(receiver, b, "call.answered")
    spoken = await client.calls.actions.speak(a, payload="Hello", voice="female")
    assert spoken.data is not None
    assert spoken.data.result == "ok"
    await client.calls.actions.bridge(a, call_control_id_to_bridge_with=b, park_after_unbridge="self")
    await events_of(receiver, a, "call.bridged")
    await events_of(receiver, b, "call.bridged")
    await client.calls.actions.hangup(b)
    kinds_b = await events_of(receiver, b, "call.hangup")
    assert kinds_b[-1] == "call.hangup"
    assert not any(kind == "call.hangup" for kind, p in receiver.events if p.get("call_control_id") == a), (
        "park_after_unbridge: the other leg stays up"
    )
    with pytest.raises(telnyx.UnprocessableEntityError) as ended:
        await client.calls.actions.hangup(b)
    assert "90018" in str(ended.value.body)
    truth = {call["call_control_id"]: call["truth"] for call in (await _sim_calls(carrier))}
    assert truth[a]["greeting_end_at"] <= truth[a]["bridged_at"]
    assert not receiver.failures, receiver.failures
    payload = next(p for kind, p in receiver.events if kind == "call.initiated" and p.get("call_control_id") == a)
    assert payload["client_state"] == state


async def _sim_calls(carrier: SimCarrier) -> list[dict[str, Any]]:
    return [{"call_control_id": leg.call_control_id, "truth": leg.truth} for leg in carrier.legs.values()]


@pytest.mark.parametrize(
    ("outcome", "cause", "sip"),
    [("busy", "user_busy", "486"), ("rejected", "call_rejected", "603"), ("invalid", "not_found", "404")],
)
async def test_failures_end_with_their_causes(
    world: tuple[SimCarrier, AsyncTelnyx, Receiver], outcome: str, cause: str, sip: str
) -> None:
    carrier, client, receiver = world
    carrier.scripts["+15550100020"] = fast(outcome)
    dialed = await client.calls.dial(connection_id="conn", from_="+15550100001", to="+15550100020")
    assert dialed.data is not None
    ccid = dialed.data.call_control_id
    assert ccid is not None
    assert await events_of(receiver, ccid, "call.hangup") == ["call.initiated", "call.hangup"]
    hangup = next(p for kind, p in receiver.events if kind == "call.hangup" and p.get("call_control_id") == ccid)
    assert (hangup["hangup_cause"], hangup["sip_hangup_cause"]) == (cause, sip)


async def test_command_ids_limits_errors_and_credentials(world: tuple[SimCarrier, AsyncTelnyx, Receiver]) -> None:
    carrier, client, _ = world
    command = str(uuid.uuid4())
    once = await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100030", command_id=command)
    again = await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100030", command_id=command)
    assert once.data is not None
    assert again.data is not None
    assert once.data.call_control_id == again.data.call_control_id, "a repeated command_id is not dialled again"
    with pytest.raises(telnyx.UnprocessableEntityError):
        await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100031", client_state="not base64!")
    for _ in range(149):  # 150 dials in 5 s is the limit; one was made (the repeat and the refusal do not count)
        await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100032")
    with pytest.raises(telnyx.RateLimitError) as limited:
        await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100033")
    assert "90103" in str(limited.value.body)
    carrier.options.api_key = "the-real-key"
    with pytest.raises(telnyx.AuthenticationError):
        await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100034")
    carrier.options.api_key = None
    credential = await client.telephony_credentials.create(connection_id="creds", name="agent-7")
    assert credential.data is not None
    assert credential.data.sip_username
    token = await client.telephony_credentials.create_token(str(credential.data.id))
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == credential.data.sip_username
    with pytest.raises(telnyx.NotFoundError):
        await client.calls.actions.hangup("v3:nope")


def test_scripts_are_seeded_per_number() -> None:
    assert script_for("+15550100040", 1) == script_for("+15550100040", 1)
    outcomes = {script_for(f"+1555010{i:04d}", 1).outcome for i in range(200)}
    assert {"human", "machine", "no_answer", "busy"} <= outcomes
    with pytest.raises(ValueError, match="outcome"):
        Script("abducted")


async def test_the_daemon_verifies_and_applies_the_simulators_webhooks(make_client: Any, clean_db: Any) -> None:
    """Sim -> daemon with our verifier, the simulator duplicating half its deliveries: every event once."""
    from pivotal.app import INGRESS

    await clean_db.execute("TRUNCATE call_events")
    carrier = SimCarrier(Options(seed=5, duplicate_prob=0.5))
    daemon = await make_client(telephony={"webhook_public_key": carrier.public_key})
    carrier.options.webhook_url = str(daemon.make_url("/webhooks/telnyx"))
    server = TestServer(carrier.app(), host="127.0.0.1")
    await server.start_server()
    client = AsyncTelnyx(api_key="key", base_url=str(server.make_url("/v2")), max_retries=0)
    try:
        carrier.scripts["+15550100050"] = fast("machine")
        dialed = await client.calls.dial(connection_id="conn", from_="+15550100001", to="+15550100050",
                                         answering_machine_detection="detect_beep")  # fmt: skip
        assert dialed.data is not None
        ccid = str(dialed.data.call_control_id)
        legs = daemon.app[INGRESS].legs
        started = time.perf_counter()
        while (leg := legs.get(ccid)) is None or leg.state.name != "MACHINE" or leg.greeting_ended_at is None:
            assert time.perf_counter() - started < 5
            await asyncio.sleep(0.01)
        await client.calls.actions.hangup(ccid)
        while leg.state.name != "ENDED":
            assert time.perf_counter() - started < 5
            await asyncio.sleep(0.01)
        assert (leg.amd_result, leg.greeting_result, leg.hangup_cause) == (
            "machine",
            "beep_detected",
            "normal_clearing",
        )
        expected = ["call.initiated", "call.answered", "call.machine.detection.ended", "call.machine.greeting.ended",
                    "call.hangup"]  # fmt: skip
        while await clean_db.fetchval("SELECT count(*) FROM call_events WHERE call_control_id = $1", ccid) < 5:
            assert time.perf_counter() - started < 5
            await asyncio.sleep(0.02)
        rows = await clean_db.fetch(
            "SELECT event_type, handling FROM call_events WHERE call_control_id = $1 ORDER BY occurred_at, id", ccid
        )
        assert [row["event_type"] for row in rows] == expected
        assert {row["handling"] for row in rows} == {"applied"}
        metrics = await (await daemon.get("/metrics")).text()
        assert 'pivotal_webhooks_total{result="applied"} 5.0' in metrics
    finally:
        await client.close()
        await server.close()


@pytest.fixture
async def sim_url() -> AsyncIterator[tuple[SimCarrier, str]]:
    carrier = SimCarrier(Options(seed=9))
    server = TestServer(carrier.app(), host="127.0.0.1")
    await server.start_server()
    yield carrier, str(server.make_url("/v2"))
    await server.close()


async def test_the_adapter_retries_only_what_is_safe(sim_url: tuple[SimCarrier, str]) -> None:
    """5xx answers are retried with the same command_id (executed once); an ended call is CallEnded, not a retry."""
    from dialer.carrier import CallEnded, Carrier, CarrierError

    carrier, url = sim_url
    seen: list[tuple[str, str]] = []
    adapter = Carrier("key", url, observe=lambda command, result, _seconds: seen.append((command, result)),
                      sleep=lambda seconds: asyncio.sleep(min(seconds, 0.01)))  # backoff shortened  # fmt: skip
    try:
        carrier.scripts["+15550100060"] = fast("human")
        leg = await adapter.dial(connection_id="c", from_="+15550100001", to="+15550100060", amd="premium",
                                 client_state=b'{"attempt": 7}')  # fmt: skip
        sim_leg = carrier.legs[leg.call_control_id]
        assert base64.b64decode(sim_leg.client_state or "") == b'{"attempt": 7}'
        carrier.options.fail_next_commands = 2
        await adapter.hangup(leg.call_control_id)
        assert adapter.retries == 2
        assert sim_leg.state == "ended"
        await adapter.hangup(leg.call_control_id)  # already ended: done, not an error
        with pytest.raises(CallEnded):
            await adapter.bridge(leg.call_control_id, leg.call_control_id)
        credential = await adapter.create_credential("creds", "agent-1")
        token = await adapter.login_token(credential.id)
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == credential.sip_username
        carrier.options.fail_next_commands = 9
        with pytest.raises(CarrierError):
            await adapter.answer(leg.call_control_id)  # never succeeds: five attempts, then an error
        with pytest.raises(CarrierError):
            await adapter.login_token("no-such-credential")  # 404: refused at once
        assert seen == [
            ("dial", "ok"), ("hangup", "retried"), ("hangup", "retried"), ("hangup", "ok"), ("hangup", "call_ended"),
            ("bridge", "call_ended"), ("create_credential", "ok"), ("create_token", "ok"),
            *[("answer", "retried")] * 4, ("answer", "failed"), ("create_token", "refused"),
        ]  # fmt: skip
    finally:
        await adapter.close()


async def test_a_slow_command_is_resent_with_its_id_and_runs_once(sim_url: tuple[SimCarrier, str]) -> None:
    """The carrier takes too long to answer: the adapter resends after its short command timeout with the same
    command_id; the first request still runs later, and the repeat is recognised, so the call is hung up once."""
    from dialer.carrier import Carrier

    carrier, url = sim_url
    adapter = Carrier("key", url, command_timeout_s=0.3)
    try:
        carrier.scripts["+15550100080"] = fast("human")
        leg = await adapter.dial(connection_id="c", from_="+15550100001", to="+15550100080")
        await asyncio.sleep(0.3)  # answered
        carrier.options.slow_next_commands, carrier.options.slow_command_ms = 1, 600
        started = time.perf_counter()
        command_id = await adapter.hangup(leg.call_control_id)
        assert time.perf_counter() - started < 0.6 + 0.5, "did not wait for the slow answer"
        assert adapter.retries == 1
        assert carrier.legs[leg.call_control_id].state == "ended"
        assert carrier._remembered(leg.call_control_id, command_id) == {"data": {"result": "ok"}}
    finally:
        await adapter.close()


async def test_the_adapter_keeps_dials_under_the_carrier_limit(sim_url: tuple[SimCarrier, str]) -> None:
    from dialer.carrier import Carrier

    carrier, url = sim_url
    adapter = Carrier("key", url, dials_per_window=5, window_s=0.5)
    try:
        started = time.perf_counter()
        for i in range(12):
            await adapter.dial(connection_id="c", from_="+15550100001", to=f"+1555010{i + 100:04d}")
        assert time.perf_counter() - started >= 1.0, "12 dials at 5 per 0.5 s need two waits"
        assert adapter.retries == 0, "never refused by the carrier"
    finally:
        await adapter.close()


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # (what, when): "take" is a request answered at once, "hold" one still out, "done" the answer to a hold.
        ([("take", 0.0), ("take", 0.1), ("take", 0.2)], [0.0, 0.0, 0.0]),
        ([("take", 0.0), ("take", 0.1), ("take", 0.2), ("take", 0.3)], [0.0, 0.0, 0.0, 0.7]),
        ([("take", 0.0), ("take", 0.1), ("take", 0.2), ("take", 1.0)], [0.0, 0.0, 0.0, 0.0]),  # a window later
        ([("take", 0.0), ("take", 0.0), ("take", 0.0), ("take", 0.99)], [0.0, 0.0, 0.0, 0.01]),
        # A request still out holds its slot however old it is ...
        ([("hold", 0.0), ("take", 0.1), ("take", 0.2), ("take", 1.5)], [0.0, 0.0, 0.0, 0.0]),
        ([("hold", 0.0), ("hold", 0.0), ("hold", 0.0), ("take", 2.0)], [0.0, 0.0, 0.0, 0.05]),
        # ... and counts from its answer: answered at 0.9, it leaves the window at 1.9.
        ([("hold", 0.0), ("take", 0.0), ("take", 0.0), ("done", 0.9), ("take", 1.0), ("take", 1.5), ("take", 1.6)],
         [0.0, 0.0, 0.0, None, 0.0, 0.0, 0.3]),
    ],
)  # fmt: skip
def test_sliding_window(steps: list[tuple[str, float]], expected: list[float | None]) -> None:
    from pacing.sliding_window import SlidingWindow

    window = SlidingWindow(3, 1.0)
    seen: list[float | None] = []
    for what, now in steps:
        if what == "done":
            window.release(now)
            seen.append(None)
            continue
        wait = window.acquire(now)
        seen.append(round(wait, 6))
        if what == "take" and wait == 0.0:
            window.release(now)
    assert seen == expected
    assert SlidingWindow(1, 1.0).release(0.0) is False, "a release without a slot changes nothing"
    edge = SlidingWindow(1, 5.0)
    assert edge.acquire(1021.9999999999997) == 0.0
    edge.release(1021.9999999999997)
    assert edge.acquire(1026.9999999999995) > 0.0, "a wait is never 0.0, which means a slot was taken"
    assert edge.pending == 0


async def test_connections_admin_and_the_agents_softphone(
    make_client: Any, role_users: Any, pool: Any, sim_url: tuple[SimCarrier, str]
) -> None:
    """Admin-only CRUD with one default; the API key is write-only and sealed in the database; an agent gets
    its SIP identity (made once at the carrier) and a fresh login token every time."""
    from crm.roles import Role
    from tests.conftest import bearer, login

    carrier, url = sim_url
    await pool.execute("TRUNCATE telephony_credentials, telephony_connections CASCADE")
    client = await make_client(telephony={"api_base_url": url})
    admin = bearer(await login(client, f"{Role.ADMIN}@test.example"))
    agent = bearer(await login(client, f"{Role.AGENT}@test.example"))
    api = "/api/telephony/connections"
    assert (await client.get(api, headers=agent)).status == 403
    no_phone = await client.get("/api/telephony/softphone", headers=agent)
    assert no_phone.status == 503, "no connection yet"
    main = await client.post(api, json={"name": "Main", "connection_id": "cc-1", "api_key": "KEY-SECRET-1",
                                        "credential_connection_id": "cred-1"}, headers=admin)  # fmt: skip
    assert main.status == 201, await main.text()
    body = await main.json()
    assert body["is_default"] is True, "the first connection is the default"
    assert body["has_api_key"] is True
    assert "KEY-SECRET-1" not in await main.text()
    second = await (await client.post(api, json={"name": "Backup", "connection_id": "cc-2"}, headers=admin)).json()
    assert second["is_default"] is False
    duplicate = await client.post(api, json={"name": "main", "connection_id": "cc-3"}, headers=admin)
    assert duplicate.status == 409
    refused = await client.delete(f"{api}/{body['id']}", headers=admin)
    assert refused.status == 409, "the default cannot be deleted"
    switched = await client.patch(f"{api}/{second['id']}", json={"is_default": True}, headers=admin)
    assert (await switched.json())["is_default"] is True
    listed = await (await client.get(api, headers=admin)).json()
    assert [(c["name"], c["is_default"]) for c in listed["items"]] == [("Main", False), ("Backup", True)]
    await client.patch(f"{api}/{body['id']}", json={"is_default": True}, headers=admin)
    parked = await client.patch(f"{api}/{second['id']}", json={"is_active": False}, headers=admin)
    assert parked.status == 200
    inactive_default = await client.patch(f"{api}/{second['id']}", json={"is_default": True}, headers=admin)
    assert inactive_default.status == 409, "an inactive connection cannot be the default"
    assert (await client.patch(f"{api}/{body['id']}", json={"is_active": False}, headers=admin)).status == 409

    sealed = await pool.fetchval("SELECT api_key_encrypted FROM telephony_connections WHERE name = 'Main'")
    assert b"KEY-SECRET-1" not in sealed, "sealed at rest"
    secret = await pool.fetchval("SELECT secret_encrypted FROM telephony_credentials")
    assert secret is None or b"gencred" not in secret
    # Four tabs ask at once: each may create a credential, the database keeps one, the others are deleted.
    carrier.options.api_latency_ms = 100.0  # every request reads "no credential" before any create returns
    racing = await asyncio.gather(*(client.get("/api/telephony/softphone", headers=agent) for _ in range(4)))
    phones = [await response.json() for response in racing]
    carrier.options.api_latency_ms = 0.0
    first, again = phones[0], await (await client.get("/api/telephony/softphone", headers=agent)).json()
    assert {phone["sip_username"] for phone in [*phones, again]} == {first["sip_username"]}, "one per agent"
    assert first["sip_username"].startswith("gencred")
    assert jwt.decode(first["login_token"], options={"verify_signature": False})["sub"] == first["sip_username"]
    assert len(carrier.credentials) == 1, f"{carrier.credentials.created - 1} losers of the race deleted"
    assert carrier.credentials.created > 1, "the race happened (all four asked before any stored)"


async def test_sandbox_mode_runs_the_simulator_in_the_daemon(
    database_url: str, pool: Any, role_users: Any, tmp_path: Any
) -> None:
    """By default the daemon starts the simulated carrier, trusts its key, points its webhooks at itself and
    creates a Sandbox connection: softphones and calls work out of the box."""
    import aiohttp

    from tests.conftest import PASSWORD
    from tests.daemon import PIVOTAL, Daemon, clean_environment, free_port

    await pool.execute("TRUNCATE telephony_credentials, telephony_connections, call_events CASCADE")
    port = free_port()
    env = clean_environment(PIVOTAL_DATABASE_URL=database_url, PIVOTAL_LOGGING__FORMAT="json")
    daemon = Daemon([PIVOTAL, "--data-dir", str(tmp_path), "run", "--port", str(port)], env)
    await daemon.start()
    try:
        sandbox = await daemon.wait_for_log("sandbox_carrier_started", timeout=60)
        await daemon.wait_for_log("listening", timeout=60)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            login = await session.post(
                f"{base}/api/auth/login", json={"email": "agent@test.example", "password": PASSWORD}
            )
            token = (await login.json())["access_token"]
            phone = await session.get(f"{base}/api/telephony/softphone", headers={"Authorization": f"Bearer {token}"})
            assert phone.status == 200, await phone.text()
            assert (await phone.json())["sip_username"].startswith("gencred")
            client = AsyncTelnyx(api_key="sandbox", base_url=sandbox["api"], max_retries=0)
            try:
                for i in range(5):
                    await client.calls.dial(connection_id="sandbox", from_="+15550100001", to=f"+1555030{i:04d}")
            finally:
                await client.close()
            started = time.perf_counter()
            while True:
                metrics = await (await session.get(f"{base}/metrics")).text()
                if 'pivotal_webhooks_total{result="applied"}' in metrics:
                    break
                assert time.perf_counter() - started < 10, "the simulator's signed webhooks reach the daemon"
                await asyncio.sleep(0.1)
    finally:
        await daemon.stop()


async def test_finished_legs_are_forgotten(
    world: tuple[SimCarrier, AsyncTelnyx, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox runs for months: the simulator keeps no ended call for long."""
    import sim.carrier

    monkeypatch.setattr(sim.carrier, "ENDED_LEG_KEPT_S", 0.05)
    carrier, client, receiver = world
    carrier.options.speed = 100.0  # the post-hangup wait for late recordings shrinks too
    carrier.scripts["+15550100070"] = fast("busy")
    dialed = await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100070")
    assert dialed.data is not None
    ccid = str(dialed.data.call_control_id)
    await events_of(receiver, ccid, "call.hangup")
    assert carrier.live == 0
    started = time.perf_counter()
    while ccid in carrier.legs:
        assert time.perf_counter() - started < 3
        await asyncio.sleep(0.02)


async def test_nothing_is_lost_or_applied_twice_when_deliveries_are_duplicated_reordered_and_dropped(
    make_client: Any, clean_db: Any
) -> None:
    """The simulator duplicates 30% of deliveries, lets each wander up to 400 ms (so a leg's events overtake one
    another), and loses 10% of first attempts. Every event it sent is stored once, and every leg ends exactly
    as it would have had its events arrived once and in order."""
    from dialer.leg_state import Leg, LegKind
    from pivotal.app import INGRESS

    await clean_db.execute("TRUNCATE call_events")
    options = Options(seed=11, duplicate_prob=0.3, reorder_window_ms=400, drop_prob=0.1, delivery_jitter_ms=0)
    carrier = SimCarrier(options)
    daemon = await make_client(telephony={"webhook_public_key": carrier.public_key})
    carrier.options.webhook_url = str(daemon.make_url("/webhooks/telnyx"))
    server = TestServer(carrier.app(), host="127.0.0.1")
    await server.start_server()
    client = AsyncTelnyx(api_key="key", base_url=str(server.make_url("/v2")), max_retries=0)
    outcomes = ["human", "machine", "busy", "no_answer", "invalid", "human"]
    try:
        dialed = []
        for index in range(30):
            number = f"+1555010{index:04d}"
            outcome = outcomes[index % len(outcomes)]
            carrier.scripts[number] = Script(outcome, ring_ms=100 + 10 * index, greeting_ms=300, amd_delay_ms=150,
                                             talk_ms=1200)  # fmt: skip
            amd: Literal["premium", "detect_beep"] = "premium" if index % 2 else "detect_beep"
            response = await client.calls.dial(connection_id="conn", from_="+15550100001", to=number,
                                               answering_machine_detection=amd, timeout_secs=5)  # fmt: skip
            assert response.data is not None
            dialed.append(str(response.data.call_control_id))
        humans = [ccid for ccid in dialed if carrier.legs[ccid].script.outcome == "human"]
        started = time.perf_counter()
        while any(carrier.legs[ccid].state != "answered" for ccid in humans[:2]):
            assert time.perf_counter() - started < 10
            await asyncio.sleep(0.02)
        await client.calls.actions.bridge(humans[0], call_control_id_to_bridge_with=humans[1])
        while any(carrier.legs[ccid].state != "ended" for ccid in dialed) or not carrier.quiet():
            assert time.perf_counter() - started < 20, "every call ends and every delivery is made"
            await asyncio.sleep(0.05)
        sent = {event_id: (event_type, ccid) for event_id, event_type, ccid in carrier.emitted}
        while await clean_db.fetchval("SELECT count(*) FROM call_events") < len(sent):
            assert time.perf_counter() - started < 25, "every event reaches the log"
            await asyncio.sleep(0.05)
        rows = await clean_db.fetch("SELECT event_id, event_type, call_control_id FROM call_events")
        stored = {row["event_id"]: (row["event_type"], row["call_control_id"]) for row in rows}
        recordings = {i for i, (kind, _) in sent.items() if kind == "call.recording.saved"}
        assert len(rows) == len(sent)
        assert {i: v for i, v in stored.items() if i not in recordings} == {
            i: v for i, v in sent.items() if i not in recordings
        }
        assert carrier.duplicated > 5, "the chaos really happened"
        assert carrier.webhooks.dropped > 3
        assert carrier.webhooks.undelivered == 0

        # Each leg as the daemon holds it equals the same events applied once, in the order they were sent.
        by_leg: dict[str, list[tuple[str, dict[str, Any], Any]]] = {}
        payloads = await clean_db.fetch("SELECT payload, occurred_at FROM call_events ORDER BY occurred_at, id")
        order = {event_id: position for position, (event_id, _, _) in enumerate(carrier.emitted)}
        for row in sorted(payloads, key=lambda r: order[r["payload"]["data"]["id"]]):
            data = row["payload"]["data"]
            ccid = data["payload"].get("call_control_id")
            if ccid:
                by_leg.setdefault(ccid, []).append((data["event_type"], data["payload"], row["occurred_at"]))
        legs = daemon.app[INGRESS].legs
        reordered = 0
        for ccid, events in by_leg.items():
            truth = Leg(ccid, LegKind.of(events[0][1]))
            for event_type, payload, at in events:
                truth.apply(event_type, payload, at)
            held = legs.get(ccid)
            assert held is not None
            assert held == truth, ccid
            assert held.state.name == "ENDED"
        arrival = await clean_db.fetch("SELECT call_control_id, event_id FROM call_events ORDER BY id")
        last: dict[str, int] = {}
        for row in arrival:
            position = order[row["event_id"]]
            reordered += position < last.get(row["call_control_id"], -1)
            last[row["call_control_id"]] = max(position, last.get(row["call_control_id"], -1))
        assert reordered > 5, "some events of a leg overtook earlier ones"
        metrics = await (await daemon.get("/metrics")).text()
        duplicates = float(metrics.split('pivotal_webhooks_total{result="duplicate"} ', 1)[1].split()[0])
        assert duplicates >= carrier.duplicated
    finally:
        await client.close()
        await server.close()


async def test_connections_sharing_an_account_share_its_dial_limit(
    pool: Any, sim_url: tuple[SimCarrier, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dialer.carriers
    from crm.audit import SYSTEM
    from dialer import connections
    from dialer.carriers import Carriers
    from dialer.connections import Sealer

    monkeypatch.setattr(dialer.carriers, "RETIRED_GRACE_S", 0.05)
    _, url = sim_url
    sealer = Sealer(b"k" * 32)
    suffix = uuid.uuid4().hex[:6]
    east = await connections.create(
        pool,
        SYSTEM,
        sealer,
        {"name": f"east-{suffix}", "connection_id": "c-east", "api_key": "ACCOUNT-1", "max_dials_per_second": 20},
    )
    west = await connections.create(
        pool,
        SYSTEM,
        sealer,
        {"name": f"west-{suffix}", "connection_id": "c-west", "api_key": "ACCOUNT-1", "max_dials_per_second": 10},
    )
    carriers = Carriers(pool, sealer, url)
    try:
        first = await carriers.for_connection(east)
        assert first.dials.limit == 50, "the lowest of the account's connections"
        assert await carriers.for_connection(west) is first, "one Telnyx account, one adapter and one limiter"
        west = await connections.update(pool, SYSTEM, sealer, west.id, {"api_key": "ACCOUNT-2"})
        second = await carriers.for_connection(west)
        assert second is not first
        assert (first.dials.limit, second.dials.limit) == (50, 50)
        east = await connections.update(pool, SYSTEM, sealer, east.id, {"api_key": "ACCOUNT-2"})
        assert await carriers.for_connection(east) is second
        assert second.dials.limit == 50
        await asyncio.sleep(0.2)
        assert first.client.is_closed(), "the adapter no connection uses is closed after its grace period"
        assert not second.client.is_closed()
        # A rotated key: the new adapter shares the old one's window (the old may still be dialling).
        solo = await connections.create(pool, SYSTEM, sealer, {"name": f"solo-{suffix}", "connection_id": "c-s",
                                                               "api_key": "ACCOUNT-3"})  # fmt: skip
        third = await carriers.for_connection(solo)
        solo = await connections.update(pool, SYSTEM, sealer, solo.id, {"api_key": "ACCOUNT-4"})
        fourth = await carriers.for_connection(solo)
        assert fourth is not third
        assert fourth.dials is third.dials
        # A deleted connection's low limit stops counting.
        await connections.update(pool, SYSTEM, sealer, west.id, {"is_default": False})
        await connections.delete(pool, SYSTEM, west.id)
        assert (await carriers.for_connection(east)).dials.limit == 100
    finally:
        await carriers.close()
        await pool.execute("DELETE FROM telephony_connections WHERE name LIKE $1", f"%-{suffix}")
