"""Bot agents: each signs in through the API, connects its softphone to the simulated carrier (pattern 2: it
calls in and the daemon parks the call), joins a campaign over the real agent websocket, goes ready, takes
every call it is given, wraps up and saves a disposition (filling the campaign's form when the outcome is
positive). ``pivotal simulate`` runs a crowd of them; tests and benchmarks use them to drive a whole daemon.

A bot records every disposition the daemon acknowledged: a benchmark compares them with PostgreSQL (a lost
disposition is one acknowledged and not stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import websockets

#: Agent outcomes a bot never picks (a bot must not put real numbers on the do-not-call list by chance).
_AVOID = frozenset({"do_not_call"})


@dataclass
class BotStats:
    calls: int = 0
    acked: dict[int, str] = field(default_factory=dict)  # attempt id -> disposition code the daemon acknowledged
    errors: list[str] = field(default_factory=list)
    talk_s: float = 0.0
    started: float = field(default_factory=time.monotonic)


@dataclass
class BotOptions:
    base_url: str  # the daemon, e.g. http://127.0.0.1:8080
    campaign_id: int
    password: str
    wrap_s: tuple[float, float] = (1.0, 4.0)
    positive_share: float = 0.15
    callback_share: float = 0.05
    max_talk_s: float | None = None  # hang up after this long (None: the customer ends the call)
    rtc_url: str | None = None  # the simulated carrier's softphone socket (default: what the daemon says)
    seed: int = 1


async def login(session: aiohttp.ClientSession, base_url: str, email: str, password: str) -> str:
    """Sign in; a crowd signing in at once from one address is throttled (429): wait as told and retry."""
    for _ in range(60):
        async with session.post(f"{base_url}/api/auth/login", json={"email": email, "password": password}) as r:
            body = await r.json()
            if r.status == 429:
                wait = min(2.0, float(r.headers.get("Retry-After", "1")))  # the window frees as sign-ins succeed
                await asyncio.sleep(wait * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
                continue
            if r.status != 200:
                raise RuntimeError(f"sign-in of {email} failed: {r.status} {body}")
            return str(body["access_token"])
    raise RuntimeError(f"sign-in of {email}: throttled for too long")


def answers_for(form: dict[str, Any] | None, today: date) -> dict[str, Any]:
    """Valid answers to every field of a form (what a careful agent would type)."""
    answers: dict[str, Any] = {}
    for f in (form or {}).get("fields", []):
        kind, low = f["type"], f.get("min")
        value: Any = {
            "text": "Bot answer", "textarea": "Bot notes", "boolean": True, "date": today.isoformat(),
            "email": "buyer@example.com", "phone": "+14155550100", "url": "https://example.com",
            "integer": int(low) if low is not None else 1, "number": float(low) if low is not None else 1.0,
        }.get(kind)  # fmt: skip
        if kind in ("select", "multiselect"):
            first = f["options"][0]["value"]
            value = first if kind == "select" else [first]
        answers[f["key"]] = value
    return answers


class BotAgent:
    def __init__(self, email: str, options: BotOptions, stats: BotStats) -> None:
        self.email = email
        self.options = options
        self.stats = stats
        self.rng = random.Random(f"{options.seed}:{email}")  # noqa: S311 - simulation
        self.pops: dict[int, dict[str, Any]] = {}
        self.ready_sent = False
        self.softphone_up = asyncio.Event()
        self.state = "offline"  # as the daemon last said
        self.joined = asyncio.Event()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ws: Any = None
        self._seq = 0
        self._wrapping = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            token = await login(http, self.options.base_url, self.email, self.options.password)
            phone = await self._softphone(http, token)
        ws_url = self.options.base_url.replace("http", "ws", 1) + "/ws/agent"
        async with (
            await _connect_retrying(ws_url, ["pivotal.v1", f"bearer.{token}"]) as console,
            websockets.connect(self.options.rtc_url or phone["rtc_url"]) as rtc,
        ):
            self._ws = console
            reader = asyncio.create_task(self._read(console))
            try:
                await self._join()
                await rtc.send(json.dumps({"type": "login", "login_token": phone["login_token"]}))
                await rtc.send(json.dumps({"type": "invite", "destination": "sip:pivotal@sip.telnyx.com"}))
                await asyncio.wait_for(self.softphone_up.wait(), 30)
                while self._wrapping:  # noqa: ASYNC110 - what this agent owed (a lost connection) is settled first
                    await asyncio.sleep(0.05)
                await self._request({"type": "ready"})
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait([stopping, reader], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if reader.done():
                    raise ConnectionError("the daemon closed the console")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._request({"type": "pause", "reason": "end_of_shift"}), 5)
                # Calls still in progress finish and are dispositioned before the bot leaves, and the pause is
                # taken (held while calls dialled for the team count on this agent) - bounded.
                deadline = time.monotonic() + 300  # the longest talk in the benchmarks' lists, and a wrap-up
                while (  # noqa: ASYNC110
                    (self.pops or self._wrapping or self.state not in ("paused", "offline"))
                    and time.monotonic() < deadline
                    and not reader.done()
                ):
                    await asyncio.sleep(0.1)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _softphone(self, http: aiohttp.ClientSession, token: str) -> dict[str, Any]:
        """The softphone's identity; a crowd starting at once may find the database busy (503): wait and retry,
        as the console does."""
        headers = {"Authorization": f"Bearer {token}"}
        for attempt in range(RETRIES):
            async with http.get(f"{self.options.base_url}/api/telephony/softphone", headers=headers) as response:
                phone: dict[str, Any] = await response.json()
                if response.status == 200:
                    return phone
                if response.status != 503 or attempt == RETRIES - 1:
                    raise RuntimeError(f"softphone of {self.email}: {response.status} {phone}")
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    async def _join(self) -> None:
        """Join the campaign; a campaign just started may take a moment to reach the dialer, and a crowd joining
        at once may find the database busy."""
        deadline = time.monotonic() + 15
        attempt = 0
        while True:
            try:
                await self._request({"type": "join", "campaign_id": self.options.campaign_id})
                return
            except RuntimeError as exc:
                busy = ": busy:" in str(exc) and attempt < RETRIES
                if not busy and ("not_running" not in str(exc) or time.monotonic() > deadline):
                    raise
                attempt += 1
                await asyncio.sleep(_backoff(attempt) if busy else 0.25)

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        frame_id = f"{frame['type']}-{self._seq}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        await self._ws.send(json.dumps({**frame, "id": frame_id}))
        answer = await asyncio.wait_for(future, 30)
        if answer["type"] == "error":
            raise RuntimeError(f"{frame['type']}: {answer['code']}: {answer['message']}")
        return answer

    async def _read(self, console: Any) -> None:
        async for raw in console:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind in ("ack", "error") and frame.get("id") in self._pending:
                future = self._pending.pop(frame["id"])
                if not future.done():
                    future.set_result(frame)
                continue
            if kind == "error":
                self.stats.errors.append(f"{self.email}: {frame.get('code')}: {frame.get('message')}")
            elif kind == "state":
                self.state = frame["state"]
            elif kind == "softphone" and frame.get("connected"):
                self.softphone_up.set()
            elif kind == "screen_pop":
                self.pops[frame["attempt_id"]] = frame
            elif kind == "call" and frame.get("state") == "bridged":
                self.stats.calls += 1
                if self.options.max_talk_s is not None:
                    talk = self.rng.uniform(0.5, 1.0) * self.options.max_talk_s
                    asyncio.ensure_future(self._hang_up(frame["attempt_id"], after=talk))
            elif (
                kind == "call"
                and frame.get("state") == "ended"
                and frame.get("attempt_id") in self.pops
                or kind == "owed"
            ):
                self._wrapping += 1  # counted now: a ready sent meanwhile must wait for it
                asyncio.ensure_future(self._wrap_up(frame["attempt_id"]))

    async def _hang_up(self, attempt_id: int, after: float) -> None:
        await asyncio.sleep(after)
        with contextlib.suppress(Exception):
            await self._request({"type": "hangup", "attempt_id": attempt_id})

    async def _wrap_up(self, attempt_id: int) -> None:
        try:
            await self._dispose(attempt_id)
        finally:
            self._wrapping -= 1

    async def _dispose(self, attempt_id: int) -> None:
        await asyncio.sleep(self.rng.uniform(*self.options.wrap_s))
        pop = self.pops.pop(attempt_id, {})
        choices = [d for d in pop.get("dispositions", []) if d["code"] not in _AVOID]
        positive = [d for d in choices if d["positive"]]
        callbacks = [d for d in choices if d["callback"]]
        plain = [d for d in choices if not d["positive"] and not d["callback"]] or choices
        roll = self.rng.random()
        if positive and roll < self.options.positive_share:
            chosen = self.rng.choice(positive)
        elif callbacks and roll < self.options.positive_share + self.options.callback_share:
            chosen = self.rng.choice(callbacks)
        else:
            chosen = self.rng.choice(plain) if plain else {"code": "not_interested", "callback": False}
        frame: dict[str, Any] = {"type": "disposition", "attempt_id": attempt_id, "code": chosen["code"],
                                 "answers": answers_for(pop.get("form"), datetime.now(UTC).date())
                                 if chosen.get("positive") else {}}  # fmt: skip
        if chosen.get("callback"):
            due = datetime.now(UTC) + timedelta(hours=1)
            frame["callback"] = {"due_at": due.isoformat(), "personal": self.rng.random() < 0.5}
        for attempt in range(3):  # a resend after a lost answer is safe: dispositions are idempotent per attempt
            try:
                answer = await self._request(frame)
                self.stats.acked[attempt_id] = str(answer.get("disposition"))
                return
            except TimeoutError:
                continue
            except (RuntimeError, websockets.ConnectionClosed) as exc:
                self.stats.errors.append(f"{self.email}: disposition {attempt_id}: {exc}")
                return
            finally:
                if attempt == 2:
                    self.stats.errors.append(f"{self.email}: disposition {attempt_id}: no answer")


#: A busy daemon (503, "busy") is asked again this many times, with jittered exponential backoff.
RETRIES = 8


def _backoff(attempt: int) -> float:
    return min(5.0, 0.25 * 2.0**attempt) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter


async def _connect_retrying(url: str, subprotocols: list[str]) -> Any:
    """Open the console's websocket; a 503 (the daemon busy) is retried like the browser console does."""
    for attempt in range(RETRIES):
        try:
            return await websockets.connect(url, subprotocols=subprotocols)  # type: ignore[arg-type]
        except websockets.InvalidStatus as exc:
            if exc.response.status_code != 503 or attempt == RETRIES - 1:
                raise
        await asyncio.sleep(_backoff(attempt))
    raise AssertionError("unreachable")


async def ensure_bots(base_url: str, admin_email: str, admin_password: str, count: int, password: str) -> list[str]:
    """Bot agent accounts ``bot-agent-N@pivotal.local`` (created if missing, through the admin API)."""
    emails = [f"bot-agent-{i}@pivotal.local" for i in range(1, count + 1)]
    async with aiohttp.ClientSession() as http:
        token = await login(http, base_url, admin_email, admin_password)
        headers = {"Authorization": f"Bearer {token}"}
        for email in emails:
            body = {"email": email, "password": password, "roles": ["agent"], "display_name": email.split("@")[0]}
            async with http.post(f"{base_url}/api/users", json=body, headers=headers) as response:
                if response.status not in (201, 409):
                    raise RuntimeError(f"creating {email}: {response.status} {await response.text()}")
    return emails


async def run_bots(emails: list[str], options: BotOptions, duration_s: float) -> BotStats:
    stats = BotStats()
    stop = asyncio.Event()
    bots = [BotAgent(email, options, stats) for email in emails]
    tasks = [asyncio.create_task(bot.run(stop)) for bot in bots]
    try:
        await asyncio.wait(tasks, timeout=duration_s)  # sooner if every bot has stopped (the daemon went away)
    finally:
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for email, result in zip(emails, results, strict=True):
        if isinstance(result, BaseException):
            stats.errors.append(f"{email}: {type(result).__name__}: {result}")
    return stats
