"""One running campaign's live state: the hopper, the pacer's tick, the calls in flight, routing answers to
agents, abandons, machines, and the end of every call.

The runner is driven by three things: its tick (every TICK_S, and at once whenever something changes), the
carrier's events for its calls (from the webhook ingress, synchronously, through the engine), and its agents'
consoles (ready, pause, dispositions). Nothing on the routing path waits for PostgreSQL: a human answer picks
the longest-idle agent in memory and sends the bridge at once; the rows follow. Decisions about a contact's
future (dispositions, retries, callbacks, leads, suppressions) are committed before anyone is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from crm.campaigns.scripts import render
from crm.compliance.decision import Decision
from crm.compliance.feed import SuppressionFeed
from crm.compliance.rules import Reason
from dialer import attempts, held_pauses, hopper
from dialer.agent_sessions import AgentSession
from dialer.agent_state import AgentEvent, AgentState, IllegalTransition
from dialer.calls import Call, Callback
from dialer.campaign_config import CampaignConfig
from dialer.carrier import CallEnded, Carrier, CarrierError
from dialer.dialer_metrics import DialerMetrics
from dialer.disposition_check import check_disposition
from dialer.errors import Refused
from dialer.lead_caps import AccountCaps
from dialer.leg_state import GREETING_EVENTS, Leg, LegState
from dialer.live_stats import CampaignLive
from dialer.outcome_rules import system_outcome
from pacing.abandon import AbandonLedger
from pacing.api import CallOutcome, CallResult, LiveOutcome, Pacer, Snapshot
from pacing.pacers import PredictivePacer, PreviewPacer, ProgressivePacer

log = structlog.get_logger(__name__)

TICK_S = 0.25
#: A person answered and no agent is free: the abandon message starts this long after we learn of the answer
#: (the rule allows 2 s from the end of the greeting; the rest is margin for the carrier's delivery).
ABANDON_AFTER_S = 1.7
#: Longest wait for a message (abandon, voicemail) to finish before the line is hung up regardless.
MESSAGE_LIMIT_S = 30.0
#: A machine's greeting that never signals its end (no beep heard) is hung up on after this long.
BEEP_WAIT_S = 20.0
REFILL_EVERY_S = 2.0
#: A bridge this long after the answer reached us broke the 2-second rule: the call counts as abandoned.
LATE_BRIDGE_S = 2.0
CARRIER_TTL_S = 5.0
#: Agent time and the dashboard's chart points are sampled this often.
SAMPLE_S = 1.0


class CampaignRunner:
    def __init__(
        self,
        config: CampaignConfig,
        *,
        pool: asyncpg.Pool,
        carrier: Callable[[int | None], Coroutine[Any, Any, Carrier]],
        feed: SuppressionFeed,
        metrics: DialerMetrics,
        agents: Callable[[int], list[AgentSession]],
        spawn: Callable[[Coroutine[Any, Any, Any], str], None],
        leg_of: Callable[[str], Leg | None] = lambda ccid: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.pool = pool
        self._carrier = carrier
        self.feed = feed
        self.metrics = metrics
        self._agents = agents
        self._spawn = spawn
        self._leg_of = leg_of
        self.clock = clock
        self.active = config.status == "running"
        self.pacer: Pacer = self._pacer(config)
        self.caps = AccountCaps(config.cap_mode, config.cap)  # type: ignore[arg-type]
        self.hopper: deque[hopper.Entry] = deque()
        self.calls: dict[int, Call] = {}  # attempt id -> call, until it is finished
        self.waiting: deque[Call] = deque()  # people answered, no agent yet, oldest first
        self.pending_dials = 0
        self.live_numbers: Counter[int] = Counter()
        self.live_accounts: Counter[int] = Counter()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refilling = False
        self._last_refill = -1e9
        self._exhausted_at = -1e9  # the last refill found nobody to dial
        self.error: str | None = None
        self._carrier_cache: Carrier | None = None
        self._carrier_at = 0.0
        self.live = CampaignLive(clock())
        self._own_ledger = AbandonLedger()  # preview and progressive campaigns (a predictive pacer keeps its own)
        self.dial_level = 0.0
        self._sampled_at = -1e9

    @staticmethod
    def _pacer(config: CampaignConfig) -> Pacer:
        if config.dial_mode == "preview":
            return PreviewPacer()
        if config.dial_mode == "progressive":
            return ProgressivePacer()
        return PredictivePacer(config.pacing)

    async def carrier(self) -> Carrier:
        """The campaign's carrier adapter, looked up at most every CARRIER_TTL_S: the bridge on the routing path
        must not wait for the two queries a lookup costs (a changed key or dial limit counts within seconds)."""
        now = self.clock()
        if self._carrier_cache is None or now - self._carrier_at > CARRIER_TTL_S:
            self._carrier_cache = await self._carrier(self.config.connection.id)
            self._carrier_at = now
        return self._carrier_cache

    def label(self) -> str:
        return str(self.config.id)

    @property
    def ledger(self) -> AbandonLedger:
        """The abandon rates as the regulators count them (the predictive pacer's, which estimates the people
        among the unheard answers; otherwise the runner's own)."""
        return self.pacer.ledger if isinstance(self.pacer, PredictivePacer) else self._own_ledger

    def _settled(self, call: Call) -> None:
        """A person connected (in time or late: a late bridge is an abandon) or abandoned, counted at once for
        the dashboard (and, without a predictive pacer, in the runner's ledger: a machine an agent hears counts
        as a person there, as nobody can tell before the disposition)."""
        day = datetime.now(UTC).date().toordinal()
        self.live.settled(day, abandoned=call.abandoned)
        if not isinstance(self.pacer, PredictivePacer):
            self._own_ledger.record(day, connected=not call.abandoned)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._rebuild()
        self._task = asyncio.create_task(self._run(), name=f"campaign-{self.config.id}")

    async def _rebuild(self) -> None:
        """Counts that outlive a restart: lead caps and the abandon ledger, from PostgreSQL."""
        await self._rebuild_caps()
        await self._rebuild_ledger()

    async def _rebuild_caps(self) -> None:
        cid = self.config.id
        if self.caps.cap is not None:
            rows = await self.pool.fetch(
                """SELECT a.account_id,
                          count(*) FILTER (WHERE a.ended_at IS NULL) AS in_flight,
                          count(*) FILTER (WHERE a.ended_at IS NULL AND a.bridged_at IS NOT NULL) AS connected,
                          count(*) FILTER (WHERE a.ended_at IS NOT NULL AND a.bridged_at IS NOT NULL AND NOT EXISTS
                                (SELECT 1 FROM attempt_dispositions d WHERE d.call_attempt_id = a.id)) AS awaiting
                     FROM call_attempts a WHERE a.campaign_id = $1 AND a.account_id IS NOT NULL
                    GROUP BY a.account_id""",
                cid,
            )
            positive = await self.pool.fetch(
                """SELECT account_id, count(*) AS n FROM leads
                    WHERE campaign_id = $1 AND account_id IS NOT NULL AND status <> 'rejected' GROUP BY account_id""",
                cid,
            )
            self.caps.rebuild(
                in_flight={r["account_id"]: r["in_flight"] for r in rows if r["in_flight"]},
                connected={r["account_id"]: r["connected"] for r in rows if r["connected"]},
                awaiting={r["account_id"]: r["awaiting"] for r in rows if r["awaiting"]},
                positive={r["account_id"]: r["n"] for r in positive},
            )

    async def _rebuild_ledger(self) -> None:
        cid = self.config.id
        ledger, today = self.ledger, datetime.now(UTC).date().toordinal()
        rows = await self.pool.fetch(
            """SELECT (answered_at AT TIME ZONE 'UTC')::date AS day,
                      count(*) FILTER (WHERE bridged_at IS NOT NULL AND NOT abandoned) AS connected,
                      count(*) FILTER (WHERE abandoned) AS abandoned
                 FROM call_attempts
                WHERE campaign_id = $1 AND answered_at > now() - interval '31 days'
                  AND (bridged_at IS NOT NULL OR abandoned)
                GROUP BY 1""",
            cid,
        )
        for row in rows:
            day = row["day"].toordinal()
            if row["connected"]:
                ledger.record(day, connected=True, weight=float(row["connected"]))
            if row["abandoned"]:
                ledger.record(day, connected=False, weight=float(row["abandoned"]))
            if day == today:
                self.live.rebuild_today(today, settled=row["connected"] + row["abandoned"],
                                        abandoned=row["abandoned"])  # fmt: skip
        if isinstance(self.pacer, PredictivePacer):
            self.pacer.day = today

    def reconfigure(self, config: CampaignConfig) -> None:
        self._carrier_cache = None  # the connection may have changed
        pacing_changed = (config.dial_mode, config.pacing) != (self.config.dial_mode, self.config.pacing)
        self.config = config
        if pacing_changed:
            old, self.pacer = self.pacer, self._pacer(config)
            if isinstance(old, PredictivePacer) and isinstance(self.pacer, PredictivePacer):
                # What was learnt and counted stays: above all the abandon ledger the guard reads.
                self.pacer.answers, self.pacer.handles, self.pacer.people = old.answers, old.handles, old.people
                self.pacer.ledger, self.pacer.day, self.pacer.scale = old.ledger, old.day, old.scale
            elif isinstance(old, PredictivePacer):
                self._own_ledger = old.ledger  # the rates counted so far stay on the dashboard
            elif isinstance(self.pacer, PredictivePacer):
                self._spawn(self._rebuild_ledger(), f"campaign-{config.id}-rebuild")
        self.caps.mode, self.caps.cap = config.cap_mode, config.cap  # type: ignore[assignment]
        was, self.active = self.active, config.status == "running"
        if was and not self.active:
            self._spawn(self.give_back_hopper(), f"campaign-{config.id}-return-hopper")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"campaign-{config.id}")
        self.wake()

    async def stop(self) -> None:
        self.active = False
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._take_held_pauses(self._agents(self.config.id), self.clock(), everyone=True)  # no tick will
        await self.give_back_hopper()

    async def give_back_hopper(self) -> None:
        entries = list(self.hopper)
        self.hopper.clear()
        for entry in entries:
            self.caps.unqueue(entry.account_id)
        for session in self._agents(self.config.id):
            if session.offer is not None:
                entries.append(session.offer)
                session.offer = None
        if entries:
            await hopper.give_back(self.pool, self.config.id, [(e.contact_id, e.was, None, None) for e in entries])

    def wake(self) -> None:
        self._wake.set()

    # -- the tick --------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(TICK_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self._tick()
            except Exception:  # a bug in one tick must not stop the campaign: logged, and the next tick runs
                log.exception("campaign_tick_failed", campaign=self.config.id)

    def _tick(self) -> None:
        now = self.clock()
        sessions = self._agents(self.config.id)
        self._wrap_timeouts(sessions, now)
        self._serve_waiting(sessions)
        self._take_held_pauses(sessions, now)
        if now - self._sampled_at >= SAMPLE_S:
            self._sample(sessions, now)
        if not self.active:
            self.dial_level = 0.0
            return
        self._maybe_refill(now)
        if self.config.dial_mode == "preview":
            self._offer_previews(sessions)
            return
        snapshot = self.snapshot(sessions, now)
        wanted = self.pacer.dials(snapshot)
        self.dial_level = snapshot.lines_in_use / snapshot.agents_active if snapshot.agents_active else 0.0
        self.metrics.dial_level.labels(self.label()).set(self.dial_level)
        self._dial_from_hopper(wanted)

    def _sample(self, sessions: list[AgentSession], now: float) -> None:
        """Agent time and a chart point for the dashboard, about once a second."""
        self._sampled_at = now
        busy = sum(1 for s in sessions if s.agent.state in _BUSY)
        today = datetime.now(UTC).date().toordinal()
        self.live.agents(now, logged_in=len(sessions), busy=busy, dial_level=self.dial_level,
                         abandon_rate=self.ledger.rate(today, today)[0], wall=time.time())  # fmt: skip

    def _dial_from_hopper(self, wanted: int) -> None:
        """Dial up to ``wanted`` entries, each decided again now (the window may have closed, a DNC arrived, the
        number or another line of the account may be in a call): busy ones stay in the hopper for later."""
        if wanted <= 0:
            return
        now = datetime.now(UTC)
        busy: list[hopper.Entry] = []
        refused: list[tuple[int, str, datetime | None, str | None]] = []
        scanned = 0
        while wanted > 0 and self.hopper and scanned < 4 * wanted + 50:
            entry = self.hopper.popleft()
            scanned += 1
            decision = hopper.decide(self.config.compliance, entry, self.feed.index, now, self.live_numbers,
                                     self.live_accounts)  # fmt: skip
            if decision.allowed and not self.caps.allows_queued(entry.account_id):
                decision = Decision.of([Reason("account_lead_cap", self._cap_reason(entry.account_id))], now)
            if decision.allowed:
                self._dial(entry)
                wanted -= 1
            elif all(r.code in hopper.BUSY for r in decision.reasons):
                busy.append(entry)
            else:
                self.caps.unqueue(entry.account_id)
                refused.append(hopper.placement(entry, decision, now))
        self.hopper.extend(busy)  # to the back: what can be dialled now must not wait behind them
        if refused:
            self._spawn(hopper.give_back(self.pool, self.config.id, refused), f"campaign-{self.config.id}-refused")

    def snapshot(self, sessions: list[AgentSession], now: float) -> Snapshot:
        ready = talking = wrapping = paused = 0
        talk: list[float] = []
        wrap: list[float] = []
        for s in sessions:
            state = s.agent.state
            if _free(s):
                ready += 1
            elif s.agent.pause_held:
                paused += 1  # leaving: no call is dialled for it
            elif state in (AgentState.ON_CALL, AgentState.RESERVED):
                talking += 1
                call = s.call
                talk.append(now - call.bridged if call is not None and call.bridged is not None else 0.0)
            elif state is AgentState.WRAP_UP:
                wrapping += 1
                wrap.append(now - (s.wrap_started or now))
            elif state is AgentState.PAUSED:
                paused += 1
        dialing = [now - c.dialed for c in self.calls.values() if c.state == "dialing"]
        dialing += [0.0] * self.pending_dials
        other = sum(1 for c in self.calls.values() if c.state in ("abandoning", "machine"))
        active = ready + talking + wrapping
        cap = int(self.config.lines_per_agent * active)
        if self.config.connection.max_channels:
            cap = min(cap, self.config.connection.max_channels)
        return Snapshot(now=now, agents_ready=ready, agents_talking=tuple(talk), agents_wrapping=tuple(wrap),
                        calls_dialing=tuple(dialing), calls_waiting=len(self.waiting), line_cap=cap,
                        agents_paused=paused, lines_other=other)  # fmt: skip

    def _maybe_refill(self, now: float) -> None:
        low = len(self.hopper) < max(10, self.config.hopper_size // 2)
        if self._refilling or not low or now - self._last_refill < REFILL_EVERY_S:
            return
        if now - self._exhausted_at < 5 * REFILL_EVERY_S and self.hopper:
            return
        self._refilling = True
        self._last_refill = now
        self._spawn(self._refill(), f"campaign-{self.config.id}-refill")

    async def _refill(self) -> None:
        try:
            if not self.feed.healthy:
                log.warning("hopper_paused_suppressions_stale", campaign=self.config.id)
                self.error = "the suppression list is not known to be current: no dials until it is"
                return
            self.error = None
            queued = {e.contact_id for e in self.hopper}
            room = self.config.hopper_size - len(self.hopper)
            if room <= 0:
                return
            result = await hopper.refill(
                self.pool, self.config.compliance, self.feed.index, limit=room, now=datetime.now(UTC),
                fallback_zone=self.config.fallback_zone, live_numbers=self.live_numbers,
                live_accounts=self.live_accounts, cap_allows=self.caps.allows, cap_reason=self._cap_reason,
                cap_take=self.caps.queue,
            )  # fmt: skip
            fresh = [e for e in result.entries if e.contact_id not in queued]
            for entry in result.entries:
                if entry.contact_id in queued:
                    self.caps.unqueue(entry.account_id)  # counted by the refill, already in the hopper
            if not self.active:  # paused while the refill ran: everything goes back
                for entry in fresh:
                    self.caps.unqueue(entry.account_id)
                await hopper.give_back(self.pool, self.config.id, [(e.contact_id, e.was, None, None) for e in fresh])
                return
            fresh.sort(key=lambda e: e.was != "callback")  # due callbacks first, order otherwise kept
            if not fresh:
                self._exhausted_at = self.clock()
            callbacks = [e for e in fresh if e.was == "callback"]
            others = [e for e in fresh if e.was != "callback"]
            self.hopper.extendleft(reversed(callbacks))
            self.hopper.extend(others)
            self.metrics.hopper.labels(self.label()).set(len(self.hopper))
        except Exception:
            log.exception("hopper_refill_failed", campaign=self.config.id)
        finally:
            self._refilling = False
        self.wake()

    def _cap_reason(self, account: int | None) -> str:
        return f"the account has reached its lead cap ({self.caps.mode}: {self.caps.cap})"

    # -- dialling --------------------------------------------------------------------------------------------

    def _dial(self, entry: hopper.Entry, agent: AgentSession | None = None) -> None:
        self.pending_dials += 1
        self.caps.dial(entry.account_id)
        self.live_numbers[entry.phone_key] += 1
        if entry.account_id is not None:
            self.live_accounts[entry.account_id] += 1
        self._spawn(self._place(entry, agent), f"dial-{entry.contact_id}")

    async def _place(self, entry: hopper.Entry, agent: AgentSession | None) -> None:
        config = self.config
        try:
            attempt = await attempts.create(
                self.pool, campaign_id=config.id, contact_id=entry.contact_id, account_id=entry.account_id,
                connection_id=config.connection.id, to_e164=entry.phone, from_e164=config.caller_id_for(entry.phone),
                agent_user_id=agent.user_id if agent else None,
            )  # fmt: skip
        except Exception:
            self.pending_dials -= 1
            self._release_line(entry)
            self.caps.end(entry.account_id, was_connected=False)
            log.exception("attempt_not_recorded", campaign=config.id, contact=entry.contact_id)
            await hopper.give_back(self.pool, config.id, [(entry.contact_id, entry.was, None, None)])
            if agent is not None:
                self._release_agent(agent)
            return
        call = Call(attempt.id, entry, self.clock(), agent=agent, preview=agent is not None)
        self.calls[attempt.id] = call
        self.pending_dials -= 1
        self.metrics.dials.labels(self.label()).inc()
        try:
            carrier = await self.carrier()
            leg = await carrier.dial(
                connection_id=config.connection.connection_id, from_=config.caller_id_for(entry.phone),
                to=entry.phone, client_state=attempt.client_state, timeout_secs=config.ring_timeout_secs,
                amd=config.amd_mode, command_id=attempt.dial_command_id,
            )  # fmt: skip
        except Exception as exc:  # the carrier refused or never answered: nothing rings
            log.warning("dial_failed", campaign=config.id, attempt=attempt.id, error=str(exc))
            call.state = "ended"
            await self._finish(call, outcome="failed", failure=str(exc)[:500])
            return
        call.ccid = call.ccid or leg.call_control_id
        try:
            await attempts.dialled(self.pool, attempt.id, leg.call_control_id, leg.call_leg_id, leg.call_session_id)
        except Exception:
            log.exception("attempt_dial_not_recorded", attempt=attempt.id)

    # -- carrier events --------------------------------------------------------------------------------------

    def on_event(self, call: Call, leg: Leg, event_type: str, payload: dict[str, Any]) -> None:
        call.leg = leg
        if call.ccid is None:
            call.ccid = leg.call_control_id
        if event_type == "call.hangup":
            self._customer_gone(call)
            return
        if call.state == "dialing":
            amd = self.config.amd_mode != "disabled"
            if leg.state is LegState.HUMAN or (not amd and leg.state in (LegState.ANSWERED, LegState.HUMAN)):
                self._answered(call, leg, human=True)
            elif leg.state is LegState.MACHINE:
                self._answered(call, leg, human=False)
            elif leg.state is LegState.ANSWERED and call.answered is None:
                call.answered, call.answered_at = self.clock(), leg.answered_at
        elif call.state == "machine" and event_type in GREETING_EVENTS:
            self._leave_message(call)
        elif call.state in ("abandoning", "machine") and event_type in ("call.speak.ended", "call.playback.ended"):
            self.hang_up(call)

    def _answered(self, call: Call, leg: Leg, *, human: bool) -> None:
        now = self.clock()
        if call.answered is None:
            call.answered = now
        call.answered_at = leg.answered_at
        age = now - call.dialed
        if self.config.machine_action == "route_to_agent":
            human = True
        self.pacer.observe_call(CallOutcome(now, CallResult.HUMAN if human else CallResult.MACHINE, age))
        if not human:
            call.state, call.machine = "machine", True
            self.metrics.answers.labels(self.label(), "machine").inc()
            if self.config.machine_action == "leave_message" and self.config.machine_message:
                if leg.greeting_ended_at is not None:
                    self._leave_message(call)
                else:
                    call.timer = asyncio.get_running_loop().call_later(BEEP_WAIT_S, self.hang_up, call)
            else:
                self.hang_up(call)
            self.wake()
            return
        self.metrics.answers.labels(self.label(), "human").inc()
        call.human_seen = time.perf_counter()
        agent = call.agent if call.preview else self._pick_agent(call)
        if agent is not None:
            self._connect(call, agent)
        else:
            call.state, call.queued = "waiting", True
            self.waiting.append(call)
            call.timer = asyncio.get_running_loop().call_later(ABANDON_AFTER_S, self._abandon, call)
        self.wake()

    def _pick_agent(self, call: Call) -> AgentSession | None:
        """The longest idle ready agent; one waiting for a held pause only when nobody else is free."""
        best: AgentSession | None = None
        for session in self._agents(self.config.id):
            if not session.routable or session.offer is not None:
                continue
            if call.entry.assigned_user_id is not None and session.user_id == call.entry.assigned_user_id:
                return session  # a personal callback goes to its agent when that agent is free
            if best is None or _rank(session) < _rank(best):
                best = session
        return best

    # -- held pauses (dialer.held_pauses) --------------------------------------------------------------------

    def promises_an_agent(self) -> bool:
        """Progressive dialling, or a predictive campaign fallen back to it (its abandon budget spent): every
        call dialled counts on a ready agent."""
        if self.config.dial_mode == "progressive":
            return True
        return isinstance(self.pacer, PredictivePacer) and self.pacer.mode == "progressive"

    def _calls_in_flight(self) -> int:
        dialing = sum(1 for c in self.calls.values() if c.state == "dialing")
        return dialing + self.pending_dials + sum(1 for c in self.waiting if c.state == "waiting")

    def pause_must_wait(self, session: AgentSession) -> bool:
        """Whether this ready agent's pause is held (see dialer.held_pauses)."""
        if not self.promises_an_agent() or not session.routable:
            return False
        free_others = sum(1 for s in self._agents(self.config.id) if s is not session and _free(s))
        return held_pauses.must_wait(self._calls_in_flight(), free_others)

    def _take_held_pauses(self, sessions: list[AgentSession], now: float, *, everyone: bool = False) -> None:
        # in the order they asked
        held = sorted((s for s in sessions if s.agent.pause_held), key=lambda s: s.agent.pause_held_since or 0.0)
        if not held:
            return
        leaving = held
        if self.promises_an_agent() and not everyone:
            covering = [s for s in held if s.routable]
            free = sum(map(_free, sessions))
            leaving = [s for s in held if not s.routable] + held_pauses.may_go(self._calls_in_flight(), free, covering)
        for session in leaving:
            session.agent.apply(AgentEvent.PAUSE, now, session.agent.pending_pause)
            self._changed(session)

    def _serve_waiting(self, sessions: list[AgentSession]) -> None:
        while self.waiting:
            call = self.waiting[0]
            if call.state != "waiting":
                self.waiting.popleft()
                continue
            agent = self._pick_agent(call)
            if agent is None:
                return
            self.waiting.popleft()
            if call.timer is not None:
                call.timer.cancel()
            self._connect(call, agent)

    def agent_free(self) -> None:
        """An agent became ready: a waiting call is served now, not at the next tick."""
        self._serve_waiting(self._agents(self.config.id))
        self.wake()

    def _connect(self, call: Call, agent: AgentSession) -> None:
        if not call.preview:
            agent.agent.apply(AgentEvent.RESERVE, self.clock())
        agent.call, call.agent, call.state = call, agent, "reserved"
        self._spawn(self._bridge(call, agent), f"bridge-{call.attempt_id}")
        agent.send(self.screen_pop(call, agent))
        self._spawn(self.send_history(call, agent), f"history-{call.attempt_id}")
        self._changed(agent)

    async def _bridge(self, call: Call, agent: AgentSession) -> None:
        command_id = f"bridge-{call.attempt_id}"
        leg = agent.leg
        try:
            if leg is None or call.ccid is None:
                raise CarrierError("the agent's softphone is not connected")
            carrier = await self.carrier()
            if call.human_seen is not None:
                waited = time.perf_counter() - call.human_seen
                histogram = self.metrics.queue_wait if call.queued else self.metrics.answer_to_bridge
                histogram.labels(self.label()).observe(waited)
            await carrier.bridge(leg, call.ccid, park_after_unbridge=True, command_id=command_id)
        except CarrierError as exc:
            log.warning("bridge_failed", attempt=call.attempt_id, agent=agent.user_id, error=str(exc))
            self._release_agent(agent)
            call.agent = None
            if call.customer_gone:
                self._spawn(self._finish(call, outcome=self._system_outcome(call)), f"finish-{call.attempt_id}")
                return
            # The customer is still there as far as we know (if it was their leg that ended, its hangup event
            # finishes the call from the queue): the call waits again. The agent's line is to blame only if it
            # has ended or the carrier refused the bridge for another reason than a call that ended.
            agent_leg = self._leg_of(leg) if leg is not None else None
            line_gone = agent_leg is not None and agent_leg.state is LegState.ENDED
            if leg is not None and agent.leg == leg and (line_gone or not isinstance(exc, CallEnded)):
                self._drop_line(agent, leg, hang_up=not line_gone)
            self._requeue(call)
            return
        now = self.clock()
        call.bridged, call.connected = now, True
        if call.answered is not None and now - call.answered > LATE_BRIDGE_S:
            call.abandoned = True  # connected, but later than the rule allows: it counts as an abandon
            log.warning("late_bridge", attempt=call.attempt_id, seconds=round(now - call.answered, 3))
        self.metrics.bridges.labels(self.label()).inc()
        self.metrics.time_to_connect.labels(self.label()).observe(now - call.dialed)
        if agent.agent.state is AgentState.RESERVED:
            agent.agent.apply(AgentEvent.CONNECT, now)
        if call.state == "reserved":
            call.state = "bridged"
        self.caps.connect(call.entry.account_id)
        self.live.connected(now)
        self._settled(call)
        agent.send(self.call_frame(call, "bridged"))
        self._changed(agent)
        if self.config.record_calls and not call.customer_gone:
            self._spawn(self._record(call), f"record-{call.attempt_id}")
        try:
            await attempts.assigned(self.pool, call.attempt_id, agent.user_id, agent.session_id, command_id)
        except Exception:
            log.exception("attempt_assignment_not_recorded", attempt=call.attempt_id)
        if call.customer_gone:  # the customer left while the bridge was on its way
            self._conversation_over(call)

    async def _record(self, call: Call) -> None:
        """Records the conversation from the bridge; the carrier stops at the hangup and sends the file's link
        (``dialer.recordings``)."""
        try:
            carrier = await self.carrier()
            assert call.ccid is not None
            await carrier.start_recording(call.ccid, command_id=f"record-{call.attempt_id}")
        except CarrierError as exc:
            log.warning("recording_not_started", attempt=call.attempt_id, error=str(exc))

    def _drop_line(self, agent: AgentSession, leg: str, *, hang_up: bool) -> None:
        """The agent's softphone line cannot take calls: no call is routed to it until the softphone calls in
        again (hung up here so that it does)."""
        agent.leg = None
        agent.send({"type": "softphone", "connected": False, "sip_username": agent.sip_username})
        if agent.agent.state is AgentState.READY:
            agent.agent.apply(AgentEvent.PAUSE, self.clock(), "softphone_lost")
            self._changed(agent)
        if hang_up:

            async def hang_up_line() -> None:
                try:
                    await (await self.carrier()).hangup(leg)
                except CarrierError as exc:
                    log.warning("agent_line_hangup_failed", leg=leg, error=str(exc))

            self._spawn(hang_up_line(), f"agent-line-{agent.user_id}")

    def _requeue(self, call: Call) -> None:
        """A call whose bridge failed waits again, first in line, with what is left of its deadline."""
        call.state, call.preview, call.queued = "waiting", False, True
        self.waiting.appendleft(call)
        elapsed = self.clock() - (call.answered if call.answered is not None else self.clock())
        if call.timer is not None:
            call.timer.cancel()
        call.timer = asyncio.get_running_loop().call_later(max(0.0, ABANDON_AFTER_S - elapsed), self._abandon, call)
        self._serve_waiting(self._agents(self.config.id))

    def _release_agent(self, agent: AgentSession) -> None:
        """The call reserved for this agent will not reach them (the bridge failed, the person left first)."""
        call, agent.call = agent.call, None
        if isinstance(call, Call):
            agent.send(self.call_frame(call, "released"))
        if agent.agent.state is AgentState.RESERVED:
            agent.agent.apply(AgentEvent.RELEASE, self.clock())
        self._no_line_no_calls(agent)
        self._changed(agent)

    def _no_line_no_calls(self, agent: AgentSession) -> None:
        """Back to work without a softphone line (it dropped during the call): paused until it calls in again."""
        if agent.agent.state is AgentState.READY and agent.leg is None:
            agent.agent.apply(AgentEvent.PAUSE, self.clock(), "softphone_lost")

    def _abandon(self, call: Call) -> None:
        if call.state != "waiting":
            return
        with_message = bool(self.config.abandon_message)
        call.state, call.abandoned = "abandoning", True
        self.metrics.abandons.labels(self.label()).inc()
        self._settled(call)
        self.pacer.observe_live(LiveOutcome(self.clock(), connected=False, answer_age=self._answer_age(call),
                                            day=datetime.now(UTC).date().toordinal()))  # fmt: skip
        self._spawn(self._abandon_call(call, with_message), f"abandon-{call.attempt_id}")
        self._spawn(attempts.mark_abandoned(self.pool, call.attempt_id), f"abandoned-{call.attempt_id}")

    async def _abandon_call(self, call: Call, with_message: bool) -> None:
        if call.ccid is None:
            return
        try:
            carrier = await self.carrier()
            if with_message:
                await carrier.speak(call.ccid, self.config.abandon_message, command_id=f"abandon-{call.attempt_id}")
                call.timer = asyncio.get_running_loop().call_later(MESSAGE_LIMIT_S, self.hang_up, call)
                return
        except CallEnded:
            return
        except CarrierError as exc:
            log.warning("abandon_message_failed", attempt=call.attempt_id, error=str(exc))
        self.hang_up(call)

    def _leave_message(self, call: Call) -> None:
        if call.ccid is None or call.customer_gone:
            return
        if call.timer is not None:
            call.timer.cancel()

        async def speak() -> None:
            try:
                carrier = await self.carrier()
                await carrier.speak(call.ccid or "", self.config.machine_message or "",
                                    command_id=f"voicemail-{call.attempt_id}")  # fmt: skip
                call.timer = asyncio.get_running_loop().call_later(MESSAGE_LIMIT_S, self.hang_up, call)
            except CarrierError:
                self.hang_up(call)

        self._spawn(speak(), f"voicemail-{call.attempt_id}")

    def hang_up(self, call: Call) -> None:
        if call.customer_gone or call.ccid is None:
            return

        async def send() -> None:
            try:
                carrier = await self.carrier()
                await carrier.hangup(call.ccid or "", command_id=f"hangup-{call.attempt_id}")
            except CarrierError as exc:
                log.warning("hangup_failed", attempt=call.attempt_id, error=str(exc))

        self._spawn(send(), f"hangup-{call.attempt_id}")

    def _answer_age(self, call: Call) -> float:
        return (call.answered or self.clock()) - call.dialed

    # -- the end of a call -----------------------------------------------------------------------------------

    def _customer_gone(self, call: Call) -> None:
        if call.customer_gone:
            return
        call.customer_gone, call.ended = True, self.clock()
        if call.timer is not None:
            call.timer.cancel()
        state = call.state
        if state == "dialing":
            leg = call.leg
            result = {"busy": CallResult.BUSY, "no_answer": CallResult.NO_ANSWER}.get(
                self._system_outcome(call), CallResult.FAILED
            )
            if leg is not None and leg.answered_at is not None:  # answered but no verdict yet: nobody was routed
                result = CallResult.HUMAN
            self.pacer.observe_call(CallOutcome(self.clock(), result, self.clock() - call.dialed))
        if state == "reserved":
            return  # the bridge in flight fails or lands; either way it finishes the call
        if state in ("bridged",):
            self._conversation_over(call)
            return
        if state == "waiting":
            call.state = "ended"
        self._spawn(self._finish(call, outcome=self._system_outcome(call)), f"finish-{call.attempt_id}")

    def _system_outcome(self, call: Call) -> str:
        leg = call.leg
        return system_outcome(
            answered=call.answered is not None or (leg is not None and leg.answered_at is not None),
            machine=call.machine, abandoned=call.abandoned,
            hangup_cause=leg.hangup_cause if leg else None, sip_cause=leg.sip_hangup_cause if leg else None,
        )  # fmt: skip

    def _conversation_over(self, call: Call) -> None:
        """A bridged call ended: its agent wraps up and owes the disposition."""
        if call.state == "ended":
            return
        call.state = "ended"
        agent = call.agent
        self._release_line(call.entry)
        self.caps.end(call.entry.account_id, was_connected=True)
        if agent is not None:
            if agent.leg is not None:
                self._unbridge_agent_leg(agent.leg)
            if agent.agent.state is AgentState.ON_CALL:
                agent.agent.apply(AgentEvent.HANGUP, self.clock())
                agent.wrap_started = self.clock()
            agent.send(self.call_frame(call, "ended"))
            self._changed(agent)
        self._spawn(self._record_end(call), f"finish-{call.attempt_id}")
        self.wake()

    def _unbridge_agent_leg(self, ccid: str) -> None:
        leg = self._leg_of(ccid)
        if leg is not None:
            leg.unbridged()  # the carrier sends no event when a customer leaves a parked agent's bridge

    async def _record_end(self, call: Call) -> None:
        try:
            await attempts.finish(self.pool, call.attempt_id, call.leg, abandoned=call.abandoned,
                                  answered_at=call.leg.answered_at if call.leg else None)  # fmt: skip
        except Exception:
            log.exception("attempt_end_not_recorded", attempt=call.attempt_id)
        self.calls.pop(call.attempt_id, None)

    def _release_line(self, entry: hopper.Entry) -> None:
        self.live_numbers[entry.phone_key] -= 1
        if self.live_numbers[entry.phone_key] <= 0:
            del self.live_numbers[entry.phone_key]
        if entry.account_id is not None:
            self.live_accounts[entry.account_id] -= 1
            if self.live_accounts[entry.account_id] <= 0:
                del self.live_accounts[entry.account_id]

    async def _finish(self, call: Call, *, outcome: str, failure: str | None = None) -> None:
        """A call no agent will disposition: its facts, the dialer's outcome and the member's next step."""
        if call.finished:
            return
        call.finished, call.state = True, "ended"
        self._release_line(call.entry)
        self.caps.end(call.entry.account_id, was_connected=False)
        if call.agent is not None and call.preview:  # a previewed call that reached nobody frees its agent
            agent, call.agent = call.agent, None
            self._release_agent(agent)
            agent.send(self.call_frame(call, "ended", outcome=outcome))
        config = self.config
        try:
            await attempts.finish(
                self.pool, call.attempt_id, call.leg, abandoned=call.abandoned,
                answered_at=call.leg.answered_at if call.leg else None, failure_reason=failure,
                outcome=config.system[outcome], max_attempts=config.max_attempts,
                default_retry_minutes=config.default_retry_minutes,
                lockout_hours=config.abandon_lockout_hours if call.abandoned else 0,
                # a callback the contact missed is closed; one our side failed (no line, no agent) stays due
                callback_id=call.entry.callback_id if outcome not in ("failed", "abandoned") else None,
            )  # fmt: skip
        except Exception:
            log.exception("attempt_end_not_recorded", attempt=call.attempt_id)
        self.calls.pop(call.attempt_id, None)
        self.wake()

    # -- agents ----------------------------------------------------------------------------------------------

    def _wrap_timeouts(self, sessions: list[AgentSession], now: float) -> None:
        for s in sessions:
            if s.agent.wrap_timed_out(now, self.config.wrap_up_seconds):
                s.agent.apply(AgentEvent.WRAP_TIMEOUT, now)
                self._changed(s)

    def _offer_previews(self, sessions: list[AgentSession]) -> None:
        for s in sessions:
            if s.routable and s.offer is None and self.hopper:
                entry = self.hopper.popleft()
                self.caps.unqueue(entry.account_id)
                s.offer = entry
                s.send({"type": "preview", "contact": entry.contact, "account": entry.account,
                        "contact_id": entry.contact_id, "script": self._script(entry)})  # fmt: skip

    def preview_accept(self, session: AgentSession, contact_id: int) -> None:
        entry = session.offer
        if entry is None or entry.contact_id != contact_id:
            raise Refused("no_such_preview", "that contact is not the one offered to you")
        if session.leg is None:
            raise Refused("no_softphone", "connect your softphone first: nobody could take the call")
        now = datetime.now(UTC)
        decision = hopper.decide(self.config.compliance, entry, self.feed.index, now, self.live_numbers,
                                 self.live_accounts)  # fmt: skip
        if not decision.allowed:
            if all(r.code in hopper.BUSY for r in decision.reasons):
                raise Refused("line_busy", "the number or another line of the account is in a call: try again shortly")
            session.offer = None
            self._spawn(hopper.give_back(self.pool, self.config.id, [hopper.placement(entry, decision, now)]),
                        f"preview-refused-{entry.contact_id}")  # fmt: skip
            self.wake()
            raise Refused("not_callable_now", "; ".join(r.message for r in decision.reasons))
        try:
            session.agent.apply(AgentEvent.RESERVE, self.clock())
        except IllegalTransition as exc:
            raise Refused("illegal_state", str(exc)) from None
        session.offer = None
        self.caps.queue(entry.account_id)
        self._changed(session)
        self._dial(entry, agent=session)

    async def preview_skip(self, session: AgentSession, contact_id: int) -> None:
        entry = session.offer
        if entry is None or entry.contact_id != contact_id:
            raise Refused("no_such_preview", "that contact is not the one offered to you")
        session.offer = None
        later = datetime.now(UTC) + timedelta(minutes=self.config.default_retry_minutes)
        await hopper.give_back(self.pool, self.config.id, [(entry.contact_id, entry.was, later, None)])
        self.wake()

    def _script(self, entry: hopper.Entry) -> str:
        return render(self.config.script, {"contact": entry.contact, "account": entry.account})

    def screen_pop(self, call: Call, agent: AgentSession) -> dict[str, Any]:
        entry = call.entry
        return {"type": "screen_pop", "attempt_id": call.attempt_id, "contact_id": entry.contact_id,
                "contact": entry.contact, "account": entry.account, "script": self._script(entry),
                "callback_id": entry.callback_id, **self.catalogue()}  # fmt: skip

    def catalogue(self) -> dict[str, Any]:
        """What a console needs to save a disposition: the form and the outcomes an agent may choose."""
        return {"form": self.config.form,
                "dispositions": [{"code": f.code, "label": f.label, "positive": f.is_positive,
                                  "callback": f.is_callback, "hotkey": f.hotkey}
                                 for f in self.config.dispositions.values()]}  # fmt: skip

    async def send_history(self, call: Call, agent: AgentSession) -> None:
        """The contact's earlier calls follow the screen pop (a query the routing path must not wait for)."""
        try:
            calls = await attempts.history(self.pool, call.entry.contact_id, before_attempt=call.attempt_id)
        except Exception:
            log.warning("history_not_loaded", attempt=call.attempt_id)
            return
        if agent.call is call:
            agent.send({"type": "history", "attempt_id": call.attempt_id, "contact_id": call.entry.contact_id,
                        "calls": calls})  # fmt: skip

    def call_frame(self, call: Call, state: str, **extra: Any) -> dict[str, Any]:
        frame = {"type": "call", "attempt_id": call.attempt_id, "state": state, "contact_id": call.entry.contact_id,
                 **extra}  # fmt: skip
        if call.bridged is not None:  # a console that reconnects mid-call restarts its timer from here
            frame["talk_s"] = round((call.ended or self.clock()) - call.bridged, 1)
        return frame

    def _changed(self, agent: AgentSession) -> None:
        if agent.on_change is not None:
            agent.on_change(agent)

    async def dispose(
        self,
        session: AgentSession,
        *,
        attempt_id: int,
        code: str,
        answers: dict[str, Any],
        notes: str = "",
        callback: Callback | None = None,
    ) -> attempts.Saved:
        """Validate and save an agent's disposition (durable before this returns), then free the agent."""
        call = session.call if isinstance(session.call, Call) else None
        # Neither the current call nor one owed: a resend of a saved disposition (answered as a repeat), or not
        # this agent's call at all (refused by the ownership check in the transaction).
        if call is not None and call.attempt_id == attempt_id and call.state in ("reserved", "bridged"):
            raise Refused("call_in_progress", "hang up before saving the disposition")
        flags, answers, due = check_disposition(
            self.config.dispositions, self.config.form_fields, code, answers,
            callback.due_at if callback is not None else None, datetime.now(UTC),
        )  # fmt: skip
        saved = await attempts.dispose(
            self.pool, attempt_id=attempt_id, user_id=session.user_id, flags=flags, answers=answers,
            notes=notes, callback_due=due, callback_personal=callback.personal if callback else True,
            callback_notes=callback.notes if callback else "", max_attempts=self.config.max_attempts,
            default_retry_minutes=self.config.default_retry_minutes,
            client_organisation_id=self.config.client_organisation_id,
            source_callback_id=call.entry.callback_id if call is not None and call.attempt_id == attempt_id else None,
        )  # fmt: skip
        # Also after a repeat: the first send may have been saved and its answer lost before memory caught up.
        self._disposed(session, attempt_id, call, saved.account_id, flags.is_positive, person=code not in _MACHINES)
        return saved

    def _disposed(self, session: AgentSession, attempt_id: int, call: Call | None, account: int | None,
                  positive: bool, *, person: bool) -> None:  # fmt: skip
        """Memory catches up with a saved disposition, once (a repeat finds nothing left to do)."""
        # Judged now, not when the disposition arrived: a repeat may come back after the agent took a new call.
        current = call is not None and session.call is call and call.attempt_id == attempt_id
        if not current and attempt_id not in session.owed:
            return
        now = self.clock()
        self.caps.dispose(account, positive=positive)
        if call is not None and current:
            talk = (call.ended or now) - (call.bridged or now)
            wrap = now - (session.wrap_started or now)
            self.pacer.observe_handle(max(0.0, talk), max(0.0, wrap))
            self.live.conversation(now, talk, talk + wrap)
            self.pacer.observe_live(LiveOutcome(now, connected=not call.abandoned, answer_age=self._answer_age(call),
                                                person=person, day=datetime.now(UTC).date().toordinal()))  # fmt: skip
            session.call = None
        if attempt_id in session.owed:
            session.owed.remove(attempt_id)
        if session.agent.owes_disposition or session.agent.state is AgentState.WRAP_UP:
            with contextlib.suppress(IllegalTransition):
                session.agent.apply(AgentEvent.DISPOSE, now)
        session.agent.owes_disposition = bool(session.owed)
        session.wrap_started = None
        self._no_line_no_calls(session)
        self._changed(session)
        self.agent_free()


_BUSY = frozenset({AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP})

#: Agent dispositions that say the "answer" was a machine (for the pacer's person-by-answer-age model).
_MACHINES = frozenset({"voicemail_left", "machine", "answering_machine"})


def _free(session: AgentSession) -> bool:
    """Ready for a call and staying: not waiting for a held pause."""
    return session.routable and not session.agent.pause_held


def _rank(session: AgentSession) -> tuple[bool, float]:
    return session.agent.pause_held, session.agent.ready_since or 0.0
