"""Call recordings: the carrier's ``call.recording.saved`` link copied into our own storage.

The carrier's links last ten minutes, so the file is fetched at once (a few tries with back-off) into
``<data_dir>/recordings/<yyyy-mm>/<attempt id>.mp3`` (written to a temporary name, synced, renamed, the directory
synced: a crash leaves no half file under the real name, and the row never points at a file a power cut took)
and the attempt records where. The event carries no call_control_id; the customer leg's ``call_leg_id`` (or
failing that its ``call_session_id``) names the attempt. A restart cancels copies under way; ``resume`` starts
again those whose event (in ``call_events``) is recent enough for its link to work.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import structlog

log = structlog.get_logger("pivotal.dialer.recordings")

MAX_BYTES = 200 * 1024 * 1024  # about 3.5 hours of dual-channel MP3
TRIES = 4
FIRST_WAIT_S = 2.0


class Recordings:
    def __init__(self, pool: asyncpg.Pool, directory: Path, *, first_wait_s: float = FIRST_WAIT_S) -> None:
        self.pool, self.directory, self.first_wait_s = pool, directory, first_wait_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def saved(self, payload: dict[str, Any]) -> None:
        """The webhook ingress's hook for ``call.recording.saved`` (synchronous: the copy runs as a task)."""
        urls = payload.get("recording_urls") or {}
        found = [(kind, urls.get(kind)) for kind in ("mp3", "wav")] if isinstance(urls, dict) else []
        kind, url = next(((k, u) for k, u in found if isinstance(u, str) and u), ("", None))
        leg, session = payload.get("call_leg_id"), payload.get("call_session_id")
        if url is None or not url.startswith(("https://", "http://")):
            log.warning("recording_without_link", leg=leg)
            return
        self._spawn(self._copy(url, kind, leg if isinstance(leg, str) else None,
                               session if isinstance(session, str) else None))  # fmt: skip

    async def resume(self) -> int:
        """Copies again the recordings of the last ten minutes that no attempt holds yet (after a restart)."""
        rows = await self.pool.fetch(
            """SELECT e.payload->'data'->'payload' AS payload FROM call_events e
                WHERE e.event_type = 'call.recording.saved' AND e.received_at > now() - interval '10 minutes'
                  AND NOT EXISTS (SELECT 1 FROM call_attempts a WHERE a.recording_file IS NOT NULL
                                     AND a.call_leg_id = e.payload->'data'->'payload'->>'call_leg_id')"""
        )
        payloads = [row["payload"] for row in rows if isinstance(row["payload"], dict)]
        for payload in payloads:
            self.saved(payload)
        return len(payloads)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _copy(self, url: str, kind: str, leg: str | None, session: str | None) -> None:
        wait = self.first_wait_s
        attempt = None
        for number in range(1, TRIES + 1):  # each step through database outages and carrier hiccups
            try:
                if attempt is None:
                    attempt = await self.pool.fetchrow(
                        """SELECT id, created_at FROM call_attempts
                            WHERE ($1::text IS NOT NULL AND call_leg_id = $1)
                               OR ($1::text IS NULL AND call_session_id = $2)
                            ORDER BY id DESC LIMIT 1""",
                        leg, session,
                    )  # fmt: skip
                    if attempt is None:
                        log.warning("recording_for_no_known_call", leg=leg, session=session)
                        return
                relative = Path(attempt["created_at"].strftime("%Y-%m")) / f"{attempt['id']}.{kind}"
                await self._download(url, self.directory / relative)
                await self.pool.execute(
                    """UPDATE call_attempts SET recording_file = $2, recording_saved_at = $3, updated_at = now()
                        WHERE id = $1""",
                    attempt["id"], str(relative), datetime.now(UTC),
                )  # fmt: skip
                log.info("recording_saved", attempt=attempt["id"], file=str(relative))
                return
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as exc:  # fmt: skip
                log.warning("recording_copy_failed", leg=leg, try_=number, error=repr(exc))
                if number < TRIES:
                    await asyncio.sleep(wait)
                    wait *= 2
        log.error("recording_lost", leg=leg, url_expires="10 minutes after the call")

    async def _download(self, url: str, target: Path) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        async with self._session.get(url, allow_redirects=True) as response:
            if response.status != 200:
                raise ValueError(f"the carrier answered {response.status}")
            size = 0
            with partial.open("wb") as out:
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise ValueError(f"the recording is over {MAX_BYTES // 2**20} MB")
                    out.write(chunk)
                out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
        partial.replace(target)
        await asyncio.to_thread(_sync_directory, target.parent)


def _sync_directory(directory: Path) -> None:
    """The rename is durable only once the directory is."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def path_of(directory: Path, recording_file: str) -> Path | None:
    """The stored file for an attempt's ``recording_file``; None if it is gone or would leave the directory."""
    candidate = (directory / recording_file).resolve()
    if directory.resolve() not in candidate.parents or not candidate.is_file():
        return None
    return candidate
