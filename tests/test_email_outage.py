"""A database outage in the middle of a send (a real TCP hop cut and restored): the sender waits it out, the
campaign finishes, and every recipient gets the message exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg

from sim.smtp_sink import RecordingHandler
from tests.email_setup import email_campaign, reset_email, wait_for
from tests.tcp_proxy import PostgresProxy


async def test_a_database_outage_mid_send_loses_nobody_and_doubles_nobody(
    make_client: Any, clean_db: asyncpg.Pool, database_url: str, sink: tuple[RecordingHandler, int]
) -> None:
    await reset_email(clean_db)
    handler, port = sink
    people = [f"person{n}@acme.example" for n in range(400)]
    campaign = await email_campaign(clean_db, people, port=port, max_per_second=100.0)
    proxy = await PostgresProxy(database_url).start()
    try:
        await make_client(database={"url": proxy.url, "pool_min": 1, "acquire_timeout_s": 5.0},
                          email={"sandbox": False})  # fmt: skip
        await wait_for(clean_db, "SELECT count(*) >= 60 FROM email_messages WHERE campaign_id = $1 AND status = "
                       "'sent'", campaign)  # fmt: skip
        await proxy.cut()  # the daemon loses PostgreSQL: marks and outcomes cannot be written
        await asyncio.sleep(2.0)
        await proxy.resume()
        await wait_for(clean_db, "SELECT status = 'completed' FROM campaigns WHERE id = $1", campaign, timeout=90)
    finally:
        await proxy.close()
    received = Counter(rcpt for _, _, rcpt, _ in handler.accepted)
    assert sorted(received) == sorted(people), "nobody lost"
    assert [address for address, n in received.items() if n > 1] == [], "nobody twice"
