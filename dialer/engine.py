"""The dialer engine: a runner per running (or paused) phone campaign, the agents logged in on this node, the
carrier's events routed to their calls, and recovery after a crash.

At start, before any runner dials, ``dialer.recovery`` settles what a previous process left behind. A carrier
event for an attempt no runner holds is an orphan (a call the crash left behind, or one dialled just before it)
and is hung up.

Then it watches the campaigns table (every WATCH_S): a campaign that starts running gets a runner; one that
is paused or completed stops dialling (its live calls finish normally); an edited one is reconfigured.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from crm.compliance.feed import SuppressionFeed
from dialer import attempts, campaign_config, connections, hopper, recovery
from dialer.agent_sessions import AgentSession, Console
from dialer.agent_state import Agent, AgentEvent, AgentState, Change, IllegalTransition
from dialer.agent_state_log import AgentStateLog
from dialer.calls import Call, Callback
from dialer.carrier import Carrier, CarrierError
from dialer.carriers import Carriers
from dialer.dialer_metrics import DialerMetrics
from dialer.errors import Refused
from dialer.leg_state import Leg, LegKind, LegState
from dialer.runner import CampaignRunner
from dialer.webhook_ingress import Legs

log = structlog.get_logger(__name__)

WATCH_S = 1.0
#: An agent whose console is gone this long (and who is not on a call) is logged out.
RECONNECT_GRACE_S = 120.0
LAG_PROBE_S = 0.1


class Engine:
    def __init__(
        self,
        pool: asyncpg.Pool,
        carriers: Carriers,
        feed: SuppressionFeed,
        metrics: DialerMetrics,
        legs: Legs,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.carriers = carriers
        self.feed = feed
        self.metrics = metrics
        self.legs = legs
        self.clock = clock
        self.runners: dict[int, CampaignRunner] = {}
        self.sessions: dict[int, AgentSession] = {}  # user id -> session
        self._by_sip: dict[str, int] = {}  # softphone sip username -> user id
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._locks: dict[int, asyncio.Lock] = {}  # per agent: join and leave one at a time
        self._lag: asyncio.Task[None] | None = None
        self._hung_up: set[str] = set()
        self.state_log = AgentStateLog(pool)
        #: Called on every change of an agent's state or call (the supervisor dashboards listen here).
        self.watchers: list[Callable[[AgentSession], None]] = []
        metrics.agents.source = self._agents_by_state
        metrics.agents.waiting = lambda: [(cid, len(r.waiting)) for cid, r in self.runners.items()]

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.recover()
        await self._watch_once()
        self._watcher = asyncio.create_task(self._watch(), name="dialer-watch")
        self._lag = asyncio.create_task(self._measure_lag(), name="event-loop-lag")
        self.state_log.start()

    async def close(self) -> None:
        for task in (self._watcher, self._lag):
            if task is not None:
                task.cancel()
        for runner in list(self.runners.values()):
            await runner.stop()
        for session in list(self.sessions.values()):
            if session.console is not None:
                session.console.close()
        await self.state_log.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dialer_task_failed", task=task.get_name(), error=repr(task.exception()))

    async def _carrier(self, connection_id: int | None = None) -> Carrier:
        if connection_id is None:
            connection = await connections.default_connection(self.pool)
        else:
            connection = await connections.get(self.pool, connection_id)
        return await self.carriers.for_connection(connection)

    # -- recovery --------------------------------------------------------------------------------------------

    async def recover(self) -> None:
        await recovery.recover(self.pool, self._carrier, self._hangup_leg)

    # -- campaigns -------------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                await self._watch_once()
                self._sweep_disconnected()
            except Exception:
                log.exception("dialer_watch_failed")

    async def _watch_once(self) -> None:
        rows = await self.pool.fetch(
            """SELECT id, status::text, updated_at FROM campaigns
                WHERE channel = 'phone' AND deleted_at IS NULL AND status IN ('running', 'paused')"""
        )
        seen = set()
        for row in rows:
            cid = row["id"]
            seen.add(cid)
            runner = self.runners.get(cid)
            if runner is not None and runner.config.updated_at == row["updated_at"]:
                continue
            try:
                config = await campaign_config.load(self.pool, cid)
            except Exception as exc:
                if runner is None or runner.error != str(exc):
                    log.warning("campaign_not_runnable", campaign=cid, error=str(exc))
                if runner is not None:
                    runner.error = str(exc)
                    runner.active = False
                continue
            if runner is None:
                runner = CampaignRunner(
                    config, pool=self.pool, carrier=self._carrier,
                    feed=self.feed, metrics=self.metrics, agents=self.agents_of, spawn=self.spawn,
                    leg_of=self.legs.get, clock=self.clock,
                )  # fmt: skip
                await runner.start()
                self.runners[cid] = runner
                log.info("campaign_runner_started", campaign=cid, mode=config.dial_mode, status=config.status)
            else:
                runner.reconfigure(config)
        for cid, runner in list(self.runners.items()):
            if cid in seen:
                continue
            if runner.active:  # completed, archived or deleted: no more dials; calls and agents finish normally
                runner.active = False
                self.spawn(runner.give_back_hopper(), f"campaign-{cid}-return-hopper")
                log.info("campaign_runner_stopped", campaign=cid)
            if not runner.calls and not self.agents_of(cid):
                await runner.stop()
                del self.runners[cid]

    # -- agents ----------------------------------------------------------------------------------------------

    def agents_of(self, campaign_id: int) -> list[AgentSession]:
        return [s for s in self.sessions.values() if s.campaign_id == campaign_id]

    def _agents_by_state(self) -> list[tuple[int, str, int]]:
        counts = Counter((s.campaign_id, s.agent.state.value) for s in self.sessions.values())
        return [(cid, state, n) for (cid, state), n in counts.items()]

    async def campaigns_for(self, user_id: int) -> list[dict[str, Any]]:
        """Campaigns an agent may join now."""
        return [{"id": r.config.id, "name": r.config.name, "status": r.config.status, "mode": r.config.dial_mode}
                for r in self.runners.values()]  # fmt: skip

    async def join(self, user_id: int, campaign_id: int, console: Console) -> AgentSession:
        async with self._lock(user_id):  # two tabs joining at once: one session
            return await self._join(user_id, campaign_id, console)

    def _lock(self, user_id: int) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def _join(self, user_id: int, campaign_id: int, console: Console) -> AgentSession:
        runner = self.runners.get(campaign_id)
        if runner is None:
            raise Refused("not_running", f"campaign {campaign_id} is not running")
        session = self.sessions.get(user_id)
        if session is not None:
            if session.campaign_id == campaign_id:
                self.attach(session, console)
                return session
            busy = (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP)
            if session.call is not None or session.agent.owes_disposition or session.agent.state in busy:
                raise Refused("busy", "finish your call in the other campaign first")
            await self._leave(session, reason="switched_campaign")
        sip = await self.pool.fetchval(
            "SELECT sip_username FROM telephony_credentials WHERE user_id = $1 AND revoked_at IS NULL "
            "ORDER BY id DESC LIMIT 1",
            user_id,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """UPDATE agent_sessions SET state = 'offline', pause_reason = NULL, ended_at = now(),
                          end_reason = 'replaced', updated_at = now() WHERE user_id = $1 AND ended_at IS NULL""",
                user_id,
            )
            session_id = await conn.fetchval(
                """INSERT INTO agent_sessions (user_id, campaign_id, state, pause_reason, last_heartbeat_at)
                   VALUES ($1, $2, 'paused', 'logged_in', now()) RETURNING id""",
                user_id,
                campaign_id,
            )
        owed = [row["id"] for row in await attempts.owed(self.pool, user_id, campaign_id)]
        session = AgentSession(user_id, campaign_id, session_id, Agent(user_id), sip_username=sip, owed=owed)
        session.on_change = self._on_agent_change
        self.sessions[user_id] = session
        if sip:
            self._by_sip[sip] = user_id
        self._apply(session, AgentEvent.LOGIN)
        session.agent.owes_disposition = bool(owed)
        self.attach(session, console)
        return session

    def attach(self, session: AgentSession, console: Console) -> None:
        if session.console is not None and session.console is not console:
            session.console.send({"type": "error", "id": None, "code": "replaced",
                                  "message": "signed in from another console"})  # fmt: skip
            session.console.close()
        session.console = console
        session.disconnected_at = None
        self._send_state(session)
        runner = self.runners.get(session.campaign_id)
        if runner is not None and isinstance(session.call, Call):
            session.send(runner.screen_pop(session.call, session))
            session.send(runner.call_frame(session.call, session.call.state))
            self.spawn(runner.send_history(session.call, session), f"history-{session.call.attempt_id}")
        catalogue = runner.catalogue() if runner is not None else {}
        for attempt_id in session.owed:
            session.send({"type": "owed", "attempt_id": attempt_id, **catalogue})
        if runner is not None and session.offer is not None:
            entry = session.offer
            session.send({"type": "preview", "contact": entry.contact, "account": entry.account,
                          "contact_id": entry.contact_id, "script": ""})  # fmt: skip
        session.send({"type": "softphone", "connected": session.leg is not None, "sip_username": session.sip_username})
        self._notify(session)

    def detach(self, session: AgentSession, console: Console) -> None:
        """The console went away: a ready agent is paused (no call may reach an empty chair)."""
        if session.console is not console:
            return
        session.console = None
        session.disconnected_at = self.clock()
        if session.agent.state in (AgentState.READY, AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP):
            self._apply(session, AgentEvent.PAUSE, "disconnected")  # during a call: taken when it is done
        else:
            self._notify(session)  # the dashboards show the console away

    def _sweep_disconnected(self) -> None:
        now = self.clock()
        for session in list(self.sessions.values()):
            gone = session.disconnected_at is not None and now - session.disconnected_at > RECONNECT_GRACE_S
            talking = isinstance(session.call, Call) and session.call.state != "ended"
            busy = talking or session.agent.state in (AgentState.RESERVED, AgentState.ON_CALL)
            if gone and not busy and not session.leaving:
                # A conversation over and not dispositioned stays owed: offered again when the agent rejoins.
                self.spawn(self._sweep_out(session), f"logout-{session.user_id}")

    async def _sweep_out(self, session: AgentSession) -> None:
        async with self._lock(session.user_id):
            if self.sessions.get(session.user_id) is session and session.disconnected_at is not None:
                await self._leave(session, reason="connection_lost", force=True)

    async def leave(self, session: AgentSession, *, reason: str = "logout", force: bool = False) -> None:
        async with self._lock(session.user_id):
            await self._leave(session, reason=reason, force=force)

    async def _leave(self, session: AgentSession, *, reason: str = "logout", force: bool = False) -> None:
        """Everything in memory first (no await can leave a half-gone session behind), then the rows."""
        if not force:
            if session.call is not None or session.agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
                raise Refused("on_call", "finish the call first")
            runner = self.runners.get(session.campaign_id)
            if runner is not None and runner.pause_must_wait(session):
                raise Refused("calls_ringing", "calls dialled for you are ringing: pause first (taken once they are "
                                               "answered or given up), then leave")  # fmt: skip
            self._apply(session, AgentEvent.LOGOUT)
        else:
            self._apply(session, AgentEvent.FORCE_LOGOUT, reason)
        session.leaving = True
        if self.sessions.get(session.user_id) is session:
            del self.sessions[session.user_id]
        if session.sip_username:
            self._by_sip.pop(session.sip_username, None)
        leg, session.leg = session.leg, None
        if leg is not None:
            self.spawn(self._hangup_leg(leg), f"agent-leg-{session.user_id}")
        if session.offer is not None:
            runner = self.runners.get(session.campaign_id)
            entry, session.offer = session.offer, None
            if runner is not None:
                back: list[tuple[int, str, datetime | None, str | None]] = [(entry.contact_id, entry.was, None, None)]
                self.spawn(hopper.give_back(self.pool, runner.config.id, back), f"offer-back-{entry.contact_id}")
        await self.pool.execute(
            """UPDATE agent_sessions SET state = 'offline', pause_reason = NULL, ended_at = now(), end_reason = $2,
                      parked_call_control_id = NULL, state_changed_at = now(), updated_at = now() WHERE id = $1""",
            session.session_id,
            reason,
        )
        self.state_log.forget(session.session_id)
        if session.console is not None:
            self._send_state(session)

    async def _hangup_leg(self, ccid: str) -> None:
        try:
            carrier = await self._carrier()
            await carrier.hangup(ccid)
        except Exception as exc:
            log.warning("agent_leg_hangup_failed", leg=ccid, error=str(exc))

    def ready(self, session: AgentSession) -> None:
        if session.leg is None:
            raise Refused("no_softphone", "connect your softphone first: no call can reach you without it")
        self._apply(session, AgentEvent.READY)
        runner = self.runners.get(session.campaign_id)
        if runner is not None:
            runner.agent_free()

    def pause(self, session: AgentSession, reason: str, *, force: bool = False) -> None:
        """The agent's pause: at once, or after the call in progress; while calls dialled count on this agent (a
        progressive campaign's), held until they are answered or given up - a person answering with nobody free
        would be abandoned. ``force`` (a supervisor's) pauses a ready agent at once."""
        runner = self.runners.get(session.campaign_id)
        if not force and runner is not None and runner.pause_must_wait(session):
            session.agent.hold_pause(self.clock(), reason)
            self._on_agent_change(session)
            return
        self._apply(session, AgentEvent.PAUSE, reason)

    async def dispose(self, session: AgentSession, *, attempt_id: int, code: str, answers: dict[str, Any],
                      notes: str, callback: Callback | None) -> attempts.Saved:  # fmt: skip
        runner = self.runners.get(session.campaign_id)
        if runner is None:
            raise Refused("not_running", "the campaign is not loaded on this node")
        async with session.disposing:  # one at a time per agent: a resend waits for the first and is a repeat
            saved = await runner.dispose(session, attempt_id=attempt_id, code=code, answers=answers, notes=notes,
                                         callback=callback)  # fmt: skip
        if not saved.repeated:
            self.metrics.dispositions.labels(str(session.campaign_id), code).inc()
        return saved

    def hang_up(self, session: AgentSession, attempt_id: int) -> None:
        call = session.call
        runner = self.runners.get(session.campaign_id)
        if not isinstance(call, Call) or call.attempt_id != attempt_id or runner is None:
            raise Refused("not_your_call", f"call attempt {attempt_id} is not your current call")
        runner.hang_up(call)

    def preview_accept(self, session: AgentSession, contact_id: int) -> None:
        runner = self.runners.get(session.campaign_id)
        if runner is None or runner.config.dial_mode != "preview":
            raise Refused("not_preview", "this campaign does not dial in preview mode")
        runner.preview_accept(session, contact_id)

    async def preview_skip(self, session: AgentSession, contact_id: int) -> None:
        runner = self.runners.get(session.campaign_id)
        if runner is None or runner.config.dial_mode != "preview":
            raise Refused("not_preview", "this campaign does not dial in preview mode")
        await runner.preview_skip(session, contact_id)

    async def schedule_callback(self, session: AgentSession, contact_id: int, callback: Callback) -> int:
        """A callback outside a disposition (the contact asked again later): one scheduled per contact."""
        now = datetime.now(UTC)
        if not now < callback.due_at < now + timedelta(days=366):
            raise Refused("bad_callback", "a callback is due in the future, within a year")
        current = session.call.entry.contact_id if isinstance(session.call, Call) else None
        if contact_id != current and not await self.pool.fetchval(
            "SELECT 1 FROM call_attempts WHERE id = ANY($1::bigint[]) AND contact_id = $2", session.owed, contact_id
        ):
            raise Refused("not_your_contact", "schedule callbacks for the contact of your current or owed call")
        async with self.pool.acquire() as conn, conn.transaction():
            member = await conn.fetchval(
                "SELECT status::text FROM campaign_members WHERE campaign_id = $1 AND contact_id = $2 FOR UPDATE",
                session.campaign_id,
                contact_id,
            )
            if member is None:
                raise Refused("not_a_member", f"contact {contact_id} is not in this campaign")
            callback_id: int = await conn.fetchval(
                """INSERT INTO callbacks (campaign_id, contact_id, kind, assigned_user_id, due_at, notes, created_by)
                   VALUES ($1, $2, $3::callback_kind, $4, $5, $6, $7)
                   ON CONFLICT (campaign_id, contact_id) WHERE status = 'scheduled'
                   DO UPDATE SET due_at = EXCLUDED.due_at, kind = EXCLUDED.kind,
                                 assigned_user_id = EXCLUDED.assigned_user_id, notes = EXCLUDED.notes,
                                 updated_at = now()
                   RETURNING id""",
                session.campaign_id, contact_id, "personal" if callback.personal else "campaign",
                session.user_id if callback.personal else None, callback.due_at, callback.notes, session.user_id,
            )  # fmt: skip
            if member in ("new", "scheduled", "callback"):
                await conn.execute(
                    """UPDATE campaign_members SET status = 'callback', next_attempt_at = $3, updated_at = now()
                        WHERE campaign_id = $1 AND contact_id = $2""",
                    session.campaign_id,
                    contact_id,
                    callback.due_at,
                )
        return callback_id

    def _apply(self, session: AgentSession, event: AgentEvent, reason: str | None = None) -> Change:
        try:
            change = session.agent.apply(event, self.clock(), reason)
        except IllegalTransition as exc:
            raise Refused("illegal_state", str(exc)) from None
        self._on_agent_change(session)
        return change

    def _notify(self, session: AgentSession) -> None:
        """Tell the watchers (dashboards) the session changed; one that fails must not break routing."""
        for watcher in self.watchers:
            try:
                watcher(session)
            except Exception:
                log.exception("agent_watcher_failed", user=session.user_id)

    def _on_agent_change(self, session: AgentSession) -> None:
        agent = session.agent
        self.state_log.append((session.session_id, session.user_id, session.campaign_id, agent.state.value,
                              agent.pause_reason, datetime.now(UTC),
                              session.call.attempt_id if isinstance(session.call, Call) else None))  # fmt: skip
        self._send_state(session)
        self._notify(session)

    def _send_state(self, session: AgentSession) -> None:
        agent = session.agent
        since = datetime.now(UTC).timestamp() - (self.clock() - agent.since)
        session.send({"type": "state", "state": agent.state.value, "since": datetime.fromtimestamp(since, UTC)
                      .isoformat(), "reason": agent.pause_reason, "campaign_id": session.campaign_id,
                      "owes_disposition": agent.owes_disposition, "pending_pause": agent.pending_pause})  # fmt: skip

    # -- carrier events --------------------------------------------------------------------------------------

    def on_event(self, leg: Leg, event_type: str, payload: dict[str, Any]) -> None:
        """Called by the webhook ingress after an event changed a leg (synchronously: routing waits for nothing)."""
        if leg.kind is LegKind.AGENT:
            self._agent_leg_event(leg, event_type, payload)
            return
        ids = attempts.parse_client_state(payload.get("client_state"))
        if ids is None:
            return
        runner = self.runners.get(ids[0])
        call = runner.calls.get(ids[1]) if runner is not None else None
        if call is None or runner is None:
            if leg.state is LegState.ENDED:
                self._hung_up.discard(leg.call_control_id)
            elif leg.call_control_id not in self._hung_up:
                self._hung_up.add(leg.call_control_id)
                log.warning("orphan_call_hung_up", attempt=ids[1], leg=leg.call_control_id)
                self.spawn(self._hangup_leg(leg.call_control_id), f"orphan-{ids[1]}")
            return
        runner.on_event(call, leg, event_type, payload)

    def _agent_leg_event(self, leg: Leg, event_type: str, payload: dict[str, Any]) -> None:
        ccid = leg.call_control_id
        if event_type == "call.initiated" and payload.get("direction") == "incoming":
            self.spawn(self._adopt_agent_leg(ccid, payload.get("from")), f"agent-leg-{ccid[:12]}")
        elif event_type == "call.hangup":
            for session in self.sessions.values():
                if session.leg == ccid:
                    session.leg = None
                    session.send({"type": "softphone", "connected": False, "sip_username": session.sip_username})
                    if session.agent.state is AgentState.READY:
                        self._apply(session, AgentEvent.PAUSE, "softphone_lost")
                    else:
                        self._notify(session)

    async def _adopt_agent_leg(self, ccid: str, caller: object) -> None:
        """An agent's softphone called in (parked): answer it and keep it as the agent's line for the shift."""
        sip = _sip_user(caller)
        user_id = self._by_sip.get(sip or "")
        if user_id is None and sip:
            user_id = await self.pool.fetchval(
                "SELECT user_id FROM telephony_credentials WHERE sip_username = $1 AND revoked_at IS NULL", sip
            )
            if user_id is not None:
                self._by_sip[sip] = user_id
        session = self.sessions.get(user_id) if user_id is not None else None
        carrier = await self._carrier()
        if session is None:
            log.info("agent_leg_refused", leg=ccid, sip=sip, why="no agent session for this softphone")
            await carrier.hangup(ccid)
            return
        try:
            await carrier.answer(ccid, command_id=f"answer-{ccid[-24:]}")
        except CarrierError as exc:
            log.warning("agent_leg_answer_failed", leg=ccid, error=str(exc))
            return
        if self.sessions.get(session.user_id) is not session:  # the agent left while the answer was on its way
            await self._hangup_leg(ccid)
            return
        old, session.leg = session.leg, ccid
        if old is not None and old != ccid and not isinstance(session.call, Call):
            self.spawn(self._hangup_leg(old), f"agent-leg-old-{session.user_id}")
        session.send({"type": "softphone", "connected": True, "sip_username": session.sip_username})
        self._notify(session)
        await self.pool.execute(
            """UPDATE agent_sessions SET parked_call_control_id = $2, updated_at = now()
                WHERE id = $1 AND ended_at IS NULL""",
            session.session_id,
            ccid,
        )
        runner = self.runners.get(session.campaign_id)
        if runner is not None:
            runner.agent_free()

    # -- health ----------------------------------------------------------------------------------------------

    async def _measure_lag(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_S)
            self.metrics.loop_lag.observe(max(0.0, time.perf_counter() - started - LAG_PROBE_S))


def _sip_user(address: object) -> str | None:
    if not isinstance(address, str) or not address.startswith("sip:"):
        return None
    user = address[4:].split("@", 1)[0]
    return user or None
