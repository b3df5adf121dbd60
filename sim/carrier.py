"""A loopback Telnyx: the Call Control v2 endpoints the dialer uses, with signed webhooks (reference/telnyx.md s7).

The daemon runs its unchanged code path against it: only the base URL, the webhook URL and the public key
differ. Each dial plays a seeded per-destination script (``scenarios``) as webhooks, in real time divided by
``speed``. Requests and responses have the real shapes and error codes; where Telnyx's behaviour is unknown
(reference s8) the choice is written next to the code. Ground truth (greeting end, bridge) is kept per leg for
compliance metrics and served at ``GET /_sim/calls``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import math
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey

from sim.agents import FakeAgent, FakeSoftphones, sip_user
from sim.credentials import Credentials
from sim.scenarios import FAILURES, Script, script_for
from sim.webhooks import WebhookSender
from sim.wire import error, iso, json_object, not_an_object

DIALS_PER_WINDOW = 150  # 30 dials/s over a rolling 5 s (reference s6)
DIAL_WINDOW_S = 5.0
COMMAND_MEMORY_S = 60.0
ENDED_LEG_KEPT_S = 300.0  # an ended leg still answers 422 90018 this long, then is forgotten (404)
#: 38 MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, 417 bytes each, all-zero side info): about 1 s of silence.
SILENT_MP3 = (b"\xff\xfb\x90\x64" + bytes(413)) * 38
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AMD_MODES = ("premium", "premium_ios_call_screening_detection", "detect", "detect_beep", "detect_words",
             "greeting_end", "disabled")  # fmt: skip


@dataclass
class Options:
    webhook_url: str | None = None
    seed: int = 1
    speed: float = 1.0
    api_key: str | None = None  # None: any bearer token is accepted
    channel_limit: int = 10
    webhook_timeout_s: float = 10.0
    duplicate_prob: float = 0.0  # chaos: deliver an event twice
    api_5xx_prob: float = 0.0  # chaos: answer a command with 500 before doing anything
    fail_next_commands: int = 0  # chaos, deterministic: the next N call commands answer 500
    slow_next_commands: int = 0  # chaos, deterministic: the next N call commands answer after slow_command_ms
    slow_command_ms: int = 1500  # (the command runs after the wait: a sender that gave up must resend)
    api_latency_ms: float = 0.0  # chaos: median API latency; log-normal, p99 about 6x the median (80 -> 500 ms)
    reorder_window_ms: int = 0  # chaos: each delivery waits 0..N ms on its own, so later events can overtake
    delivery_jitter_ms: int = 0  # chaos: each delivery waits 0..N ms, a leg's events staying in order
    drop_prob: float = 0.0  # chaos: a delivery's first attempt is lost (the retry, 1 s later, carries it)
    agent_answer_ms: tuple[int, int] = (300, 1500)  # a fake softphone's auto-answer (WebRTC setup) delay
    events_kept: int = 10_000  # the latest events sent, kept as ground truth (tests and benchmarks raise it)


@dataclass
class SimLeg:
    call_control_id: str
    call_leg_id: str
    call_session_id: str
    connection_id: str
    from_: str
    to: str
    client_state: str | None
    webhook_url: str | None
    script: Script
    amd: str = "disabled"
    timeout_secs: int = 30
    state: str = "dialing"  # dialing, parked (incoming, not answered yet), answered, bridged, ended
    direction: str = "outgoing"
    agent: str | None = None  # the fake softphone (sip_username) at the far end of this leg
    agent_call_id: str | None = None  # that softphone's id for the call
    bridge_on_answer_with: str | None = None  # link_to + bridge_on_answer: bridge to this leg at answer
    started: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    bridged_with: str | None = None
    park_after_unbridge: bool = False  # park_after_unbridge "self" or hold_after_unbridge: outlive the peer
    prevent_double_bridge: bool = False  # (a link_to dial) do not take a leg that is bridged already
    recording: float | None = None  # start time of a running recording
    playing: str | None = None  # "speak" or "playback" while media plays
    unsent_bridged: bool = False  # bridged, its call.bridged still waiting for the switch delay
    truth: dict[str, float] = field(default_factory=dict)
    deliverer: asyncio.Task[None] | None = None
    script_task: asyncio.Task[None] | None = None
    timers: set[asyncio.Task[None]] = field(default_factory=set)  # events scheduled for later
    outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)

    def common(self) -> dict[str, Any]:
        return {
            "call_control_id": self.call_control_id, "call_leg_id": self.call_leg_id,
            "call_session_id": self.call_session_id, "connection_id": self.connection_id,
            "client_state": self.client_state, "from": self.from_, "to": self.to,
            "start_time": iso(self.started),
        }  # fmt: skip


class SimCarrier:
    def __init__(self, options: Options, key: SigningKey | None = None) -> None:
        self.options = options
        self.key = key or SigningKey.generate()
        self.rng = random.Random(options.seed)  # noqa: S311 - simulation
        self.legs: dict[str, SimLeg] = {}
        self.scripts: dict[str, Script] = {}
        self.credentials = Credentials()
        self.softphones = FakeSoftphones(self)
        self._dial_times: deque[float] = deque()
        self._commands: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.webhooks = WebhookSender(self.key, options)
        self.live = 0  # legs not ended (the channel limit)
        #: Every event sent (id, type, call_control_id), newest last: the ground truth tests compare against.
        self.emitted: deque[tuple[str, str, str]] = deque(maxlen=options.events_kept)
        self.duplicated = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self.origin = ""
        self._delivering = 0  # events taken from an outbox and not yet posted (waiting out jitter, say)
        self.queues: dict[str, deque[str]] = {}  # enqueue: queue name -> call_control_ids, oldest first

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.key.verify_key)).decode()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v2/calls", self.dial)
        app.router.add_get("/v2/calls/{ccid}", self.call_status)
        app.router.add_post("/v2/calls/{ccid}/actions/{action}", self.action)
        self.credentials.mount(app)
        self.softphones.mount(app)
        app.router.add_get("/_sim/public_key", self.serve_public_key)
        app.router.add_get("/_sim/calls", self.serve_calls)
        app.router.add_get("/_sim/rec/{name}", self.serve_recording)
        app.router.add_post("/_sim/scenario", self.set_scenario)
        app.on_cleanup.append(self._close)
        return app

    # -- plumbing --------------------------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.origin:  # where recordings are served from: as the carrier's clients reach it
            self.origin = str(request.url.origin())
        if request.path.startswith("/v2/"):
            given = request.headers.get("Authorization", "")
            token = given.removeprefix("Bearer ").strip() if given.startswith("Bearer ") else ""
            if not token or (self.options.api_key is not None and token != self.options.api_key):
                return error(401, "10009", "Authentication failed", "The API key is missing or wrong.")
            if self.options.api_latency_ms > 0:
                # Log-normal: sigma 0.787 puts p99 at 6.25x the median (reference s7.4: p50 ~80 ms, p99 ~500 ms).
                await asyncio.sleep(self.rng.lognormvariate(math.log(self.options.api_latency_ms), 0.787) / 1000)
        return await handler(request)

    async def _close(self, _app: web.Application) -> None:
        for leg in self.legs.values():
            for task in (leg.deliverer, leg.script_task, *leg.timers):
                if task is not None:
                    task.cancel()
        for task in list(self._in_flight):
            task.cancel()
        await self.softphones.close()
        await self.webhooks.close()

    def quiet(self) -> bool:
        """Nothing left to deliver: no queued, wandering or retrying webhook (tests and benchmarks wait for it)."""
        pending = any(not leg.outbox.empty() or leg.timers for leg in self.legs.values())
        return not self._in_flight and not self._delivering and not self.webhooks.posting and not pending

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a fire-and-forget task referenced until it is done (and cancelled at close)."""
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _delay(self, milliseconds: float) -> float:
        return milliseconds / 1000 / self.options.speed

    def _remembered(self, scope: str, command_id: object) -> dict[str, Any] | None:
        now = time.monotonic()
        for key in [k for k, (at, _) in self._commands.items() if now - at > COMMAND_MEMORY_S]:
            del self._commands[key]
        if isinstance(command_id, str) and command_id:
            found = self._commands.get((scope, command_id))
            return found[1] if found else None
        return None

    def _remember(self, scope: str, command_id: object, response: dict[str, Any]) -> None:
        if isinstance(command_id, str) and command_id:
            self._commands[(scope, command_id)] = (time.monotonic(), response)

    # -- dial ------------------------------------------------------------------------------------------------

    async def dial(self, request: web.Request) -> web.Response:
        body = await json_object(request, empty_ok=False)
        if body is None:
            return not_an_object()
        remembered = self._remembered("dial", body.get("command_id"))
        if remembered is not None:  # sim choice (s8.2): the original response, nothing re-executed
            return web.json_response(remembered)
        for name in ("connection_id", "from", "to"):
            value = body.get(name)
            if name == "to" and isinstance(value, list) and value:
                value = value[0]
            if not isinstance(value, str) or not value:
                return error(422, "10004", "Missing required parameter", f"{name} is required", f"/{name}")
        client_state = body.get("client_state")
        if client_state is not None:
            try:
                base64.b64decode(client_state, validate=True)
            except (binascii.Error, ValueError, TypeError):
                return error(422, "10015", "Invalid parameter", "client_state must be Base64", "/client_state")
        timeout = body.get("timeout_secs", 30)
        if not isinstance(timeout, int) or not 5 <= timeout <= 600:
            return error(422, "10015", "Invalid parameter", "timeout_secs must be 5 to 600", "/timeout_secs")
        webhook_url = body.get("webhook_url")
        if webhook_url is not None and not (
            isinstance(webhook_url, str) and webhook_url.startswith(("http://", "https://"))
        ):
            return error(422, "10015", "Invalid parameter", "webhook_url must be an http(s) URL", "/webhook_url")
        amd = body.get("answering_machine_detection", "disabled")
        if amd not in AMD_MODES:
            return error(
                422, "10015", "Invalid parameter", "unknown answering_machine_detection", "/answering_machine_detection"
            )
        now = time.monotonic()
        while self._dial_times and now - self._dial_times[0] > DIAL_WINDOW_S:
            self._dial_times.popleft()
        if len(self._dial_times) >= DIALS_PER_WINDOW:
            return error(429, "90103", "Dials per second limit reached", "30 dials per second over 5 seconds")
        self._dial_times.append(now)
        to = body["to"][0] if isinstance(body["to"], list) else body["to"]
        leg = SimLeg(
            call_control_id="v3:" + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("="),
            call_leg_id=str(uuid.uuid1()), call_session_id=str(uuid.uuid1()), connection_id=body["connection_id"],
            from_=body["from"], to=to, client_state=client_state,
            webhook_url=webhook_url or self.options.webhook_url,
            script=self.scripts.get(to) or script_for(to, self.options.seed), amd=amd, timeout_secs=timeout,
        )  # fmt: skip
        link = body.get("link_to")
        if isinstance(link, str) and link in self.legs:
            leg.call_session_id = self.legs[link].call_session_id
            if body.get("bridge_on_answer"):
                leg.bridge_on_answer_with = link
                leg.park_after_unbridge = _outlives_peer(body)
                leg.prevent_double_bridge = body.get("prevent_double_bridge") is True
        self.legs[leg.call_control_id] = leg
        self.live += 1
        leg.deliverer = asyncio.create_task(self._deliver(leg))
        leg.script_task = asyncio.create_task(self._play(leg, over_limit=self.live > self.options.channel_limit))
        data = {"call_control_id": leg.call_control_id, "call_leg_id": leg.call_leg_id,
                "call_session_id": leg.call_session_id, "is_alive": False, "record_type": "call"}  # fmt: skip
        response = {"data": data}
        if body.get("record"):
            response["data"]["recording_id"] = str(uuid.uuid4())
        self._remember("dial", body.get("command_id"), response)
        return web.json_response(response)

    async def _play(self, leg: SimLeg, *, over_limit: bool) -> None:
        """The leg's script, as events; a command (hangup, bridge) may end or change it at any await."""
        script = leg.script
        await asyncio.sleep(self._delay(self.rng.randint(50, 250)))
        self._emit(leg, "call.initiated", {"direction": "outgoing", "state": "bridging", "calling_party_type": "pstn"})
        if over_limit:  # sim choice (s6, s8.4): the channel limit shows as a 403 hangup
            self._end(leg, "call_rejected", "callee", "403")
            return
        if sip_user(leg.to) is not None:
            await self._ring_agent(leg)
            return
        if script.outcome in FAILURES:
            await asyncio.sleep(self._delay(script.ring_ms))
            cause, sip = FAILURES[script.outcome]
            self._end(leg, cause, "callee", sip)
            return
        if script.outcome == "no_answer" or script.ring_ms > leg.timeout_secs * 1000:
            await asyncio.sleep(self._delay(leg.timeout_secs * 1000))
            self._end(leg, "timeout", "callee", "487")  # sip code for a timeout: UNVERIFIED (s8.4)
            return
        await asyncio.sleep(self._delay(script.ring_ms))
        leg.state, leg.answered_at = "answered", time.time()
        self._emit(leg, "call.answered", {"state": "answered"})
        self._bridge_on_answer(leg)
        greeting_end = leg.answered_at + self._delay(script.greeting_ms)
        leg.truth["answered_at"] = leg.answered_at
        if script.outcome == "human":
            leg.truth["greeting_end_at"] = greeting_end
        if leg.amd != "disabled":
            await self._detect(leg, script)
        remaining = leg.answered_at + self._delay(script.talk_ms) - time.time()
        await asyncio.sleep(max(0.0, remaining))
        self._end(leg, "normal_clearing", "callee", "200")

    async def _detect(self, leg: SimLeg, script: Script) -> None:
        premium = leg.amd.startswith("premium")
        if premium:
            self._emit(leg, "call.machine.premium.detection.started", {})
        if script.outcome == "human":
            await asyncio.sleep(self._delay(script.greeting_ms + script.amd_delay_ms))
            result = script.amd_result or ("human_business" if premium else "human")
            event = "call.machine.premium.detection.ended" if premium else "call.machine.detection.ended"
            self._emit(leg, event, {"result": result})
            return
        await asyncio.sleep(self._delay(script.amd_delay_ms))
        event = "call.machine.premium.detection.ended" if premium else "call.machine.detection.ended"
        self._emit(leg, event, {"result": script.amd_result or "machine"})
        if leg.amd in ("detect_beep", "detect_words", "greeting_end") or premium:
            await asyncio.sleep(self._delay(max(0, script.greeting_ms - script.amd_delay_ms)))
            greeting = "call.machine.premium.greeting.ended" if premium else "call.machine.greeting.ended"
            self._emit(leg, greeting, {"result": "beep_detected"})

    # -- agent legs (fake softphones) ------------------------------------------------------------------------

    async def _ring_agent(self, leg: SimLeg) -> None:
        """Pattern 1: a dial to an agent's SIP URI rings its softphone, which answers (auto, or by its user)."""
        agent = self.softphones.agents.get(sip_user(leg.to) or "")
        if agent is None:
            await asyncio.sleep(self._delay(100))
            self._end(leg, "not_found", "callee", "404")
            return
        leg.agent, leg.agent_call_id = agent.sip_username, str(uuid.uuid4())
        agent.calls[leg.agent_call_id] = leg.call_control_id
        self.softphones.notify(leg, "ringing")
        low, high = self.options.agent_answer_ms
        answer_ms = self.rng.randint(low, high) if agent.auto_answer else None
        if answer_ms is not None and answer_ms < leg.timeout_secs * 1000:
            await asyncio.sleep(self._delay(answer_ms))
            self.agent_answer(leg.call_control_id)
            return
        await asyncio.sleep(self._delay(leg.timeout_secs * 1000))  # unless its user answers first
        if leg.state == "dialing":
            self._end(leg, "timeout", "callee", "487")

    def park_agent_call(self, agent: FakeAgent, call_id: str, destination: str, headers: list[Any]) -> SimLeg:
        """Pattern 2: the softphone's call, parked by the credential connection until the daemon answers it."""
        leg = SimLeg(
            call_control_id="v3:" + base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("="),
            call_leg_id=str(uuid.uuid1()), call_session_id=str(uuid.uuid1()), connection_id=agent.connection_id,
            from_=agent.address, to=destination, client_state=None, webhook_url=self.options.webhook_url,
            script=Script("human"), state="parked", direction="incoming", agent=agent.sip_username,
            agent_call_id=call_id,
        )  # fmt: skip
        self.legs[leg.call_control_id] = leg
        leg.deliverer = asyncio.create_task(self._deliver(leg))
        custom = [{"name": "X-RTC-CALLID", "value": call_id}] + [
            {"name": str(h.get("name", ""))[:64], "value": str(h.get("value", ""))[:256]} for h in headers[:10]
        ]
        self._emit(leg, "call.initiated", {"direction": "incoming", "state": "parked", "calling_party_type": "sip",
                                           "custom_headers": custom})  # fmt: skip
        self.softphones.notify(leg, "trying")
        return leg

    def agent_answer(self, ccid: str) -> None:
        """The softphone answers the call ringing it (pattern 1)."""
        leg = self.legs.get(ccid)
        if leg is None or leg.state != "dialing" or leg.direction != "outgoing":
            return
        leg.state, leg.answered_at = "answered", time.time()
        leg.truth["answered_at"] = leg.answered_at
        self._emit(leg, "call.answered", {"state": "answered"})
        self.softphones.notify(leg, "active")
        self._bridge_on_answer(leg)

    def _bridge_on_answer(self, leg: SimLeg) -> None:
        """link_to + bridge_on_answer: join the linked leg at the answer; with prevent_double_bridge a linked leg
        already bridged elsewhere is not taken, and the new leg is hung up instead (reference s7.3)."""
        linked = self.legs.get(leg.bridge_on_answer_with or "")
        if linked is None or linked.state not in ("answered", "bridged"):
            return
        if leg.prevent_double_bridge and linked.state == "bridged":
            self._end(leg, "normal_clearing", _near_end(leg), "200")
            return
        self._join(leg, linked)

    def agent_hangup(self, ccid: str) -> None:
        leg = self.legs.get(ccid)
        if leg is not None:  # the agent is the caller on a parked leg, the callee on a leg that rang it
            self._end(leg, "normal_clearing", _far_end(leg), "200")

    def agent_dtmf(self, ccid: str, digits: str) -> None:
        leg = self.legs.get(ccid)
        if leg is not None and leg.state in ("answered", "bridged"):
            for digit in digits:
                self._emit(leg, "call.dtmf.received", {"digit": digit})

    def _end(self, leg: SimLeg, cause: str, source: str, sip: str) -> None:
        if leg.state == "ended":
            return
        leg.state, leg.ended_at = "ended", time.time()
        if leg.direction == "outgoing":
            self.live -= 1
        self.softphones.notify(leg, "hangup", cause=cause)
        for task in (leg.script_task, *leg.timers):  # the script and scheduled events (the outbox still delivers)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        leg.timers.clear()
        for queue in self.queues.values():
            with contextlib.suppress(ValueError):
                queue.remove(leg.call_control_id)
        if leg.unsent_bridged:  # the bridge happened: its event is sent before the hangup, never lost
            leg.unsent_bridged = False
            self._emit(leg, "call.bridged", {})
        if leg.playing is not None:
            self._emit(leg, f"call.{leg.playing}.ended", {"status": "call_hangup"})
            leg.playing = None
        self._stop_recording(leg)
        self._emit(leg, "call.hangup", {
            "state": "hangup", "hangup_cause": cause, "hangup_source": source, "sip_hangup_cause": sip,
            "end_time": iso(leg.ended_at),
            "call_quality_stats": {"inbound": {"mos": "4.50", "jitter_max_variance": "0.00", "packet_count": "500",
                                               "skip_packet_count": "0", "jitter_packet_count": "0"},
                                   "outbound": {"packet_count": "500", "skip_packet_count": "0"}},
        })  # fmt: skip
        peer = self.legs.get(leg.bridged_with or "")
        if peer is not None and peer.state != "ended":
            self._unbridge(peer)

    def _unbridge(self, leg: SimLeg) -> None:
        """``leg``'s peer left the bridge: it stays (parked, answered) if its bridge asked so, else it ends."""
        leg.bridged_with = None
        if leg.park_after_unbridge:
            leg.state = "answered"  # parked again, ready for the next bridge
            self.softphones.notify(leg, "active")
        else:  # torn down from our side of this leg, not by the person at its far end
            self._end(leg, "normal_clearing", _near_end(leg), "200")

    def _stop_recording(self, leg: SimLeg) -> None:
        if leg.recording is None:
            return
        started, leg.recording = leg.recording, None
        recording_id = uuid.uuid4().hex
        payload = {"channels": "dual", "recording_started_at": iso(started), "recording_ended_at": iso(time.time()),
                   "recording_urls": {"mp3": f"{self.origin}/_sim/rec/{recording_id}.mp3", "wav": None},
                   "public_recording_urls": {"mp3": None, "wav": None}}  # fmt: skip
        self._later(leg, self.rng.randint(500, 3000), "call.recording.saved", payload, without_ccid=True)

    def _later(
        self, leg: SimLeg, ms: int, event: str, payload: dict[str, Any], *, without_ccid: bool = False,
        then: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        async def fire() -> None:
            await asyncio.sleep(self._delay(ms))
            if then is not None:
                then()
            self._emit(leg, event, payload, without_ccid=without_ccid)

        task = asyncio.create_task(fire())
        leg.timers.add(task)
        task.add_done_callback(leg.timers.discard)

    # -- webhooks --------------------------------------------------------------------------------------------

    def _emit(self, leg: SimLeg, event_type: str, extra: dict[str, Any], *, without_ccid: bool = False) -> None:
        payload = {**leg.common(), **extra}
        if without_ccid:  # call.recording.saved carries no call_control_id (reference s1.4)
            payload.pop("call_control_id", None)
        event_id = str(uuid.uuid4())
        data = {"record_type": "event", "event_type": event_type, "id": event_id,
                "occurred_at": iso(time.time()), "payload": payload}  # fmt: skip
        self.emitted.append((event_id, event_type, leg.call_control_id))
        leg.outbox.put_nowait((event_type, data))
        if self.rng.random() < self.options.duplicate_prob:
            self.duplicated += 1
            leg.outbox.put_nowait((event_type, data))

    async def _deliver(self, leg: SimLeg) -> None:
        """One task per leg: its events in order, each retried; a slow receiver delays only this leg. After the
        hangup it waits a little for a late recording, then forgets the leg (long sandbox runs stay bounded).
        With ``reorder_window_ms`` each event goes out on its own after a random wait, so events overtake."""
        options = self.options
        while True:
            try:
                async with asyncio.timeout(None if leg.state != "ended" else 10 / options.speed):
                    _, data = await leg.outbox.get()
            except TimeoutError:
                if leg.timers:  # a recording still to be saved
                    continue
                break
            if not leg.webhook_url:
                continue
            drop_first = self.rng.random() < options.drop_prob
            if options.reorder_window_ms > 0:
                wait = self.rng.uniform(0, options.reorder_window_ms) / 1000
                self.track(asyncio.create_task(self._post_later(wait, leg.webhook_url, data, drop_first)))
                continue
            self._delivering += 1
            try:
                if options.delivery_jitter_ms > 0:
                    await asyncio.sleep(self.rng.uniform(0, options.delivery_jitter_ms) / 1000)
                await self.webhooks.post(leg.webhook_url, data, drop_first=drop_first)
            finally:
                self._delivering -= 1
        await asyncio.sleep(ENDED_LEG_KEPT_S)
        self.legs.pop(leg.call_control_id, None)

    async def _post_later(self, wait_s: float, url: str, data: dict[str, Any], drop_first: bool) -> None:
        await asyncio.sleep(wait_s)
        await self.webhooks.post(url, data, drop_first=drop_first)

    # -- call actions ----------------------------------------------------------------------------------------

    async def call_status(self, request: web.Request) -> web.Response:
        leg = self.legs.get(request.match_info["ccid"])
        if leg is None:
            return error(404, "10005", "Resource not found", "No call with this call_control_id.")
        end = leg.ended_at or time.time()
        return web.json_response({"data": {**leg.common(), "is_alive": leg.state != "ended", "record_type": "call",
                                           "call_duration": int(end - leg.started),
                                           "end_time": iso(leg.ended_at) if leg.ended_at else None}})  # fmt: skip

    async def action(self, request: web.Request) -> web.Response:
        ccid, action = request.match_info["ccid"], request.match_info["action"]
        body = await json_object(request)
        if body is None:
            return not_an_object()
        if self.options.slow_next_commands > 0:
            self.options.slow_next_commands -= 1
            await asyncio.sleep(self.options.slow_command_ms / 1000)
        if self.options.fail_next_commands > 0 or self.rng.random() < self.options.api_5xx_prob:
            self.options.fail_next_commands = max(0, self.options.fail_next_commands - 1)
            return error(500, "10007", "Unexpected error", "Simulated failure: retry with the same command_id.")
        leg = self.legs.get(ccid)
        if leg is None:  # sim choice (s8.3): 404 for an unknown call_control_id
            return error(404, "10005", "Resource not found", "No call with this call_control_id.")
        remembered = self._remembered(ccid, body.get("command_id"))
        if remembered is not None:
            return web.json_response(remembered)
        if leg.state == "ended":
            return error(422, "90018", "Call has already ended", "This call is no longer active.")
        handler = self._actions.get(action)
        if handler is None:
            if action not in _ACKNOWLEDGED:
                return error(404, "10005", "Resource not found", f"Unknown action {action}.")
        else:
            refusal = handler(self, leg, body)
            if refusal is not None:
                return refusal
        ok = {"data": {"result": "ok"}}
        self._remember(ccid, body.get("command_id"), ok)
        return web.json_response(ok)

    def _hangup(self, leg: SimLeg, _body: dict[str, Any]) -> web.Response | None:
        if leg.direction == "incoming":  # we are the callee of a parked call
            self._end(leg, "normal_clearing" if leg.state != "parked" else "call_rejected", "callee", "200")
        elif leg.state == "dialing":
            self._end(leg, "originator_cancel", "caller", "487")
        else:
            self._end(leg, "normal_clearing", "caller", "200")
        return None

    def _answer(self, leg: SimLeg, _body: dict[str, Any]) -> web.Response | None:
        if leg.direction != "incoming":
            return error(422, "90015", "Invalid call direction", "Only an incoming call can be answered.")
        if leg.state == "parked":
            leg.state, leg.answered_at = "answered", time.time()
            leg.truth["answered_at"] = leg.answered_at
            self._emit(leg, "call.answered", {"state": "answered"})
            self.softphones.notify(leg, "active")
        return None  # answering an answered call again: acknowledged, nothing happens

    def _bridge(self, leg: SimLeg, body: dict[str, Any]) -> web.Response | None:
        queue = body.get("queue")
        if isinstance(queue, str) and queue:  # bridge with the head of a queue
            waiting = self.queues.get(queue)
            head = self.legs.get(waiting[0]) if waiting else None
            if waiting is None or head is None:
                return error(422, "90035", "Queue is empty", f"No call is waiting in {queue}.", "/queue")
            body = {**body, "call_control_id": head.call_control_id}
        other = self.legs.get(str(body.get("call_control_id", "")))
        if other is None:
            return error(
                422, "10015", "Invalid parameter", "call_control_id to bridge with is unknown", "/call_control_id"
            )
        if leg is other:
            return error(422, "10015", "Invalid parameter", "A call cannot be bridged with itself.", "/call_control_id")
        states = (leg.state, other.state)
        if "ended" in states:
            return error(422, "90018", "Call has already ended", "Both legs must be answered and alive.")
        if "dialing" in states or "parked" in states:
            return error(422, "90018", "Call is not answered", "Both legs must be answered and alive.")
        if body.get("prevent_double_bridge") and "bridged" in states:
            return error(422, "90034", "Call is already bridged", "prevent_double_bridge was set.")
        leg.park_after_unbridge = _outlives_peer(body)
        if isinstance(queue, str) and queue:
            self.queues[queue].popleft()
            self._emit(other, "call.dequeued", {"queue": queue, "reason": "bridged"})
        self._join(leg, other)
        return None

    def _join(self, leg: SimLeg, other: SimLeg) -> None:
        """Bridge two answered legs; a leg bridged elsewhere leaves that bridge (its old peer parks or ends)."""
        for one in (leg, other):
            old = self.legs.get(one.bridged_with or "")
            if old is not None and old is not leg and old is not other:
                self._unbridge(old)
        leg.state = other.state = "bridged"
        leg.bridged_with, other.bridged_with = other.call_control_id, leg.call_control_id
        now = time.time()
        for one in (leg, other):
            # The first bridge of a customer leg is the compliance fact; an agent leg keeps its latest bridge.
            if one.agent is not None:
                one.truth["bridged_at"] = now
            else:
                one.truth.setdefault("bridged_at", now)
        delay = self.rng.randint(30, 150)
        first, second = (leg, other) if self.rng.random() < 0.5 else (other, leg)
        for one in (first, second):
            one.unsent_bridged = True
            self._later(one, delay, "call.bridged", {}, then=functools.partial(setattr, one, "unsent_bridged", False))
        for one, peer in ((leg, other), (other, leg)):
            self.softphones.notify(one, "bridged", remote=peer.to if peer.direction == "outgoing" else peer.from_)

    def _play_media(self, leg: SimLeg, body: dict[str, Any], kind: str) -> web.Response | None:
        text = str(body.get("payload", ""))
        duration = 70 * len(text) if kind == "speak" else 3000
        started, ended = f"call.{kind}.started", f"call.{kind}.ended"
        self._emit(leg, started, {"media_url": body.get("audio_url")} if kind == "playback" else {})
        leg.playing = kind
        self._later(leg, max(duration, 200), ended, {"status": "completed"},
                    then=lambda: setattr(leg, "playing", None))  # fmt: skip
        return None

    def _enqueue(self, leg: SimLeg, body: dict[str, Any]) -> web.Response | None:
        name = body.get("queue_name")
        if not isinstance(name, str) or not 0 < len(name) <= 255:
            return error(422, "10015", "Invalid parameter", "queue_name is required", "/queue_name")
        waiting = self.queues.setdefault(name, deque())
        if leg.call_control_id not in waiting:
            waiting.append(leg.call_control_id)
            self._emit(leg, "call.enqueued", {"queue": name, "current_position": len(waiting)})
        return None

    def _leave_queue(self, leg: SimLeg, _body: dict[str, Any]) -> web.Response | None:
        for name, waiting in self.queues.items():
            if leg.call_control_id in waiting:
                waiting.remove(leg.call_control_id)
                self._emit(leg, "call.dequeued", {"queue": name, "reason": "leave"})
        return None

    def _record_start(self, leg: SimLeg, _body: dict[str, Any]) -> web.Response | None:
        leg.recording = leg.recording or time.time()
        return None

    def _record_stop(self, leg: SimLeg, _body: dict[str, Any]) -> web.Response | None:
        self._stop_recording(leg)
        return None

    _actions: dict[str, Callable[[SimCarrier, SimLeg, dict[str, Any]], web.Response | None]] = {
        "answer": _answer,
        "hangup": _hangup,
        "bridge": _bridge,
        "speak": lambda self, leg, body: self._play_media(leg, body, "speak"),
        "playback_start": lambda self, leg, body: self._play_media(leg, body, "playback"),
        "record_start": _record_start,
        "record_stop": _record_stop,
        "enqueue": _enqueue,
        "leave_queue": _leave_queue,
    }

    # -- simulator controls (not Telnyx) ---------------------------------------------------------------------

    async def serve_public_key(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.public_key)

    async def serve_recording(self, request: web.Request) -> web.Response:
        """Any recording: one second of MP3 silence (a recording's link in a lead must play in a browser)."""
        if not request.match_info["name"].endswith(".mp3"):
            return error(404, "10005", "Resource not found", "Recordings are served as .mp3.")
        return web.Response(body=SILENT_MP3, content_type="audio/mpeg")

    async def serve_calls(self, _request: web.Request) -> web.Response:
        calls = [{"call_control_id": leg.call_control_id, "direction": leg.direction, "from": leg.from_, "to": leg.to,
                  "outcome": leg.script.outcome if leg.agent is None else "agent", "agent": leg.agent,
                  "state": leg.state, "truth": leg.truth} for leg in self.legs.values()]  # fmt: skip
        return web.json_response({"calls": calls})

    async def set_scenario(self, request: web.Request) -> web.Response:
        """``{"to": "+1...", "outcome": "human", "ring_ms": ..., ...}``: the script for that number from now on."""
        try:
            body = await request.json()
            to = body.pop("to")
            self.scripts[to] = Script(**body)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            return web.json_response({"error": str(exc)}, status=422)
        return web.json_response({"to": to, "script": vars(self.scripts[to])})


#: Actions the sim acknowledges without modelling them further.
_ACKNOWLEDGED = frozenset({"reject", "transfer", "playback_stop", "send_dtmf",
                           "client_state_update", "suppression_start", "suppression_stop", "record_pause",
                           "record_resume"})  # fmt: skip


async def serve(options: Options, host: str, port: int, *, announce: Callable[[str], None] = print) -> None:
    """Run until cancelled; the first thing printed is the webhook public key (Base64, 32 raw bytes)."""
    carrier = SimCarrier(options)
    runner = web.AppRunner(carrier.app())
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    announce(carrier.public_key)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def _outlives_peer(body: dict[str, Any]) -> bool:
    """A bridge's ``park_after_unbridge: "self"`` or ``hold_after_unbridge: true``: this leg stays up when the
    other leaves (parked or on hold are the same to the simulator: alive, answered, bridgeable)."""
    return body.get("park_after_unbridge") == "self" or body.get("hold_after_unbridge") is True


def _far_end(leg: SimLeg) -> str:
    """Who is at the far end of a leg, as ``hangup_source`` names it: the callee of a call we placed, the
    caller of one we took (an agent's parked call)."""
    return "caller" if leg.direction == "incoming" else "callee"


def _near_end(leg: SimLeg) -> str:
    """Our side of a leg, as ``hangup_source`` names it: the caller of a call we placed, the callee of one we
    took."""
    return "callee" if leg.direction == "incoming" else "caller"
