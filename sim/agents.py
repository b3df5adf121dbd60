"""Fake agent softphones: what a browser running ``@telnyx/webrtc`` looks like to the carrier (reference s7.6).

An agent registers with the WebRTC login token the simulator minted for its telephony credential, then
- places one call that the credential connection parks (pattern 2: ``call.initiated`` {direction incoming,
  state parked} goes to the daemon, whose ``answer`` makes it active and whose bridges join customers to it);
- or is rung by a dial to ``sip:<sip_username>@sip.telnyx.com`` and answers it (pattern 1).

Two ways in, one model:
- ``GET /_sim/rtc`` (websocket, JSON frames) for the browser shim and the headless agent bot. Client frames:
  ``login {login_token, auto_answer?}``, ``invite {call_id?, destination, caller_number?, custom_headers?}``,
  ``answer {call_id}``, ``hangup {call_id}``, ``dtmf {call_id, digits}``. Server frames: ``ready
  {sip_username}``, ``call {call_id, call_control_id, direction, state, remote, cause?}`` on every change
  (state: trying, ringing, active, bridged, hangup) and ``error {code, message}``. Closing the socket hangs
  up the agent's calls, as closing a browser tab does.
- ``/_sim/agents/{sip_username}/{register,call,answer,hangup,unregister}`` (HTTP) for tests and benchmarks,
  with agents that always auto-answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import WSMsgType, web

from sim.wire import error, json_object, not_an_object

if TYPE_CHECKING:
    from sim.carrier import SimCarrier, SimLeg

MAX_FRAME_BYTES = 16_384
MAX_CALLS_PER_AGENT = 4  # a browser tab holds one; a few for tests of transfers and races
SIP_DOMAIN = "sip.telnyx.com"


@dataclass
class FakeAgent:
    sip_username: str
    connection_id: str
    auto_answer: bool = True
    socket: web.WebSocketResponse | None = None
    calls: dict[str, str] = field(default_factory=dict)  # call_id -> call_control_id

    @property
    def address(self) -> str:
        return f"sip:{self.sip_username}@{SIP_DOMAIN}"


def sip_user(address: str) -> str | None:
    """``sip:gencredXYZ@sip.telnyx.com`` -> ``gencredXYZ``; None for anything else."""
    if not address.startswith("sip:"):
        return None
    user, _, domain = address[4:].partition("@")
    return user if user and domain == SIP_DOMAIN else None


class FakeSoftphones:
    def __init__(self, carrier: SimCarrier) -> None:
        self.carrier = carrier
        self.agents: dict[str, FakeAgent] = {}

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/_sim/rtc", self.websocket)
        app.router.add_get("/_sim/agents", self.list_agents)
        app.router.add_post("/_sim/agents/{sip_username}/{command}", self.command)

    async def close(self) -> None:
        for agent in list(self.agents.values()):
            if agent.socket is not None:
                with contextlib.suppress(Exception):
                    await agent.socket.close()

    # -- the model -------------------------------------------------------------------------------------------

    def register(self, sip_username: str, *, auto_answer: bool, socket: web.WebSocketResponse | None) -> FakeAgent:
        """A credential's softphone comes online; a second registration replaces the first, as on Telnyx ("only
        the most recent one receives incoming calls")."""
        credential = self.carrier.credentials.by_username(sip_username)
        if credential is None:
            raise LookupError(f"no telephony credential {sip_username}")
        old = self.agents.get(sip_username)
        if old is not None:
            self.unregister(old)
        connection_id = str(credential["resource_id"]).removeprefix("connection:")
        agent = self.agents[sip_username] = FakeAgent(sip_username, connection_id, auto_answer, socket)
        return agent

    def unregister(self, agent: FakeAgent) -> None:
        if self.agents.get(agent.sip_username) is agent:
            del self.agents[agent.sip_username]
        for ccid in list(agent.calls.values()):
            self.carrier.agent_hangup(ccid)

    def invite(self, agent: FakeAgent, call_id: str, destination: str, headers: list[dict[str, str]]) -> SimLeg:
        leg = self.carrier.park_agent_call(agent, call_id, destination, headers)
        agent.calls[call_id] = leg.call_control_id
        return leg

    def notify(self, leg: SimLeg, state: str, *, cause: str | None = None, remote: str | None = None) -> None:
        """Tell the agent's softphone its call changed (no-op for socketless agents)."""
        agent = self.agents.get(leg.agent or "")
        if agent is None or leg.agent_call_id is None:
            return
        if state == "hangup":
            agent.calls.pop(leg.agent_call_id, None)
        if agent.socket is None or agent.socket.closed:
            return
        frame = {"type": "call", "call_id": leg.agent_call_id, "call_control_id": leg.call_control_id,
                 "direction": "outbound" if leg.direction == "incoming" else "inbound", "state": state,
                 "remote": remote or (leg.to if leg.direction == "incoming" else leg.from_)}  # fmt: skip
        if cause:
            frame["cause"] = cause
        self._send(agent.socket, frame)

    def _send(self, socket: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        task = asyncio.create_task(socket.send_json(frame))
        self.carrier.track(task)

    # -- websocket -------------------------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=30, max_msg_size=MAX_FRAME_BYTES)
        await socket.prepare(request)
        agent: FakeAgent | None = None
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(message.data)
                    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                        raise ValueError("a frame is a JSON object with a string 'type'")
                    agent = self._frame(socket, agent, frame)
                except (ValueError, TypeError, LookupError, RecursionError) as exc:
                    await socket.send_json({"type": "error", "code": type(exc).__name__, "message": str(exc)})
        finally:
            if agent is not None:
                self.unregister(agent)
        return socket

    def _frame(self, socket: web.WebSocketResponse, agent: FakeAgent | None, frame: dict[str, Any]) -> FakeAgent:
        kind = frame["type"]
        if kind == "login":
            token = frame.get("login_token")
            if not isinstance(token, str):
                raise ValueError("login needs a login_token")
            try:
                claims = jwt.decode(token, self.carrier.credentials.token_secret, algorithms=["HS256"])
            except jwt.PyJWTError as exc:
                raise ValueError(f"login token refused: {exc}") from None
            if agent is not None:
                self.unregister(agent)
            agent = self.register(str(claims.get("sub")), auto_answer=frame.get("auto_answer") is True, socket=socket)
            self._send(socket, {"type": "ready", "sip_username": agent.sip_username})
            return agent
        if agent is None:
            raise ValueError("log in first")
        call_id = frame.get("call_id")
        if kind == "invite":
            destination = frame.get("destination")
            if not isinstance(destination, str) or not destination:
                raise ValueError("invite needs a destination")
            call_id = call_id if isinstance(call_id, str) and 0 < len(call_id) <= 64 else str(uuid.uuid4())
            if call_id in agent.calls:
                raise ValueError(f"call {call_id!r} exists already")
            if len(agent.calls) >= MAX_CALLS_PER_AGENT:
                raise ValueError(f"a softphone holds at most {MAX_CALLS_PER_AGENT} calls")
            headers = frame.get("custom_headers") or []
            if not isinstance(headers, list) or not all(isinstance(h, dict) for h in headers):
                raise ValueError("custom_headers is a list of {name, value}")
            self.invite(agent, call_id, destination, headers)
            return agent
        if kind in ("answer", "hangup", "dtmf"):
            ccid = agent.calls.get(call_id) if isinstance(call_id, str) else None
            if ccid is None:
                raise LookupError(f"no call {call_id!r}")
            if kind == "answer":
                self.carrier.agent_answer(ccid)
            elif kind == "hangup":
                self.carrier.agent_hangup(ccid)
            else:
                digits = frame.get("digits")
                if not isinstance(digits, str) or not digits or not set(digits) <= set("0123456789*#ABCD"):
                    raise ValueError("dtmf needs digits (0-9, *, #, A-D)")
                self.carrier.agent_dtmf(ccid, digits)
            return agent
        if kind in ("hold", "unhold", "mute", "unmute"):
            return agent  # media stays in the browser; the carrier sees nothing
        raise ValueError(f"unknown frame type {kind!r}")

    # -- HTTP controls ---------------------------------------------------------------------------------------

    async def list_agents(self, _request: web.Request) -> web.Response:
        agents = [{"sip_username": a.sip_username, "calls": a.calls, "socket": a.socket is not None}
                  for a in self.agents.values()]  # fmt: skip
        return web.json_response({"agents": agents})

    async def command(self, request: web.Request) -> web.Response:
        sip_username, command = request.match_info["sip_username"], request.match_info["command"]
        body = await json_object(request)
        if body is None:
            return not_an_object()
        if command == "register":
            try:
                self.register(sip_username, auto_answer=True, socket=None)
            except LookupError as exc:
                return error(404, "10005", "Resource not found", str(exc))
            return web.json_response({"sip_username": sip_username})
        agent = self.agents.get(sip_username)
        if agent is None:
            return error(404, "10005", "Resource not found", f"{sip_username} is not registered")
        if command == "unregister":
            self.unregister(agent)
            return web.json_response({"sip_username": sip_username})
        if command == "call":
            destination = body.get("destination", "+15550000000")
            if not isinstance(destination, str):
                return error(422, "10015", "Invalid parameter", "destination must be a string", "/destination")
            if len(agent.calls) >= MAX_CALLS_PER_AGENT:
                return error(422, "10015", "Invalid parameter", f"at most {MAX_CALLS_PER_AGENT} calls a softphone")
            leg = self.invite(agent, str(uuid.uuid4()), destination, [])
            return web.json_response({"call_id": leg.agent_call_id, "call_control_id": leg.call_control_id})
        call_id = body.get("call_id")
        ccid = agent.calls.get(call_id) if isinstance(call_id, str) else None
        if ccid is None and len(agent.calls) == 1 and call_id is None:
            ccid = next(iter(agent.calls.values()))  # the agent's only call
        if ccid is None or command not in ("answer", "hangup"):
            return error(404, "10005", "Resource not found", "no such call or command")
        if command == "answer":
            self.carrier.agent_answer(ccid)
        else:
            self.carrier.agent_hangup(ccid)
        return web.json_response({"call_control_id": ccid})
