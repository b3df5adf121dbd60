"""The campaigns' clock: a scheduled campaign starts at its time (its audience frozen then), one past its end is
completed, and one no longer ready at its time goes back to draft saying why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from tests.conftest import AppFactory, bearer, login
from tests.dialer_setup import make_campaign, sandbox_daemon
from tests.email_setup import wait_for


async def test_a_scheduled_campaign_starts_at_its_time_and_completes_at_its_end(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    client = await sandbox_daemon(make_client)
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="preview", contacts=3, start=False)
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    patched = await client.patch(f"/api/campaigns/{cid}", json={"starts_at": soon}, headers=manager)
    assert patched.status == 200, await patched.text()
    scheduled = await client.post(f"/api/campaigns/{cid}/actions/schedule", headers=manager)
    assert scheduled.status == 200, await scheduled.text()
    assert await dialer_db.fetchval("SELECT count(*) FROM campaign_members WHERE campaign_id = $1", cid) == 0

    await wait_for(dialer_db, "SELECT status = 'running' FROM campaigns WHERE id = $1", cid, timeout=15)
    assert await dialer_db.fetchval("SELECT count(*) FROM campaign_members WHERE campaign_id = $1", cid) == 3
    assert await dialer_db.fetchval(
        "SELECT actor_id IS NULL FROM audit_log WHERE action = 'campaign.start' AND entity_id = $1", str(cid)
    ), "started by the system"

    await dialer_db.execute("UPDATE campaigns SET ends_at = now() WHERE id = $1", cid)
    await wait_for(dialer_db, "SELECT status = 'completed' FROM campaigns WHERE id = $1", cid, timeout=15)


async def test_a_campaign_not_ready_at_its_time_goes_back_to_draft(
    make_client: AppFactory, role_users: Any, dialer_db: asyncpg.Pool
) -> None:
    client = await sandbox_daemon(make_client)
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="preview", contacts=3, start=False)
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    await client.patch(f"/api/campaigns/{cid}", json={"starts_at": soon}, headers=manager)
    assert (await client.post(f"/api/campaigns/{cid}/actions/schedule", headers=manager)).status == 200
    await dialer_db.execute("DELETE FROM campaign_audience_rules WHERE campaign_id = $1", cid)  # the list is gone

    await wait_for(dialer_db, "SELECT status = 'draft' FROM campaigns WHERE id = $1", cid, timeout=15)
    detail = await dialer_db.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'campaign.schedule_failed' AND entity_id = $1", str(cid)
    )
    assert [item["key"] for item in detail["checklist"]] == ["audience"]
