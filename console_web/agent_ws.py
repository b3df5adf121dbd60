"""The agent console's websocket (protocol v1, ``console_web.protocol``): authenticate, then frames both ways.

The token is checked before the upgrade: a browser offers two subprotocols, ``pivotal.v1`` and
``bearer.<JWT>``, and the daemon selects ``pivotal.v1``; a program may instead put the token in an
``access_token`` query parameter. A frame the daemon refuses is answered with an ``error`` frame and the
connection stays open; only a console that stops reading (its queue overflowing) or a token that is no
longer valid ends it. Each connection has one writer task, so frames reach the agent in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from console_web import protocol
from dialer.agent_sessions import AgentSession, Console
from dialer.calls import Callback
from dialer.engine import Engine
from dialer.errors import Refused

log = structlog.get_logger(__name__)

ENGINE = web.AppKey("dialer_engine", Engine)
SUBPROTOCOL = "pivotal.v1"
HEARTBEAT_S = 20.0
RECHECK_S = 60.0

#: token -> user id, raising ``Unauthorized`` (the composition root supplies it: the API's own check).
Authenticate = Callable[[str], Awaitable[int]]


class Unauthorized(Exception):
    pass


def token_of(request: web.Request) -> str | None:
    for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        offered = offered.strip()
        if offered.startswith("bearer."):
            return offered[len("bearer.") :]
    return request.query.get("access_token") or None


async def serve(request: web.Request, authenticate: Authenticate) -> web.StreamResponse:
    token = token_of(request)
    if not token:
        raise web.HTTPUnauthorized(text="a token is required: subprotocol bearer.<token> or ?access_token=")
    try:
        user_id = await authenticate(token)
    except Unauthorized as exc:
        raise web.HTTPUnauthorized(text=str(exc)) from None
    engine = request.app[ENGINE]
    socket = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=HEARTBEAT_S,
                                   max_msg_size=protocol.MAX_FRAME_BYTES + 1024)  # fmt: skip
    await socket.prepare(request)
    connection = AgentConnection(engine, user_id, socket)
    watch = asyncio.create_task(_recheck(connection, token, authenticate), name=f"agent-token-{user_id}")
    try:
        await connection.run()
    finally:
        watch.cancel()
    return socket


async def _recheck(connection: AgentConnection, token: str, authenticate: Authenticate) -> None:
    """A token revoked, expired or whose account was deactivated ends the connection within RECHECK_S."""
    while True:
        await asyncio.sleep(RECHECK_S)
        try:
            await authenticate(token)
        except Unauthorized as exc:
            connection.console.send(protocol.error("unauthorized", f"signed out: {exc}"))
            connection.console.close()
            await connection.socket.close()
            return
        except Exception:  # the database is briefly away: keep the agent, check again later
            log.warning("agent_token_recheck_failed", user=connection.user_id)


class AgentConnection:
    def __init__(self, engine: Engine, user_id: int, socket: web.WebSocketResponse) -> None:
        self.engine = engine
        self.user_id = user_id
        self.socket = socket
        self.console = Console()
        self.session: AgentSession | None = engine.sessions.get(user_id)

    async def run(self) -> None:
        writer = asyncio.create_task(self._write(), name=f"agent-ws-{self.user_id}")
        self.console.send(protocol.welcome(self.user_id, await self.engine.campaigns_for(self.user_id)))
        if self.session is not None:  # a reconnect: the session (and any call) resumes on this console
            self.engine.attach(self.session, self.console)
        else:  # no session (never joined, or logged out meanwhile): the console must not think it is still in
            self.console.send(protocol.state("offline", datetime.now(UTC), None, None))
        try:
            async for message in self.socket:
                if self.console.closed:  # replaced by another console, or too slow to read: this one is done
                    break
                if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                    await self._frame(message.data)
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            session = self.engine.sessions.get(self.user_id)
            if session is not None:
                self.engine.detach(session, self.console)
            self.console.close()
            with contextlib.suppress(Exception):
                await writer
            await self.socket.close()

    async def _write(self) -> None:
        while True:
            frame = await self.console.queue.get()
            if frame is None:  # closed: replaced by another console, or a reader that fell too far behind
                with contextlib.suppress(Exception):
                    await self.socket.close()
                return
            try:
                await self.socket.send_json(frame)
            except (ConnectionError, RuntimeError):
                self.console.close()
                return

    async def _frame(self, data: str | bytes) -> None:
        frame_id = None
        try:
            frame = protocol.parse(data)
            frame_id = frame.id
            answer = await self._handle(frame)
            if answer is not None:
                self.console.send(protocol.ack(frame_id, **answer))
        except protocol.FrameError as exc:
            self.console.send(exc.frame())
        except TimeoutError:  # the bounded pool: every connection busy for database.acquire_timeout_s
            log.warning("database_busy", user=self.user_id, frame=frame_id)
            self.console.send(protocol.error("busy", "the database is busy; try again shortly", frame_id))
        except Refused as exc:
            refused = protocol.error(exc.code, exc.message, frame_id)
            if exc.fields:
                refused["fields"] = exc.fields
            self.console.send(refused)
        except Exception:
            log.exception("agent_frame_failed", user=self.user_id)
            self.console.send(protocol.error("internal", "the daemon could not handle this frame; try again",
                                             frame_id))  # fmt: skip

    def _session(self) -> AgentSession:
        session = self.engine.sessions.get(self.user_id)
        if session is None:
            raise Refused("not_joined", "join a campaign first")
        if session.console is not self.console:
            if self.console.closed or session.console is not None:
                raise Refused("replaced", "another console holds this session")
            self.engine.attach(session, self.console)  # this console outlived a logout and a fresh join
        return session

    async def _handle(self, frame: Any) -> dict[str, Any] | None:
        engine = self.engine
        kind = frame.type
        if kind == "ping":
            self.console.send({"type": "pong", "id": frame.id})
            return None
        if kind == "campaigns":
            return {"campaigns": await engine.campaigns_for(self.user_id)}
        if kind == "join":
            session = await engine.join(self.user_id, frame.campaign_id, self.console)
            return {"campaign_id": session.campaign_id, "session_id": session.session_id}
        session = self._session()
        if kind == "ready":
            engine.ready(session)
        elif kind == "pause":
            engine.pause(session, frame.reason)
        elif kind == "leave":
            await engine.leave(session)
        elif kind == "hangup":
            engine.hang_up(session, frame.attempt_id)
        elif kind == "preview_accept":
            engine.preview_accept(session, frame.contact_id)
        elif kind == "preview_skip":
            await engine.preview_skip(session, frame.contact_id)
        elif kind == "callback":
            ask = frame.callback
            callback_id = await engine.schedule_callback(
                session, frame.contact_id, Callback(ask.due_at, ask.personal, ask.notes)
            )
            return {"callback_id": callback_id}
        elif kind == "disposition":
            ask = frame.callback
            saved = await engine.dispose(
                session, attempt_id=frame.attempt_id, code=frame.code, answers=dict(frame.answers), notes=frame.notes,
                callback=Callback(ask.due_at, ask.personal, ask.notes) if ask is not None else None,
            )  # fmt: skip
            return {"attempt_id": frame.attempt_id, "disposition": saved.code, "lead_id": saved.lead_id,
                    "callback_id": saved.callback_id, "repeated": saved.repeated}  # fmt: skip
        return {}
