"""kill -9 in the middle of an e-mail campaign: the daemon is a child process, the SMTP relay (aiosmtpd) lives on
in this process. After the restart the campaign completes: every recipient got the message, and the only
duplicates are messages the restarted daemon logged as ambiguous (in flight at the kill)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from sim.smtp_sink import RecordingHandler, controller
from tests.daemon import PIVOTAL, Daemon, clean_environment, free_port
from tests.email_setup import email_campaign, reset_email, wait_for


async def _daemon(env: dict[str, str], data_dir: str, port: int) -> Daemon:
    daemon = Daemon([PIVOTAL, "--data-dir", data_dir, "run", "--port", str(port)], env)
    await daemon.start()
    await daemon.wait_for_log("listening", timeout=60)
    return daemon


async def test_kill_9_mid_send_loses_no_recipient_and_duplicates_only_the_logged_ambiguous(
    database_url: str, clean_db: asyncpg.Pool, tmp_path: Path
) -> None:
    await reset_email(clean_db)
    handler = RecordingHandler()
    sink = controller(handler)
    sink.start()
    recipients = [f"person{n}@acme.example" for n in range(3000)]
    campaign = await email_campaign(clean_db, recipients, port=sink.port, connections=4, max_per_second=400)
    env = clean_environment(PIVOTAL_DATABASE_URL=database_url, PIVOTAL_LOGGING__FORMAT="json",
                            PIVOTAL_TELEPHONY__SANDBOX="false", PIVOTAL_EMAIL__SANDBOX="false",
                            PIVOTAL_AUTH__BCRYPT_ROUNDS="4")  # fmt: skip
    port = free_port()
    daemon = await _daemon(env, str(tmp_path), port)
    try:
        while len(handler.accepted) < 500:  # noqa: ASYNC110 - the relay runs in its own thread
            await asyncio.sleep(0.02)
        daemon.signal(signal.SIGKILL)
        await daemon.wait()
        at_kill = len(handler.accepted)
        in_doubt = await clean_db.fetchval(
            "SELECT count(*) FROM email_messages WHERE campaign_id = $1 AND status = 'sending'", campaign
        )
        assert at_kill < len(recipients), "killed mid-send"

        daemon = await _daemon(env, str(tmp_path), port)
        await wait_for(clean_db, "SELECT status = 'completed' FROM campaigns WHERE id = $1", campaign, timeout=60)
        ambiguous: list[Any] = []
        for entry in daemon.logs:
            if entry.get("event") == "ambiguous messages after a restart":
                ambiguous += entry["message_ids"]
        assert len(ambiguous) == in_doubt
    finally:
        await daemon.stop()
        sink.stop()

    delivered = Counter(rcpt for _, _, rcpt, _ in handler.accepted)
    assert set(delivered) == set(recipients), "nobody missed"
    duplicated = {int(ledger_id) for _, ledger_id, rcpt, _ in handler.accepted if delivered[rcpt] > 1}
    assert duplicated <= set(ambiguous), "every duplicate was in flight at the kill and logged so"
    assert sum(delivered.values()) - len(recipients) <= in_doubt
    assert await clean_db.fetchval(
        "SELECT count(*) FROM email_messages WHERE campaign_id = $1 AND status = 'sent'", campaign
    ) == len(recipients)
