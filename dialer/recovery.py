"""What a previous process left in flight, settled before any runner dials (after kill -9, a crash, a reboot).

Agent sessions are closed (agents reconnect; their parked softphone legs are hung up so that the softphones call
in again). Live attempts are hung up at the carrier and their rows ended: a conversation waits for its agent's
disposition (offered again as ``owed``), an abandoned call keeps its abandon and lock, any other gets the
dialer's "failed" outcome and the retry rules. Members claimed by a hopper go back to the queue. One node owns
every campaign (DESIGN s9's shared ownership is not built yet).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from dialer import attempts, campaign_config
from dialer.carrier import Carrier

log = structlog.get_logger(__name__)


async def recover(
    pool: asyncpg.Pool,
    carrier_for: Callable[[int | None], Awaitable[Carrier]],
    hang_up_leg: Callable[[str], Awaitable[None]],
) -> None:
    parked = await pool.fetch(
        """UPDATE agent_sessions SET state = 'offline', pause_reason = NULL, ended_at = now(),
                      end_reason = 'daemon_restart', state_changed_at = now(), updated_at = now()
                WHERE ended_at IS NULL RETURNING parked_call_control_id"""
    )
    for row in parked:  # agents' softphone legs: the softphones call in again when their agents rejoin
        if row["parked_call_control_id"]:
            await hang_up_leg(row["parked_call_control_id"])
    live = await pool.fetch(
        """SELECT id, campaign_id, call_control_id, telephony_connection_id, bridged_at, agent_user_id, abandoned,
                      answered_at
                 FROM call_attempts WHERE ended_at IS NULL ORDER BY id"""
    )
    hung_up = 0
    configs: dict[int, campaign_config.CampaignConfig | None] = {}
    for row in live:
        if row["call_control_id"]:
            try:
                carrier = await carrier_for(row["telephony_connection_id"])
                await carrier.hangup(row["call_control_id"], command_id=f"recover-{row['id']}")
                hung_up += 1
            except Exception as exc:  # the carrier ends every call eventually; the row is settled either way
                log.warning("orphan_hangup_failed", attempt=row["id"], error=str(exc))
        talking = row["bridged_at"] is not None and row["agent_user_id"] is not None
        outcome = None
        config = None
        if not talking:
            if row["campaign_id"] not in configs:  # once per campaign, however many calls it had live
                configs[row["campaign_id"]] = None
                with contextlib.suppress(Exception):
                    configs[row["campaign_id"]] = await campaign_config.load(pool, row["campaign_id"])
            config = configs[row["campaign_id"]]
            code = "abandoned" if row["abandoned"] else "failed"
            outcome = config.system[code] if config else None
        await attempts.finish(
                pool, row["id"], None, abandoned=row["abandoned"], answered_at=row["answered_at"],
                failure_reason="the daemon restarted during the call", outcome=outcome,
                max_attempts=config.max_attempts if config else 5,
                default_retry_minutes=config.default_retry_minutes if config else 240,
                lockout_hours=config.abandon_lockout_hours if config and row["abandoned"] else 0,
            )  # fmt: skip
    returned = await pool.execute(
        """UPDATE campaign_members m
                  SET status = CASE WHEN EXISTS (SELECT 1 FROM callbacks b WHERE b.campaign_id = m.campaign_id
                                                   AND b.contact_id = m.contact_id AND b.status = 'scheduled')
                                    THEN 'callback' WHEN m.attempts = 0 THEN 'new' ELSE 'scheduled' END
                                    ::audience_member_status,
                      updated_at = now()
                WHERE m.status = 'in_progress' AND NOT EXISTS (
                      SELECT 1 FROM call_attempts a WHERE a.campaign_id = m.campaign_id AND a.contact_id = m.contact_id
                         AND a.bridged_at IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM attempt_dispositions d WHERE d.call_attempt_id = a.id))"""
    )
    log.info("dialer_recovered", live_attempts=len(live), hung_up=hung_up,
                 members_returned=int(returned.rsplit(" ", 1)[-1]))  # fmt: skip
