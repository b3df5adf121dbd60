"""Agent state changes, written in batches (every FLUSH_S): the session's current state and the time-in-state
history (``agent_state_changes``). A change that repeats the last written state and reason is skipped; a batch
that fails is kept for the next flush."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)

FLUSH_S = 0.5


class AgentStateLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._changes: list[tuple[Any, ...]] = []
        self._last_state: dict[int, tuple[str, str | None]] = {}  # agent session -> (state, reason) last written
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_every(), name="agent-state-log")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()

    def append(self, change: tuple[Any, ...]) -> None:
        """(session id, user id, campaign id, state, pause reason, at, call attempt id)"""
        self._changes.append(change)

    def forget(self, session_id: int) -> None:
        """The session ended: its last state need not be remembered."""
        self._last_state.pop(session_id, None)

    async def _flush_every(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except Exception:
                log.exception("agent_state_log_failed")

    async def flush(self) -> None:
        """Agent state changes, in batches: the session's current state and the time-in-state history."""
        if not self._changes:
            return
        changes, self._changes = self._changes, []
        last: dict[int, tuple[Any, ...]] = {}
        known = dict(self._last_state)
        rows = []
        for session_id, user_id, campaign_id, state, reason, at, attempt_id in changes:
            before = known.get(session_id)
            if before == (state, reason):
                continue
            rows.append((session_id, user_id, campaign_id, before[0] if before else None, state, reason, attempt_id,
                         at))  # fmt: skip
            known[session_id] = (state, reason)
            last[session_id] = (session_id, state, reason, at)
        if not rows:
            return
        try:
            await self._write_rows(rows, list(last.values()))
        except BaseException:
            self._changes = changes + self._changes  # kept for the next flush
            raise
        self._last_state.update(known)

    async def _write_rows(self, rows: list[tuple[Any, ...]], last: list[tuple[Any, ...]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO agent_state_changes (agent_session_id, user_id, campaign_id, from_state, to_state,
                                                    reason, call_attempt_id, at)
                   VALUES ($1, $2, $3, $4::agent_state, $5::agent_state, $6, $7, $8)""",
                rows,
            )
            await conn.executemany(
                """UPDATE agent_sessions SET state = $2::agent_state,
                          pause_reason = CASE WHEN $2 = 'paused' THEN $3 END, state_changed_at = $4,
                          updated_at = now()
                    WHERE id = $1 AND ended_at IS NULL""",
                [(sid, state, reason if reason and _code(reason) else "other", at)
                 for sid, state, reason, at in last],
            )  # fmt: skip


def _code(reason: str) -> bool:
    return reason[:1].isalpha() and reason.islower() and all(c.isalnum() or c == "_" for c in reason)
