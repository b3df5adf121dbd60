"""Fake agent softphones on the simulated carrier: a parked leg bridged to customer after customer (pattern 2),
a dial to an agent's SIP address (pattern 1), and a softphone protocol that refuses what it does not know."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import telnyx
from telnyx import AsyncTelnyx

from sim.carrier import SimCarrier
from sim.scenarios import Script
from tests.sim_world import Receiver, events_of, fast

World = tuple[SimCarrier, AsyncTelnyx, Receiver]


async def _credential(client: AsyncTelnyx) -> tuple[str, str]:
    credential = await client.telephony_credentials.create(connection_id="credconn", name="agent")
    assert credential.data is not None
    token = await client.telephony_credentials.create_token(str(credential.data.id))
    return str(credential.data.sip_username), token


async def _frame(socket: aiohttp.ClientWebSocketResponse, **match: Any) -> dict[str, Any]:
    """The next frame with these fields (others are skipped), within 5 s."""
    async with asyncio.timeout(5):
        while True:
            frame: dict[str, Any] = await socket.receive_json()
            if all(frame.get(key) == value for key, value in match.items()):
                return frame


def _sim_base(client: AsyncTelnyx) -> str:
    return str(client.base_url).rstrip("/").removesuffix("/v2")


async def test_a_parked_agent_leg_takes_customer_after_customer(world: World) -> None:
    carrier, client, receiver = world
    sip_username, token = await _credential(client)
    carrier.scripts["+15550100101"] = Script("human", ring_ms=100, greeting_ms=200, amd_delay_ms=100, talk_ms=900)
    carrier.scripts["+15550100102"] = fast("human")
    async with aiohttp.ClientSession() as http, http.ws_connect(_sim_base(client) + "/_sim/rtc") as socket:
        await socket.send_json({"type": "login", "login_token": token})
        assert (await _frame(socket, type="ready"))["sip_username"] == sip_username
        await socket.send_json({"type": "invite", "call_id": "tab-1", "destination": "+15550000000",
                                "custom_headers": [{"name": "X-Agent", "value": "7"}]})  # fmt: skip
        trying = await _frame(socket, type="call", state="trying")
        agent = trying["call_control_id"]
        assert (await events_of(receiver, agent, "call.initiated")) == ["call.initiated"]
        initiated = next(p for kind, p in receiver.events if p.get("call_control_id") == agent)
        assert (initiated["direction"], initiated["state"], initiated["from_"]) == (
            "incoming", "parked", f"sip:{sip_username}@sip.telnyx.com",
        )  # fmt: skip
        assert {"name": "X-RTC-CALLID", "value": "tab-1"} in initiated["custom_headers"]
        with pytest.raises(telnyx.UnprocessableEntityError):  # not answered yet: nothing to bridge
            await client.calls.actions.bridge(agent, call_control_id_to_bridge_with=agent)
        await client.calls.actions.answer(agent)
        await _frame(socket, type="call", state="active")
        await events_of(receiver, agent, "call.answered")

        for number, bridges in (("+15550100101", 1), ("+15550100102", 2)):
            dialed = await client.calls.dial(connection_id="conn", from_="+15550100001", to=number,
                                             answering_machine_detection="detect")  # fmt: skip
            assert dialed.data is not None
            customer = str(dialed.data.call_control_id)
            await events_of(receiver, customer, "call.machine.detection.ended")
            await client.calls.actions.bridge(agent, call_control_id_to_bridge_with=customer,
                                              park_after_unbridge="self", prevent_double_bridge=True)  # fmt: skip
            assert (await _frame(socket, type="call", state="bridged"))["remote"] == number
            await events_of(receiver, customer, "call.bridged")
            agent_events = await events_of(receiver, agent, "call.bridged")
            assert agent_events.count("call.bridged") == bridges
            if bridges == 1:  # the first customer hangs up: the agent is parked again, not hung up
                await events_of(receiver, customer, "call.hangup")
                await _frame(socket, type="call", state="active")
        with pytest.raises(telnyx.UnprocessableEntityError) as double:  # prevent_double_bridge
            await client.calls.actions.bridge(customer, call_control_id_to_bridge_with=agent,
                                              prevent_double_bridge=True)  # fmt: skip
        assert "90034" in str(double.value.body)
        await socket.send_json({"type": "dtmf", "call_id": "tab-1", "digits": "12"})
        await socket.send_json({"type": "hangup", "call_id": "tab-1"})
        assert (await _frame(socket, type="call", state="hangup"))["call_id"] == "tab-1"
    await events_of(receiver, agent, "call.hangup")
    await events_of(receiver, customer, "call.hangup")
    hangup = [p for kind, p in receiver.events if kind == "call.hangup" and p.get("call_control_id") == agent]
    assert [p["hangup_source"] for p in hangup] == ["caller"], "the agent, the caller of a parked leg, hung up"
    digits = [p["digit"] for kind, p in receiver.events if kind == "call.dtmf.received"]
    assert digits == ["1", "2"]
    truth = carrier.legs[agent].truth
    assert truth["answered_at"] < truth["bridged_at"]
    assert not receiver.failures


async def test_a_dial_to_an_agents_sip_address_rings_its_softphone(world: World) -> None:
    carrier, client, receiver = world
    sip_username, _ = await _credential(client)
    base = _sim_base(client)
    carrier.options.agent_answer_ms = (50, 60)
    carrier.scripts["+15550100110"] = fast("human")
    address = f"sip:{sip_username}@sip.telnyx.com"
    async with aiohttp.ClientSession() as http:
        # Not registered: the carrier cannot find it.
        missing = await client.calls.dial(connection_id="conn", from_="+15550100001", to=address)
        assert missing.data is not None
        ccid = str(missing.data.call_control_id)
        await events_of(receiver, ccid, "call.hangup")
        hangup = next(p for kind, p in receiver.events if kind == "call.hangup" and p["call_control_id"] == ccid)
        assert (hangup["hangup_cause"], hangup["sip_hangup_cause"]) == ("not_found", "404")

        async with http.post(f"{base}/_sim/agents/{sip_username}/register") as response:
            assert response.status == 200
        async with http.post(f"{base}/_sim/agents/gencrednobody/register") as response:
            assert response.status == 404
        customer = await client.calls.dial(connection_id="conn", from_="+15550100001", to="+15550100110")
        assert customer.data is not None
        customer_id = str(customer.data.call_control_id)
        await events_of(receiver, customer_id, "call.answered")
        started = time.perf_counter()
        ring = await client.calls.dial(connection_id="conn", from_="+15550100001", to=address,
                                       link_to=customer_id, bridge_on_answer=True)  # fmt: skip
        assert ring.data is not None
        agent = str(ring.data.call_control_id)
        assert ring.data.call_session_id == customer.data.call_session_id, "link_to joins the session"
        kinds = await events_of(receiver, agent, "call.bridged")
        assert kinds == ["call.initiated", "call.answered", "call.bridged"]
        assert time.perf_counter() - started < 2
        await events_of(receiver, customer_id, "call.bridged")
        async with http.post(f"{base}/_sim/agents/{sip_username}/hangup", json={}) as response:
            assert response.status == 200
        await events_of(receiver, agent, "call.hangup")
        await events_of(receiver, customer_id, "call.hangup")  # no park_after_unbridge: the customer is released
        assert (_hangup_of(receiver, agent)["hangup_source"], _hangup_of(receiver, customer_id)["hangup_source"]) == (
            "callee", "caller",
        ), "the agent (callee of the SIP dial) hung up; the customer's leg was ended from our side"  # fmt: skip
        async with http.get(f"{base}/_sim/agents") as response:
            listed = await response.json()
        assert listed["agents"][0]["calls"] == {}
    assert not receiver.failures


async def test_the_softphone_protocol_refuses_what_it_does_not_know(world: World) -> None:
    carrier, client, receiver = world
    sip_username, token = await _credential(client)
    async with aiohttp.ClientSession() as http, http.ws_connect(_sim_base(client) + "/_sim/rtc") as socket:
        for frame, expected in [
            ("not json", "JSONDecodeError"),
            ("[1, 2]", "ValueError"),
            ('{"type": "invite", "destination": "+15550000000"}', "ValueError"),  # before login
            ('{"type": "login", "login_token": "forged.token.here"}', "ValueError"),
        ]:
            await socket.send_str(frame)
            assert (await _frame(socket, type="error"))["code"] == expected
        await socket.send_json({"type": "login", "login_token": token, "auto_answer": True})
        await _frame(socket, type="ready")
        for refused in [{"type": "answer", "call_id": "nope"}, {"type": "fly"}, {"type": "invite"},
                        {"type": "invite", "destination": "+1", "custom_headers": "x"}]:  # fmt: skip
            await socket.send_json(refused)
            assert (await _frame(socket, type="error"))["message"]
        await socket.send_str("x" * 20_000)  # over the frame limit: the server closes the socket
        await socket.receive()
        assert socket.closed
    # A second tab took over, then closed: the agent's parked call went with it.
    async with aiohttp.ClientSession() as http, http.ws_connect(_sim_base(client) + "/_sim/rtc") as socket:
        await socket.send_json({"type": "login", "login_token": token})
        await _frame(socket, type="ready")
        await socket.send_json({"type": "invite", "destination": "+15550000000"})
        agent = (await _frame(socket, type="call", state="trying"))["call_control_id"]
    kinds = await events_of(receiver, agent, "call.hangup")
    assert kinds == ["call.initiated", "call.hangup"]
    assert sip_username not in carrier.softphones.agents


async def _dial(client: AsyncTelnyx, to: str, **extra: Any) -> str:
    response = await client.calls.dial(connection_id="conn", from_="+15550100001", to=to, **extra)
    assert response.data is not None
    return str(response.data.call_control_id)


def _hangup_of(receiver: Receiver, ccid: str) -> dict[str, Any]:
    return next(p for kind, p in receiver.events if kind == "call.hangup" and p.get("call_control_id") == ccid)


async def test_bridge_edge_cases_follow_the_reference(world: World) -> None:
    carrier, client, receiver = world
    for number in ("+15550100120", "+15550100121", "+15550100122", "+15550100123", "+15550100124"):
        carrier.scripts[number] = fast("human")
    a, b = await _dial(client, "+15550100120"), await _dial(client, "+15550100121")
    await events_of(receiver, a, "call.answered")
    await events_of(receiver, b, "call.answered")
    # Hung up right after the bridge: each leg still reports its bridge, before its hangup.
    await client.calls.actions.speak(a, payload="A long announcement that is cut short", voice="female")
    await client.calls.actions.bridge(a, call_control_id_to_bridge_with=b)
    await client.calls.actions.hangup(b)
    assert (await events_of(receiver, b, "call.hangup"))[-2:] == ["call.bridged", "call.hangup"]
    kinds_a = await events_of(receiver, a, "call.hangup")
    assert kinds_a[-3:] == ["call.bridged", "call.speak.ended", "call.hangup"]
    speak_end = next(p for k, p in receiver.events if k == "call.speak.ended" and p["call_control_id"] == a)
    assert speak_end["status"] == "call_hangup"
    assert (_hangup_of(receiver, b)["hangup_source"], _hangup_of(receiver, a)["hangup_source"]) == ("caller", "caller")

    # link_to + bridge_on_answer on a customer dial; prevent_double_bridge hangs up a second taker.
    c = await _dial(client, "+15550100122")
    await events_of(receiver, c, "call.answered")
    d = await _dial(client, "+15550100123", link_to=c, bridge_on_answer=True)
    assert (await events_of(receiver, d, "call.bridged"))[:2] == ["call.initiated", "call.answered"]
    e = await _dial(client, "+15550100124", link_to=c, bridge_on_answer=True, prevent_double_bridge=True)
    await events_of(receiver, e, "call.hangup")
    assert carrier.legs[c].bridged_with == d, "the first bridge stands"

    # enqueue, then bridge with the queue's head.
    await client.calls.actions.hangup(d)
    await events_of(receiver, c, "call.hangup")  # no park_after_unbridge: c went with d
    f, g = await _dial(client, "+15550100120"), await _dial(client, "+15550100121")
    await events_of(receiver, f, "call.answered")
    await events_of(receiver, g, "call.answered")
    await client.calls.actions.enqueue(f, queue_name="support")
    await events_of(receiver, f, "call.enqueued")
    await client.calls.actions.bridge(g, call_control_id_to_bridge_with="", queue="support")
    assert (await events_of(receiver, f, "call.bridged"))[-2:] == ["call.dequeued", "call.bridged"]
    with pytest.raises(telnyx.UnprocessableEntityError):
        await client.calls.actions.bridge(g, call_control_id_to_bridge_with="", queue="support")  # empty now
    assert not receiver.failures


async def test_the_simulator_refuses_hostile_input(world: World) -> None:
    carrier, client, receiver = world
    base = _sim_base(client)
    with pytest.raises(telnyx.UnprocessableEntityError):
        await client.calls.dial(connection_id="c", from_="+15550100001", to="+15550100130",
                                webhook_url=5)  # type: ignore[arg-type]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        for script in ({"to": "+1555", "outcome": "human", "ring_ms": "x"}, {"to": "+1555", "outcome": "human",
                       "talk_ms": -1}, {"to": "+1555", "outcome": "human", "amd_result": "robot"}):  # fmt: skip
            async with http.post(f"{base}/_sim/scenario", json=script) as response:
                assert response.status == 422, script
        deep = "[" * 5000 + "]" * 5000
        async with http.post(f"{base}/_sim/agents/x/register", data=deep) as response:
            assert response.status == 400
        async with http.post(f"{base}/v2/calls", data=deep, headers={"Authorization": "Bearer k"}) as response:
            assert response.status == 400
        _, token = await _credential(client)
        async with http.ws_connect(base + "/_sim/rtc") as socket:
            await socket.send_str(deep)
            assert (await _frame(socket, type="error"))["code"] == "RecursionError"
            await socket.send_json({"type": "login", "login_token": token})
            await _frame(socket, type="ready")
            await socket.send_json({"type": "invite", "call_id": "one", "destination": "+15550000000"})
            await _frame(socket, type="call", state="trying")
            await socket.send_json({"type": "invite", "call_id": "one", "destination": "+15550000000"})
            assert "exists already" in (await _frame(socket, type="error"))["message"]
            for index in range(3):
                await socket.send_json({"type": "invite", "call_id": f"more-{index}", "destination": "+1555"})
                await _frame(socket, type="call", state="trying")
            await socket.send_json({"type": "invite", "call_id": "too-many", "destination": "+15550000000"})
            assert "at most 4" in (await _frame(socket, type="error"))["message"]
        started = time.perf_counter()
        while any(leg.state != "ended" for leg in carrier.legs.values()):
            assert time.perf_counter() - started < 5, "closing the socket hung up every call"
            await asyncio.sleep(0.02)


async def test_a_recording_is_saved_at_hangup_and_its_link_plays(world: World) -> None:
    carrier, client, receiver = world
    carrier.scripts["+15550100140"] = fast("human")
    carrier.options.speed = 10.0  # the recording is saved 0.5-3 s (carrier time) after the stop
    ccid = await _dial(client, "+15550100140")
    await events_of(receiver, ccid, "call.answered")
    await client.calls.actions.start_recording(ccid, channels="dual", format="mp3")
    await client.calls.actions.hangup(ccid)
    started = time.perf_counter()
    while not (saved := [p for kind, p in receiver.events if kind == "call.recording.saved"]):
        assert time.perf_counter() - started < 5
        await asyncio.sleep(0.02)
    assert saved[0]["call_leg_id"] == carrier.legs[ccid].call_leg_id
    url = saved[0]["recording_urls"]["mp3"]
    assert url.startswith(_sim_base(client) + "/_sim/rec/")
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert (response.status, response.content_type) == (200, "audio/mpeg")
        assert (await response.read())[:2] == b"\xff\xfb"
