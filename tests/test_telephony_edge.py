"""The telephony edge without I/O: webhook signatures and the per-leg state machine."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nacl.signing import SigningKey
from telnyx import Telnyx

from dialer.leg_state import Handling, Leg, LegKind, LegState
from dialer.webhook_signature import SignatureRejected, load_public_key, public_key_text, sign, verify

KEY = SigningKey(b"\x07" * 32)
PUBLIC = public_key_text(KEY)
NOW = 1_795_000_000
BODY = json.dumps({"data": {"event_type": "call.hangup", "id": "e1", "payload": {}}}).encode()


def test_a_signed_body_verifies_with_ours_and_the_sdks() -> None:
    """What we sign the SDK accepts, and the reverse: the simulator and the daemon cannot drift from Telnyx."""
    assert verify(load_public_key(PUBLIC), sign(KEY, BODY, NOW), BODY, NOW + 299) == NOW
    now = int(time.time())  # the SDK checks against the real clock
    event = Telnyx(api_key="k", public_key=PUBLIC).webhooks.unwrap(BODY.decode(), headers=sign(KEY, BODY, now))
    assert getattr(getattr(event, "data", None), "event_type", None) == "call.hangup"


def _tamper(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **changes}


OTHER = SigningKey(b"\x08" * 32)


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason"),
    [
        ({}, BODY, NOW, "missing_headers"),
        (_tamper(sign(KEY, BODY, NOW), **{"telnyx-timestamp": "17950000OO"}), BODY, NOW, "bad_timestamp"),
        (_tamper(sign(KEY, BODY, NOW), **{"telnyx-timestamp": "-5"}), BODY, NOW, "bad_timestamp"),
        (sign(KEY, BODY, NOW), BODY, NOW + 301, "stale"),  # replayed five minutes later
        (sign(KEY, BODY, NOW), BODY, NOW - 301, "stale"),  # from the future
        (sign(KEY, BODY, NOW), BODY + b" ", NOW, "forged"),  # body changed after signing
        (sign(KEY, BODY, NOW), BODY[:-5], NOW, "forged"),  # truncated
        (sign(OTHER, BODY, NOW), BODY, NOW, "forged"),  # someone else's key
        (_tamper(sign(KEY, BODY, NOW), **{"telnyx-timestamp": str(NOW + 1)}), BODY, NOW, "forged"),
        (_tamper(sign(KEY, BODY, NOW), **{"telnyx-signature-ed25519": "not base64!"}), BODY, NOW, "bad_signature"),
        (_tamper(sign(KEY, BODY, NOW), **{"telnyx-signature-ed25519": base64.b64encode(b"x" * 10).decode()}), BODY,
         NOW, "bad_signature"),
    ],
)  # fmt: skip
def test_refusals_say_why(headers: dict[str, str], body: bytes, now: int, reason: str) -> None:
    with pytest.raises(SignatureRejected) as caught:
        verify(load_public_key(PUBLIC), headers, body, now)
    assert caught.value.reason == reason


def test_header_names_are_case_insensitive() -> None:
    headers = {name.title(): value for name, value in sign(KEY, BODY, NOW).items()}
    assert verify(load_public_key(PUBLIC), headers, BODY, NOW) == NOW


@pytest.mark.parametrize("text", ["", "abc", base64.b64encode(b"x" * 31).decode()])
def test_bad_public_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="public key"):
        load_public_key(text)


T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(events: list[tuple[str, dict[str, Any], float]]) -> tuple[Leg, list[Handling]]:
    leg = Leg("v3:x")
    handled = [leg.apply(event_type, payload, _at(seconds)) for event_type, payload, seconds in events]
    return leg, handled


HUMAN = ("call.machine.premium.detection.ended", {"result": "human_business"})
MACHINE = ("call.machine.detection.ended", {"result": "machine"})

A, IG, IL = Handling.APPLIED, Handling.IGNORED, Handling.ILLEGAL


@pytest.mark.parametrize(
    ("events", "state", "handled"),
    [
        # In order.
        ([("call.initiated", {}, 0), ("call.answered", {}, 5), (*HUMAN, 7), ("call.bridged", {}, 7.5),
          ("call.hangup", {"hangup_cause": "normal_clearing"}, 60)], LegState.ENDED, [A, A, A, A, A]),
        # Out of order: the verdict before the answer, the initiated last.
        ([(*HUMAN, 7), ("call.answered", {}, 5), ("call.initiated", {}, 0)], LegState.HUMAN, [A, IG, IG]),
        # The hangup overtakes everything; later events change nothing.
        ([("call.hangup", {"hangup_cause": "user_busy"}, 3), ("call.initiated", {}, 0), ("call.answered", {}, 2)],
         LegState.ENDED, [A, IG, IG]),
        # A machine verdict, then a late "human" from the other detector: contradiction recorded.
        ([("call.answered", {}, 2), (*MACHINE, 6), (*HUMAN, 6.5)], LegState.MACHINE, [A, A, IL]),
        ([("call.answered", {}, 2), (*HUMAN, 6), ("call.bridged", {}, 7), (*MACHINE, 8)], LegState.BRIDGED,
         [A, A, A, IL]),
        ([(*MACHINE, 6), ("call.bridged", {}, 7)], LegState.MACHINE, [A, IL]),
        # A bridge on an agent's parked leg, its answer arriving later.
        ([("call.bridged", {}, 3), ("call.answered", {}, 1)], LegState.BRIDGED, [A, IG]),
        # not_sure and silence count as human: a person is never hung up on for a shaky verdict.
        ([("call.machine.detection.ended", {"result": "not_sure"}, 4)], LegState.HUMAN, [A]),
        # Events that change no state, and unknown ones.
        ([("call.answered", {}, 1), ("call.speak.started", {}, 2), ("call.recording.saved", {}, 3),
          ("call.something.new", {}, 4), ("call.machine.detection.ended", {"result": "???"}, 5)],
         LegState.ANSWERED, [A, IG, IG, IG, IG]),
    ],
)  # fmt: skip
def test_leg_state_machine(
    events: list[tuple[str, dict[str, Any], float]], state: LegState, handled: list[Handling]
) -> None:
    leg, outcome = _run(events)
    assert leg.state is state
    assert outcome == handled


PARKED = {"direction": "incoming", "state": "parked", "calling_party_type": "sip"}


UNBRIDGE: tuple[str, dict[str, Any], float] = (
    "unbridge",
    {},
    0.0,
)  # the dialer reports the agent's customer gone (no carrier event exists)
T, F = True, False


@pytest.mark.parametrize(
    ("steps", "state", "outcome"),
    [
        # Parked, answered, two customers one after the other.
        ([("call.initiated", PARKED, 0), ("call.answered", {}, 1), ("call.bridged", {}, 10), UNBRIDGE,
          ("call.bridged", {}, 90)], LegState.BRIDGED, [A, A, A, T, A]),
        # The next bridge's event arrives before the report that the last customer left.
        ([("call.answered", {}, 1), ("call.bridged", {}, 10), ("call.bridged", {}, 90), UNBRIDGE],
         LegState.BRIDGED, [A, A, A, F]),
        # The report overtakes its own call.bridged: the late event frees nobody and binds nobody.
        ([("call.answered", {}, 1), UNBRIDGE, ("call.bridged", {}, 10)], LegState.ANSWERED, [A, T, A]),
        ([("call.bridged", {}, 10), ("call.answered", {}, 1)], LegState.BRIDGED, [A, IG]),
        # AMD verdicts mean nothing on a softphone.
        ([("call.answered", {}, 1), ("call.bridged", {}, 10), UNBRIDGE, (*HUMAN, 11)], LegState.ANSWERED,
         [A, A, T, IG]),
        # The agent closes the tab: ended is final; a bridge reported late is still a fact.
        ([("call.answered", {}, 1), ("call.hangup", {}, 5), ("call.bridged", {}, 6), UNBRIDGE], LegState.ENDED,
         [A, A, IG, F]),
    ],
)  # fmt: skip
def test_agent_leg_state_machine(
    steps: list[tuple[str, dict[str, Any], float]], state: LegState, outcome: list[Handling | bool]
) -> None:
    leg = Leg("v3:agent", LegKind.of({"from": "sip:gencredA@sip.telnyx.com", "to": "+15550000000"}))
    seen: list[Handling | bool] = []
    for event_type, payload, seconds in steps:
        seen.append(leg.unbridged() if event_type == "unbridge" else leg.apply(event_type, payload, _at(seconds)))
    assert (leg.state, seen) == (state, outcome)
    assert leg.bridges == sum(1 for step in steps if step[0] == "call.bridged")


def test_a_customer_leg_cannot_be_unbridged() -> None:
    leg, _ = _run([("call.answered", {}, 1), ("call.bridged", {}, 2)])
    assert leg.unbridged() is False
    assert leg.state is LegState.BRIDGED


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"from": "+15550100001", "to": "+15550199999", "calling_party_type": "pstn"}, LegKind.CUSTOMER),
        ({"from": "sip:gencredA@sip.telnyx.com", "to": "+15550000000"}, LegKind.AGENT),
        ({"from": "+15550100001", "to": "sip:gencredA@sip.telnyx.com"}, LegKind.AGENT),
        ({"from": "+15550100001", "to": "+15550000000", "calling_party_type": "sip"}, LegKind.AGENT),
        ({"from": None, "to": 7}, LegKind.CUSTOMER),
    ],
)
def test_a_legs_kind_comes_from_its_ends(payload: dict[str, Any], kind: LegKind) -> None:
    assert LegKind.of(payload) is kind


def test_facts_keep_the_carriers_times_whatever_the_order() -> None:
    leg, _ = _run([
        ("call.hangup", {"hangup_cause": "normal_clearing", "hangup_source": "callee", "sip_hangup_cause": "200"}, 90),
        ("call.bridged", {}, 9.5),
        ("call.machine.premium.greeting.ended", {"result": "prompt_ended"}, 8),
        (*HUMAN, 8.8),
        ("call.answered", {}, 4),
    ])  # fmt: skip
    assert (leg.answered_at, leg.greeting_ended_at, leg.bridged_at, leg.ended_at) == (_at(4), _at(8), _at(9.5), _at(90))
    assert (leg.amd_result, leg.hangup_cause, leg.hangup_source, leg.sip_hangup_cause) == (
        "human_business", "normal_clearing", "callee", "200",
    )  # fmt: skip


def _delivery(event_id: str, event_type: str, payload: dict[str, Any], attempt: int = 1, at: float = 0) -> bytes:
    occurred = (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z")
    data = {
        "record_type": "event",
        "event_type": event_type,
        "id": event_id,
        "occurred_at": occurred,
        "payload": payload,
    }
    envelope = {"data": data, "meta": {"attempt": attempt, "delivered_to": "http://x/webhooks/telnyx"}}
    return json.dumps(envelope).encode()


async def _post(client: Any, body: bytes, *, signed_at: float | None = None, key: SigningKey = KEY) -> Any:
    headers = {**sign(key, body, int(signed_at if signed_at is not None else time.time())),
               "Content-Type": "application/json"}  # fmt: skip
    return await client.post("/webhooks/telnyx", data=body, headers=headers)


async def test_webhook_ingress_over_http(make_client: Any, clean_db: Any) -> None:
    """Verified, de-duplicated, applied in any order, persisted in batches; refusals are problems with reasons."""
    from pivotal.app import INGRESS

    await clean_db.execute("TRUNCATE call_events")
    client = await make_client(telephony={"webhook_public_key": PUBLIC})
    leg = {"call_control_id": "v3:leg1", "call_leg_id": "l1", "call_session_id": "s1"}
    hangup = _delivery("e3", "call.hangup", {**leg, "hangup_cause": "normal_clearing"}, at=30)
    for body in [
        _delivery("e2", "call.machine.premium.detection.ended", {**leg, "result": "human_residence"}, at=6),
        _delivery("e1", "call.answered", leg, at=4),
        _delivery("e2", "call.machine.premium.detection.ended", {**leg, "result": "human_residence"}, attempt=2, at=6),
        hangup,
        _delivery("e0", "call.initiated", {**leg, "direction": "outgoing", "state": "bridging"}, at=0),
    ]:
        response = await _post(client, body)
        assert response.status == 200, await response.text()
    answers = []
    for body in [_delivery("e2", "call.machine.premium.detection.ended", leg, attempt=3)]:
        answers.append((await (await _post(client, body)).json())["result"])
    assert answers == ["duplicate"]
    state = client.app[INGRESS].legs.get("v3:leg1")
    assert state.state.name == "ENDED"
    assert (state.answered_at, state.amd_result) == (T0 + timedelta(seconds=4), "human_residence")

    refusals = [
        (await _post(client, hangup, signed_at=time.time() - 400), 401, "rejected_stale"),
        (
            await client.post(
                "/webhooks/telnyx",
                data=hangup + b" ",
                headers={**sign(KEY, hangup, int(time.time())), "Content-Type": "application/json"},
            ),
            401,
            "rejected_forged",
        ),  # fmt: skip
        (await _post(client, hangup, key=SigningKey(b"\x09" * 32)), 401, "rejected_forged"),
        (await client.post("/webhooks/telnyx", data=hangup), 401, "rejected_missing_headers"),
        (await _post(client, b'{"data": {"id": 1'), 400, "rejected_malformed"),
        (await _post(client, b'{"data": []}'), 400, "rejected_malformed"),
        (await _post(client, b"x" * 70_000), 413, "rejected_oversized"),
    ]
    for response, status, result in refusals:
        assert response.status == status, await response.text()
        assert response.content_type == "application/problem+json"
        assert (await response.json())["title"] == result
    unknown = await _post(client, _delivery("e9", "call.something_new", {"call_control_id": "v3:leg1"}))
    assert (await unknown.json())["result"] == "ignored"
    no_leg = await _post(client, _delivery("e10", "conference.created", {"conference_id": "c1"}))
    assert (await no_leg.json())["result"] == "unmatched"

    started = time.perf_counter()
    while await clean_db.fetchval("SELECT count(*) FROM call_events") < 6:
        assert time.perf_counter() - started < 2, "written within the batch interval"
        await asyncio.sleep(0.02)
    rows = await clean_db.fetch("SELECT event_id, handling, delivery_attempt FROM call_events ORDER BY event_id")
    assert {r["delivery_attempt"] for r in rows} == {1}, "the first delivery is the one kept"
    by_id = {r["event_id"]: r["handling"] for r in rows}
    assert by_id == {"e0": "ignored", "e1": "ignored", "e10": "unmatched", "e2": "applied", "e3": "applied",
                     "e9": "ignored"}  # fmt: skip
    metrics = await (await client.get("/metrics")).text()
    assert 'pivotal_webhooks_total{result="rejected_stale"} 1.0' in metrics
    assert 'pivotal_webhooks_total{result="duplicate"} 2.0' in metrics


async def test_webhooks_are_refused_until_a_key_is_configured(make_client: Any, clean_db: Any) -> None:
    client = await make_client()
    response = await _post(client, _delivery("e1", "call.answered", {"call_control_id": "v3:x"}))
    assert response.status == 503


def test_secrets_are_sealed_with_a_fresh_nonce_and_need_the_key() -> None:
    from dialer.connections import Sealer, TelephonyError

    sealer = Sealer(b"k" * 32)
    one, two = sealer.seal("api-key"), sealer.seal("api-key")
    assert one != two, "a random nonce each time"
    assert b"api-key" not in one
    assert sealer.open(one) == "api-key"
    with pytest.raises(TelephonyError, match="secrets_key"):
        Sealer(b"j" * 32).open(one)


def test_a_premium_beep_without_a_verdict_is_a_machine() -> None:
    leg, handled = _run(
        [("call.answered", {}, 2), ("call.machine.premium.greeting.ended", {"result": "beep_detected"}, 9)]
    )
    assert (leg.state, leg.amd_result, leg.greeting_result) == (LegState.MACHINE, "machine", "beep_detected")
    assert handled == [A, A]


def test_forgotten_legs_stay_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    from dialer import webhook_ingress
    from dialer.webhook_ingress import Legs

    monkeypatch.setattr(webhook_ingress, "ENDED_LEGS_KEPT", 1)
    legs = Legs()
    for ccid in ("a", "b"):
        leg = legs.get_or_create(ccid, 0.0)
        assert leg is not None
        leg.apply("call.hangup", {}, T0)
        legs.ended(ccid)
    assert legs.get("a") is None, "the oldest ended leg is forgotten"
    assert legs.get_or_create("a", 1.0) is None, "a late event does not bring it back"
    assert legs.get_or_create("idle", 2.0) is not None
    legs.get_or_create("later", 2.0 + webhook_ingress.LEG_IDLE_S + 1)
    assert legs.get("idle") is None, "idle legs are swept"
    monkeypatch.setattr(webhook_ingress, "ENDED_LEGS_KEPT", 10)
    t = 3.0 + webhook_ingress.LEG_IDLE_S
    for ccid in ("c", "d"):
        assert legs.get_or_create(ccid, t) is not None
    legs.ended("c", t)
    legs.ended("d", t + webhook_ingress.ENDED_LEG_KEEP_S + 1)
    assert legs.get("c") is None, "ended legs are forgotten after a while too"
    assert legs.get("d") is not None


async def test_awkward_but_signed_bodies_are_read_whole_and_stored(make_client: Any, clean_db: Any) -> None:
    """A body in several chunks verifies; text PostgreSQL cannot hold is cleaned, never blocking the log."""
    await clean_db.execute("TRUNCATE call_events")
    client = await make_client(telephony={"webhook_public_key": PUBLIC})
    body = _delivery("chunked", "call.answered", {"call_control_id": "v3:c", "note": "x" * 3000})

    async def pieces() -> Any:
        for start in range(0, len(body), 700):
            yield body[start : start + 700]
            await asyncio.sleep(0.01)

    headers = {**sign(KEY, body, int(time.time())), "Content-Type": "application/json"}
    chunked = await client.post("/webhooks/telnyx", data=pieces(), headers=headers)
    assert chunked.status == 200, await chunked.text()
    awkward = [
        _delivery("nul", "call.answered", {"call_control_id": "v3:d", "caller": "a\u0000b"}),
        _delivery("surrogate", "call.answered", {"call_control_id": "v3:e", "caller": "\ud800"}),
        b'{"data": {"id": "minimal", "event_type": "call.answered", "payload": {"call_control_id": "v3:f"}}}',
    ]
    for raw in awkward:
        assert (await _post(client, raw)).status == 200
    nan = b'{"data": {"id": "nan", "event_type": "call.answered", "payload": {"x": NaN}}}'
    assert (await _post(client, nan)).status == 400
    started = time.perf_counter()
    while await clean_db.fetchval("SELECT count(*) FROM call_events") < 4:
        assert time.perf_counter() - started < 3
        await asyncio.sleep(0.02)
    caller = await clean_db.fetchval(
        "SELECT payload->'data'->'payload'->>'caller' FROM call_events WHERE event_id = 'nul'"
    )
    assert caller == "ab"


async def test_the_event_log_writes_its_queue_before_closing(clean_db: Any) -> None:
    from dialer.webhook_ingress import EventLog

    await clean_db.execute("TRUNCATE call_events")
    events = EventLog(clean_db, interval_s=60)  # no timed flush: only close() can write them
    events.start()
    now = datetime.now(UTC)
    for i in range(25):
        events.append((f"q{i}", "call.answered", None, now, now, 1, "unmatched", "{}"))
    await events.close()
    assert await clean_db.fetchval("SELECT count(*) FROM call_events") == 25


async def test_a_backlog_defers_deliveries(make_client: Any, clean_db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from dialer import webhook_ingress

    monkeypatch.setattr(webhook_ingress, "MAX_QUEUED_EVENTS", 0)
    client = await make_client(telephony={"webhook_public_key": PUBLIC})
    response = await _post(client, _delivery("later", "call.answered", {"call_control_id": "v3:g"}))
    assert response.status == 503, "Telnyx keeps it and retries"
