"""Call recordings copied from the carrier's short-lived links (dialer/recordings.py): a real HTTP server stands
in for the carrier's storage; PostgreSQL holds the attempts and the webhook's event log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dialer.recordings import Recordings, path_of

AUDIO = b"ID3\x04 pretend mp3 " * 100


@pytest.fixture
async def attempt_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await clean_db.execute("TRUNCATE campaigns, contacts, call_attempts, call_events RESTART IDENTITY CASCADE")
    await clean_db.execute("INSERT INTO contacts (first_name) VALUES ('Ann')")
    await clean_db.execute("INSERT INTO campaigns (name, channel) VALUES ('Calls', 'phone')")
    await clean_db.execute(
        """INSERT INTO call_attempts (campaign_id, contact_id, attempt_number, to_e164, from_e164, dial_command_id,
                                      call_leg_id, call_session_id)
           VALUES (1, 1, 1, '+12125550100', '+12125550199', 'dial-1', 'leg-1', 'session-1')"""
    )
    return clean_db


async def _storage(fail_first: int) -> tuple[TestServer, list[str]]:
    asked: list[str] = []

    async def recording(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        if len(asked) <= fail_first:
            return web.Response(status=503)
        return web.Response(body=AUDIO, content_type="audio/mpeg")

    app = web.Application()
    app.router.add_get("/rec/{name}", recording)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, asked


async def _saved(pool: asyncpg.Pool) -> str | None:
    for _ in range(100):
        file: str | None = await pool.fetchval("SELECT recording_file FROM call_attempts WHERE id = 1")
        if file is not None:
            return file
        await asyncio.sleep(0.05)
    return None


async def test_a_signed_link_is_copied_through_a_failure_and_named_by_its_kind(
    attempt_db: asyncpg.Pool, tmp_path: Path
) -> None:
    server, asked = await _storage(fail_first=1)
    recordings = Recordings(attempt_db, tmp_path / "recordings", first_wait_s=0.01)
    try:
        url = f"http://127.0.0.1:{server.port}/rec/x-1643974566.mp3?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=600"
        recordings.saved({"call_leg_id": "leg-1", "call_session_id": "session-1",
                          "recording_urls": {"mp3": url, "wav": None}})  # fmt: skip
        file = await _saved(attempt_db)
    finally:
        await recordings.close()
        await server.close()
    created = await attempt_db.fetchval("SELECT created_at FROM call_attempts WHERE id = 1")
    assert file == f"{created:%Y-%m}/1.mp3"  # the kind, not what follows the URL's last dot
    assert len(asked) == 2  # the carrier's 503 was tried again
    stored = path_of(tmp_path / "recordings", file)
    assert stored is not None
    assert stored.read_bytes() == AUDIO
    assert not list((tmp_path / "recordings").rglob("*.part"))
    assert path_of(tmp_path / "recordings", "../../etc/passwd") is None


async def test_a_restart_copies_again_what_the_event_log_holds(attempt_db: asyncpg.Pool, tmp_path: Path) -> None:
    server, _ = await _storage(fail_first=0)
    url = f"http://127.0.0.1:{server.port}/rec/abc.wav"
    envelope = {"data": {"id": "ev-1", "event_type": "call.recording.saved",
                         "payload": {"call_leg_id": "leg-1", "recording_urls": {"mp3": None, "wav": url}}}}  # fmt: skip
    await attempt_db.execute(
        """INSERT INTO call_events (event_id, event_type, occurred_at, received_at, handling, payload)
           VALUES ('ev-1', 'call.recording.saved', $1, now(), 'unmatched', $2::jsonb)""",
        datetime.now(UTC), envelope,
    )  # fmt: skip
    recordings = Recordings(attempt_db, tmp_path / "recordings", first_wait_s=0.01)
    try:
        assert await recordings.resume() == 1
        file = await _saved(attempt_db)
        assert file is not None
        assert file.endswith("/1.wav")
        assert await recordings.resume() == 0  # held now: nothing to do again
    finally:
        await recordings.close()
        await server.close()
