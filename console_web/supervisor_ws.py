"""The supervisor dashboard's websocket (``/ws/supervisor``, protocol in ``console_web.supervisor_protocol``).

One hub per daemon pushes to every dashboard: agents that changed go out ``COALESCE_S`` after the first change
(the changes of those milliseconds together), as one frame serialised once for all dashboards; every
campaign's figures go out once a second. A dashboard that
stops reading is cut off (it reloads and gets a fresh snapshot) rather than allowed to hold memory.
Supervisors may force an agent to pause or log out; both are written to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiohttp import WSMsgType, web

from console_web import supervisor_protocol as protocol
from console_web.agent_ws import SUBPROTOCOL, Unauthorized, token_of
from console_web.protocol import FrameError
from crm import audit
from dialer.agent_sessions import AgentSession
from dialer.agent_state import AgentState
from dialer.calls import Call
from dialer.engine import Engine
from dialer.errors import Refused
from dialer.live_stats import Point
from dialer.runner import CampaignRunner

log = structlog.get_logger(__name__)

#: An agent's change reaches the dashboards this long after it (plus the network), with any others made meanwhile.
COALESCE_S = 0.05
CAMPAIGNS_EVERY_S = 1.0
#: A push waits at most this for agents' names from PostgreSQL (then goes with their ids).
NAMES_TIMEOUT_S = 0.2
#: Frames queued for a dashboard that is not reading; past this it is disconnected.
MAX_QUEUED = 64
HEARTBEAT_S = 20.0

#: token -> user id, raising ``Unauthorized`` (the composition root supplies it: the API's own check).
Authenticate = Callable[[str], Awaitable[int]]
RECHECK_S = 60.0


@dataclass(eq=False)
class Dashboard:
    user_id: int
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def send(self, text: str) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUED:
            self.close()
            return
        self.queue.put_nowait(text)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class SupervisorHub:
    def __init__(self, engine: Engine, pool: asyncpg.Pool, *, wall: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.pool = pool
        self.wall = wall
        self.dashboards: set[Dashboard] = set()
        self._dirty: set[int] = set()
        self._names: dict[int, str] = {}
        self._points_sent: dict[int, float] = {}  # campaign -> the last chart point's time already pushed
        self._task: asyncio.Task[None] | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._pushing: asyncio.Task[None] | None = None
        engine.watchers.append(self._agent_changed)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="supervisor-hub")

    async def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        if self._pushing is not None:
            self._pushing.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for dashboard in list(self.dashboards):
            dashboard.close()

    def _agent_changed(self, session: AgentSession) -> None:
        if not self.dashboards:
            return  # nobody watching: a dashboard that connects starts from a snapshot
        self._dirty.add(session.user_id)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(COALESCE_S, self._start_push)

    def _start_push(self) -> None:
        self._flush = None
        if self._pushing is not None and not self._pushing.done():
            # One push at a time (frames stay in order); the one running takes what is dirty when it finishes.
            self._pushing.add_done_callback(lambda _: self._start_push() if self._dirty else None)
            return
        self._pushing = asyncio.create_task(self._push_agents(), name="supervisor-push")

    # -- frames ----------------------------------------------------------------------------------------------

    async def snapshot(self) -> str:
        await self._learn_names(self.engine.sessions)
        campaigns = [self._campaign(runner) for runner in self.engine.runners.values()]
        series = {str(r.config.id): [_point(p) for p in r.live.points] for r in self.engine.runners.values()}
        return protocol.dumps({"type": "snapshot", "version": protocol.VERSION, "now": self._now_ms(),
                               "agents": [self._agent(s) for s in self.engine.sessions.values()],
                               "campaigns": campaigns, "series": series})  # fmt: skip

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CAMPAIGNS_EVERY_S)
            try:
                if self.dashboards:
                    self._broadcast(self._campaigns_frame())
            except Exception:  # a bug in one push must not stop the dashboards
                log.exception("supervisor_push_failed")

    async def _push_agents(self) -> None:
        try:
            await self._push_dirty()
        except Exception:
            log.exception("supervisor_push_failed")

    async def _push_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        sessions = {uid: s for uid in dirty if (s := self.engine.sessions.get(uid)) is not None}
        await self._learn_names(sessions)
        gone = sorted(uid for uid in dirty if uid not in sessions)
        agents = [self._agent(s) for s in sessions.values()]
        self._broadcast(protocol.dumps({"type": "agents", "now": self._now_ms(), "agents": agents, "gone": gone}))

    def _campaigns_frame(self) -> str:
        campaigns = []
        for runner in self.engine.runners.values():
            row = self._campaign(runner)
            sent = self._points_sent.get(runner.config.id, 0.0)
            row["points"] = [_point(p) for p in runner.live.points if p.at > sent]
            if runner.live.points:
                self._points_sent[runner.config.id] = runner.live.points[-1].at
            campaigns.append(row)
        return protocol.dumps({"type": "campaigns", "now": self._now_ms(), "campaigns": campaigns})

    def _broadcast(self, text: str) -> None:
        for dashboard in list(self.dashboards):
            dashboard.send(text)

    def _now_ms(self) -> int:
        return round(self.wall() * 1000)

    def _epoch_ms(self, monotonic: float) -> int:
        return round((self.wall() - (self.engine.clock() - monotonic)) * 1000)

    def _agent(self, session: AgentSession) -> dict[str, Any]:
        agent = session.agent
        call = session.call if isinstance(session.call, Call) else None
        contact = call.entry.contact if call is not None else {}
        return {
            "user_id": session.user_id,
            "name": self._names.get(session.user_id, f"user {session.user_id}"),
            "campaign_id": session.campaign_id,
            "state": agent.state.value,
            "reason": agent.pause_reason,
            "since": self._epoch_ms(agent.since),
            "owes": agent.owes_disposition,
            "pending_pause": agent.pending_pause,
            "softphone": session.leg is not None,
            "online": session.console is not None and not session.console.closed,
            "call": None if call is None else {
                "attempt_id": call.attempt_id,
                "contact": " ".join(filter(None, (contact.get("first_name"), contact.get("last_name")))) or None,
                "account": call.entry.account.get("name"),
                "since": self._epoch_ms(call.bridged) if call.bridged is not None else None,
            },
        }  # fmt: skip

    def _campaign(self, runner: CampaignRunner) -> dict[str, Any]:
        config = runner.config
        now = self.engine.clock()
        today = datetime.now(UTC).date().toordinal()
        by_state: dict[str, int] = {}
        for session in self.engine.agents_of(config.id):
            by_state[session.agent.state.value] = by_state.get(session.agent.state.value, 0) + 1
        ringing = talking = 0
        for call in runner.calls.values():
            if call.state == "dialing":
                ringing += 1
            elif call.state in ("reserved", "bridged"):
                talking += 1
        oldest = runner.waiting[0].answered if runner.waiting else None
        settled, abandoned = runner.live.today(today)
        figures = runner.live.figures(now)
        ledger = runner.ledger
        return {
            "id": config.id, "name": config.name, "mode": config.dial_mode, "status": config.status,
            "agents": by_state,
            "calls": {"ringing": ringing + runner.pending_dials, "waiting": len(runner.waiting), "talking": talking,
                      "oldest_wait_s": round(now - oldest, 1) if oldest is not None else None},
            "dial_level": round(runner.dial_level, 2),
            "abandon": {"today": abandoned / settled if settled else 0.0, "answers_today": settled,
                        "abandoned_today": abandoned, "us_30_day": ledger.us_rate(today),
                        "uk_day": ledger.uk_rate(today), "ceiling": config.pacing.max_abandon_rate,
                        "rule": config.pacing.abandon_rule},
            "connects_per_hour": round(figures.connects_per_hour, 1),
            "talk_min_per_agent_hour": round(figures.talk_min_per_agent_hour, 1),
            "average_handle_s": round(figures.average_handle_s, 1) if figures.average_handle_s is not None else None,
            "occupancy": figures.occupancy,
            "hopper": len(runner.hopper),
            "accounts_at_cap": len(runner.caps.at_cap()) if runner.caps.cap is not None else 0,
            "pacer": getattr(runner.pacer, "mode", config.dial_mode),
        }  # fmt: skip

    async def _learn_names(self, sessions: dict[int, AgentSession]) -> None:
        """Names of agents not seen before. The database slow or away: the push goes now with "user N", and the
        names come with a later push."""
        unknown = [uid for uid in sessions if uid not in self._names]
        if not unknown:
            return
        query = "SELECT id, display_name, email FROM users WHERE id = ANY($1::bigint[])"
        try:
            rows = await asyncio.wait_for(self.pool.fetch(query, unknown), NAMES_TIMEOUT_S)
        except Exception:
            log.warning("supervisor_names_not_loaded", users=len(unknown))
            return
        for row in rows:
            self._names[row["id"]] = row["display_name"] or row["email"]

    # -- commands --------------------------------------------------------------------------------------------

    async def command(self, supervisor: audit.Actor, frame: Any) -> dict[str, Any]:
        session = self.engine.sessions.get(frame.user_id)
        if session is None:
            raise Refused("not_logged_in", f"agent {frame.user_id} is not logged in to a campaign on this node")
        if frame.type == "force_pause":
            if session.agent.state is AgentState.PAUSED:
                raise Refused("already_paused", "the agent is paused already")
            self.engine.pause(session, frame.reason, force=True)
            action, detail = "agent.force_pause", {"reason": frame.reason, "campaign_id": session.campaign_id}
        else:
            # Reserved includes a preview being dialled with no call object yet: its answer needs this agent.
            if session.agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
                raise Refused("on_call", "the agent is on a call: pause them (it takes effect when the call ends)")
            await self.engine.leave(session, reason="supervisor", force=True)
            action, detail = "agent.force_logout", {"campaign_id": session.campaign_id}
        await self._audit(supervisor, action, frame.user_id, detail)
        return {"user_id": frame.user_id, "state": session.agent.state.value}

    async def _audit(self, supervisor: audit.Actor, action: str, user_id: int, detail: dict[str, Any]) -> None:
        """The action is done (in memory, at once); its audit row is retried a few times, and logged in full if
        it still cannot be written, so no supervisor action goes unrecorded."""
        for attempt in range(3):
            try:
                async with self.pool.acquire() as conn:
                    await audit.record(conn, supervisor, action, "user", user_id, detail)
                return
            except Exception:
                await asyncio.sleep(0.2 * (attempt + 1))
        log.error("audit_not_written", action=action, actor=supervisor.user_id, user=user_id, detail=detail)


HUB = web.AppKey("supervisor_hub", SupervisorHub)


async def serve(request: web.Request, authenticate: Authenticate,
                actor_for: Callable[[int], audit.Actor]) -> web.StreamResponse:  # fmt: skip
    """``actor_for``: the supervisor as the audit log names them (the user, this request's id and address)."""
    token = token_of(request)
    if not token:
        raise web.HTTPUnauthorized(text="a token is required: subprotocol bearer.<token> or ?access_token=")
    try:
        user_id = await authenticate(token)
    except Unauthorized as exc:
        raise web.HTTPUnauthorized(text=str(exc)) from None
    hub = request.app[HUB]
    socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=HEARTBEAT_S,
                                   max_msg_size=protocol.MAX_FRAME_BYTES + 1024)  # fmt: skip
    await socket.prepare(request)
    dashboard = Dashboard(user_id)
    actor = actor_for(user_id)
    writer = asyncio.create_task(_write(socket, dashboard), name=f"supervisor-ws-{user_id}")
    watch = asyncio.create_task(_recheck(dashboard, token, authenticate), name=f"supervisor-token-{user_id}")
    try:
        dashboard.send(await hub.snapshot())
        hub.dashboards.add(dashboard)  # no await since the snapshot was built: no change falls in between
        async for message in socket:
            if dashboard.closed:
                break
            if message.type is WSMsgType.TEXT:
                await _frame(hub, dashboard, actor, message.data)
            elif message.type is WSMsgType.ERROR:
                break
    finally:
        watch.cancel()
        hub.dashboards.discard(dashboard)
        dashboard.close()
        with contextlib.suppress(Exception):
            await writer
        await socket.close()
    return socket


async def _recheck(dashboard: Dashboard, token: str, authenticate: Authenticate) -> None:
    """A token revoked or expired, or an account deactivated or no longer a supervisor, ends the connection."""
    while True:
        await asyncio.sleep(RECHECK_S)
        try:
            await authenticate(token)
        except Unauthorized as exc:
            dashboard.send(protocol.dumps({"type": "error", "id": None, "code": "unauthorized",
                                           "message": f"signed out: {exc}"}))  # fmt: skip
            dashboard.close()
            return
        except Exception:  # the database is briefly away: keep the dashboard, check again later
            log.warning("supervisor_token_recheck_failed", user=dashboard.user_id)


async def _write(socket: web.WebSocketResponse, dashboard: Dashboard) -> None:
    while True:
        text = await dashboard.queue.get()
        if text is None:
            with contextlib.suppress(Exception):
                await socket.close()
            return
        try:
            await socket.send_str(text)
        except (ConnectionError, RuntimeError):
            dashboard.close()
            return


async def _frame(hub: SupervisorHub, dashboard: Dashboard, actor: audit.Actor, data: str) -> None:
    frame_id = None
    try:
        frame = protocol.parse(data)
        frame_id = frame.id
        if frame.type == "ping":
            dashboard.send(protocol.dumps({"type": "pong", "id": frame_id}))
            return
        answer = await hub.command(actor, frame)
        dashboard.send(protocol.dumps({"type": "ack", "id": frame_id, **answer}))
    except FrameError as exc:
        dashboard.send(protocol.dumps(exc.frame()))
    except Refused as exc:
        dashboard.send(protocol.dumps({"type": "error", "id": frame_id, "code": exc.code, "message": exc.message}))
    except Exception:
        log.exception("supervisor_frame_failed", user=dashboard.user_id)
        dashboard.send(protocol.dumps({"type": "error", "id": frame_id, "code": "internal",
                                       "message": "the daemon could not handle this frame; try again"}))  # fmt: skip


def _point(point: Point) -> list[float]:
    return [round(point.at * 1000), round(point.abandon_rate, 5), round(point.dial_level, 3), round(point.occupancy, 4)]
