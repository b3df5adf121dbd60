"""Attempts in PostgreSQL: the row committed before the dial, the carrier's facts at the end, the dialer's own
outcome, and the agent's disposition (durable before it is acknowledged, once per attempt).

Every write that decides a contact's future (its disposition, its member row, a callback, a lead, a
suppression) happens in one transaction, so a crash leaves either all of it or none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from dialer.errors import Refused
from dialer.leg_state import Leg
from dialer.outcome_rules import Flags, member_step

_AMD = frozenset({"human", "human_residence", "human_business", "machine", "not_sure", "silence", "fax_detected",
                  "screening"})  # fmt: skip
_GREETING = frozenset({"beep_detected", "ended", "not_sure", "no_beep_detected", "prompt_ended"})
_CAUSE = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class NewAttempt:
    id: int
    attempt_number: int
    dial_command_id: str
    client_state: bytes


def client_state(campaign_id: int, attempt_id: int) -> bytes:
    """Echoed by the carrier in every webhook of the leg: which attempt an event belongs to."""
    return f"pv1:{campaign_id}:{attempt_id}".encode()


def parse_client_state(raw: object) -> tuple[int, int] | None:
    """(campaign id, attempt id) from a webhook's Base64 ``client_state``; None if it is not one of ours."""
    if not isinstance(raw, str) or len(raw) > 200:
        return None
    try:
        text = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    parts = text.split(":")
    if len(parts) != 3 or parts[0] != "pv1" or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return int(parts[1]), int(parts[2])


async def create(
    pool: asyncpg.Pool,
    *,
    campaign_id: int,
    contact_id: int,
    account_id: int | None,
    connection_id: int,
    to_e164: str,
    from_e164: str,
    agent_user_id: int | None = None,
) -> NewAttempt:
    """The attempt's row, committed before the dial (with the dial's command id), and the member's count."""
    command_id = str(uuid.uuid4())
    async with pool.acquire() as conn, conn.transaction():
        number = await conn.fetchval(
            """UPDATE campaign_members SET attempts = attempts + 1, last_attempt_at = now(), updated_at = now()
                WHERE campaign_id = $1 AND contact_id = $2 RETURNING attempts""",
            campaign_id,
            contact_id,
        )
        attempt_id = await conn.fetchval(
            """INSERT INTO call_attempts (campaign_id, contact_id, account_id, attempt_number, agent_user_id,
                                          telephony_connection_id, to_e164, from_e164, dial_command_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
            campaign_id, contact_id, account_id, number or 1, agent_user_id, connection_id, to_e164, from_e164,
            command_id,
        )  # fmt: skip
        state = client_state(campaign_id, attempt_id)
        await conn.execute(
            "UPDATE call_attempts SET client_state = $2 WHERE id = $1", attempt_id, base64.b64encode(state).decode()
        )
    return NewAttempt(attempt_id, number or 1, command_id, state)


async def dialled(pool: asyncpg.Pool, attempt_id: int, ccid: str, leg_id: str | None, session_id: str | None) -> None:
    await pool.execute(
        """UPDATE call_attempts SET call_control_id = $2, call_leg_id = $3, call_session_id = $4,
                  state = CASE WHEN ended_at IS NULL THEN 'dialing' ELSE state END,
                  dialed_at = now(), state_changed_at = now(), updated_at = now() WHERE id = $1""",
        attempt_id, ccid, leg_id, session_id,
    )  # fmt: skip


async def assigned(pool: asyncpg.Pool, attempt_id: int, user_id: int, session_id: int | None, command_id: str) -> None:
    """The call reached this agent (recovery and the disposition's ownership check read it): retried, since
    an agent could not disposition a call whose row does not name them."""
    for attempt in range(5):
        try:
            await pool.execute(
                """UPDATE call_attempts SET agent_user_id = $2, agent_session_id = $3, bridge_command_id = $4,
                          state = CASE WHEN ended_at IS NULL THEN 'bridged' ELSE state END,
                          bridged_at = coalesce(bridged_at, now()), state_changed_at = now(), updated_at = now()
                    WHERE id = $1""",
                attempt_id, user_id, session_id, command_id,
            )  # fmt: skip
            return
        except (asyncpg.PostgresError, OSError, TimeoutError):
            if attempt == 4:
                raise
            await asyncio.sleep(0.2 * 2**attempt)


async def mark_abandoned(pool: asyncpg.Pool, attempt_id: int) -> None:
    """Written when the abandon is decided, not at the call's end: a crash in between must not lose it."""
    await pool.execute(
        """UPDATE call_attempts SET abandoned = true, answered_at = coalesce(answered_at, now()), updated_at = now()
            WHERE id = $1""",
        attempt_id,
    )


def _facts(leg: Leg | None) -> dict[str, Any]:
    if leg is None:
        return {}
    cause = leg.hangup_cause if leg.hangup_cause and _CAUSE.match(leg.hangup_cause) else None
    source = leg.hangup_source if leg.hangup_source in ("caller", "callee", "unknown") else None
    return {
        "answered_at": leg.answered_at, "greeting_ended_at": leg.greeting_ended_at, "bridged_at": leg.bridged_at,
        "amd_result": (leg.amd_result if leg.amd_result in _AMD else "not_sure") if leg.amd_result else None,
        "amd_greeting_result": leg.greeting_result if leg.greeting_result in _GREETING else None,
        "hangup_cause": cause, "hangup_source": source, "sip_hangup_cause": (leg.sip_hangup_cause or "")[:64] or None,
    }  # fmt: skip


async def finish(
    pool: asyncpg.Pool,
    attempt_id: int,
    leg: Leg | None,
    *,
    abandoned: bool,
    answered_at: datetime | None,
    failure_reason: str | None = None,
    outcome: Flags | None = None,
    max_attempts: int = 5,
    default_retry_minutes: int = 240,
    lockout_hours: int = 0,
    callback_id: int | None = None,
) -> None:
    """The attempt is over: its facts; and, with ``outcome`` (nobody will disposition it), the dialer's own
    disposition and the member's next step, in one transaction (a callback it was made for is missed)."""
    facts = _facts(leg)
    answered = facts.get("answered_at") or answered_at
    if abandoned and answered is None:
        answered = datetime.now(UTC)
    state = "abandoned" if abandoned else ("completed" if answered else "failed")
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE call_attempts
                  SET state = $2, ended_at = coalesce(ended_at, $3), answered_at = coalesce(answered_at, $4),
                      greeting_ended_at = coalesce(greeting_ended_at, $5),
                      bridged_at = coalesce(bridged_at, $6), amd_result = coalesce(amd_result, $7::amd_result),
                      amd_greeting_result = coalesce(amd_greeting_result, $8), hangup_cause = $9,
                      hangup_source = $10, sip_hangup_cause = $11, abandoned = abandoned OR $12,
                      failure_reason = coalesce($13, failure_reason), state_changed_at = now(), updated_at = now()
                WHERE id = $1
            RETURNING campaign_id, contact_id""",
            attempt_id, state, (leg.ended_at if leg and leg.ended_at else now), answered,
            facts.get("greeting_ended_at"), facts.get("bridged_at"), facts.get("amd_result"),
            facts.get("amd_greeting_result"), facts.get("hangup_cause"), facts.get("hangup_source"),
            facts.get("sip_hangup_cause"), abandoned, failure_reason,
        )  # fmt: skip
        if row is None or outcome is None:
            return
        inserted = await conn.fetchval(
            """INSERT INTO attempt_dispositions (call_attempt_id, campaign_id, contact_id, disposition_id,
                                                 disposition_code)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT (call_attempt_id) DO NOTHING RETURNING id""",
            attempt_id, row["campaign_id"], row["contact_id"], outcome.id, outcome.code,
        )  # fmt: skip
        if inserted is not None and callback_id is not None:
            await _close_callback(conn, callback_id, "missed", attempt_id)
        if inserted is not None:
            await _step_member(conn, row["campaign_id"], row["contact_id"], outcome, max_attempts,
                               default_retry_minutes, now, None, lockout_hours if abandoned else 0)  # fmt: skip


async def _step_member(
    conn: asyncpg.Connection,
    campaign_id: int,
    contact_id: int,
    flags: Flags,
    max_attempts: int,
    default_retry_minutes: int,
    now: datetime,
    callback_due: datetime | None,
    lockout_hours: int = 0,
) -> None:
    attempts = await conn.fetchval(
        "SELECT attempts FROM campaign_members WHERE campaign_id = $1 AND contact_id = $2 FOR UPDATE",
        campaign_id,
        contact_id,
    )
    if attempts is None:
        return  # the member was removed from the campaign meanwhile
    step = member_step(flags, attempts=attempts, max_attempts=max_attempts,
                       default_retry_minutes=default_retry_minutes, now=now, callback_due=callback_due)  # fmt: skip
    await conn.execute(
        """UPDATE campaign_members
              SET status = $3::audience_member_status, next_attempt_at = $4, last_outcome = $5,
                  locked_until = CASE WHEN $6 > 0 THEN $7::timestamptz + make_interval(hours => $6)
                                      ELSE locked_until END,
                  updated_at = now()
            WHERE campaign_id = $1 AND contact_id = $2""",
        campaign_id, contact_id, step.status, step.next_attempt_at, flags.code, lockout_hours, now,
    )  # fmt: skip


async def _close_callback(conn: asyncpg.Connection, callback_id: int, status: str, attempt_id: int) -> None:
    await conn.execute(
        """UPDATE callbacks SET status = $2::callback_status, closed_at = now(), completed_attempt_id = $3,
                  updated_at = now() WHERE id = $1 AND status = 'scheduled'""",
        callback_id, status, attempt_id,
    )  # fmt: skip


@dataclass(frozen=True)
class Saved:
    disposition_id: int
    code: str
    lead_id: int | None
    callback_id: int | None
    repeated: bool
    account_id: int | None = None  # the same disposition had been saved before (a resend): nothing new was written


async def dispose(
    pool: asyncpg.Pool,
    *,
    attempt_id: int,
    user_id: int,
    flags: Flags,
    answers: dict[str, Any],
    notes: str,
    callback_due: datetime | None,
    callback_personal: bool,
    callback_notes: str,
    max_attempts: int,
    default_retry_minutes: int,
    client_organisation_id: int | None,
    source_callback_id: int | None = None,
) -> Saved:
    """The agent's disposition and everything it decides, committed in one transaction before it returns. Two
    sends of one disposition at once: the second finds the first's row and is told it was repeated."""
    for first in (True, False):
        try:
            return await _dispose(pool, attempt_id, user_id, flags, answers, notes, callback_due, callback_personal,
                                  callback_notes, max_attempts, default_retry_minutes, client_organisation_id,
                                  source_callback_id)  # fmt: skip
        except asyncpg.UniqueViolationError:
            if not first:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _dispose(
    pool: asyncpg.Pool,
    attempt_id: int,
    user_id: int,
    flags: Flags,
    answers: dict[str, Any],
    notes: str,
    callback_due: datetime | None,
    callback_personal: bool,
    callback_notes: str,
    max_attempts: int,
    default_retry_minutes: int,
    client_organisation_id: int | None,
    source_callback_id: int | None,
) -> Saved:
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        attempt = await conn.fetchrow(
            """SELECT a.id, a.campaign_id, a.contact_id, a.account_id, a.agent_user_id, a.to_e164,
                      d.id AS disposition_id, d.disposition_code, d.callback_id,
                      (SELECT l.id FROM leads l WHERE l.call_attempt_id = a.id) AS lead_id
                 FROM call_attempts a LEFT JOIN attempt_dispositions d ON d.call_attempt_id = a.id
                WHERE a.id = $1 FOR UPDATE OF a""",
            attempt_id,
        )
        if attempt is None or attempt["agent_user_id"] != user_id:
            raise Refused("not_your_call", f"call attempt {attempt_id} is not one of your calls")
        if attempt["disposition_id"] is not None:
            if attempt["disposition_code"] != flags.code:
                raise Refused("already_disposed", f"this call was already saved as {attempt['disposition_code']!r}")
            return Saved(attempt["disposition_id"], flags.code, attempt["lead_id"], attempt["callback_id"], True,
                         attempt["account_id"])  # fmt: skip
        campaign_id, contact_id = attempt["campaign_id"], attempt["contact_id"]
        if source_callback_id is not None:  # the callback this call was made for is done (a new one may follow)
            await _close_callback(conn, source_callback_id, "completed", attempt_id)
        callback_id = None
        if flags.is_callback and callback_due is not None:
            callback_id = await conn.fetchval(
                """INSERT INTO callbacks (campaign_id, contact_id, kind, assigned_user_id, due_at, notes,
                                          source_attempt_id, created_by)
                   VALUES ($1, $2, $3::callback_kind, $4, $5, $6, $7, $8)
                   ON CONFLICT (campaign_id, contact_id) WHERE status = 'scheduled'
                   DO UPDATE SET kind = EXCLUDED.kind, assigned_user_id = EXCLUDED.assigned_user_id,
                                 due_at = EXCLUDED.due_at, notes = EXCLUDED.notes,
                                 source_attempt_id = EXCLUDED.source_attempt_id, updated_at = now()
                   RETURNING id""",
                campaign_id, contact_id, "personal" if callback_personal else "campaign",
                user_id if callback_personal else None, callback_due, callback_notes, attempt_id, user_id,
            )  # fmt: skip
        disposition_id = await conn.fetchval(
            """INSERT INTO attempt_dispositions (call_attempt_id, campaign_id, contact_id, disposition_id,
                                                 disposition_code, agent_user_id, form_answers, notes, callback_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9) RETURNING id""",
            attempt_id, campaign_id, contact_id, flags.id, flags.code, user_id, answers, notes,
            callback_id,
        )  # fmt: skip
        await _step_member(conn, campaign_id, contact_id, flags, max_attempts, default_retry_minutes, now,
                           callback_due)  # fmt: skip
        if flags.is_dnc:
            await conn.execute(
                """INSERT INTO suppressions (channel, scope, value, source, reason, detail, added_by)
                   VALUES ('phone', 'global', $1, 'agent', 'the contact asked not to be called again',
                           jsonb_build_object('call_attempt_id', $2::bigint), $3)
                   ON CONFLICT (channel, scope, campaign_id, value) WHERE lifted_at IS NULL DO NOTHING""",
                attempt["to_e164"], attempt_id, user_id,
            )  # fmt: skip
        lead_id = None
        if flags.is_positive:
            lead_id = await conn.fetchval(
                """INSERT INTO leads (campaign_id, contact_id, account_id, call_attempt_id, client_organisation_id,
                                      agent_user_id, form_answers)
                   VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
                   ON CONFLICT (campaign_id, contact_id) DO NOTHING RETURNING id""",
                campaign_id, contact_id, attempt["account_id"], attempt_id, client_organisation_id, user_id,
                answers,
            )  # fmt: skip
            if lead_id is not None:
                await conn.execute(
                    """INSERT INTO lead_qa_events (lead_id, analyst_id, to_status, reason, detail)
                       VALUES ($1, NULL, 'new', 'created from a positive disposition',
                               jsonb_build_object('call_attempt_id', $2::bigint, 'agent_user_id', $3::bigint))""",
                    lead_id, attempt_id, user_id,
                )  # fmt: skip
    return Saved(disposition_id, flags.code, lead_id, callback_id, False, attempt["account_id"])


async def owed(pool: asyncpg.Pool, user_id: int, campaign_id: int) -> list[asyncpg.Record]:
    """The agent's conversations that ended without a disposition (a lost connection, a restart)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT a.id, a.contact_id, a.account_id, a.to_e164, a.bridged_at, a.ended_at
             FROM call_attempts a
            WHERE a.agent_user_id = $1 AND a.campaign_id = $2 AND a.bridged_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM attempt_dispositions d WHERE d.call_attempt_id = a.id)
            ORDER BY a.id""",
        user_id,
        campaign_id,
    )
    return rows


async def history(pool: asyncpg.Pool, contact_id: int, *, before_attempt: int, limit: int = 10) -> list[dict[str, Any]]:
    """The contact's last calls before this one, newest first, for the agent's screen pop."""
    rows = await pool.fetch(
        """SELECT a.id, a.created_at, c.name AS campaign, u.display_name, u.email, a.state::text AS state,
                  a.hangup_cause, a.abandoned, d.disposition_code, d.notes,
                  extract(epoch FROM a.ended_at - a.bridged_at) AS talk_s
             FROM call_attempts a
             JOIN campaigns c ON c.id = a.campaign_id
             LEFT JOIN users u ON u.id = a.agent_user_id
             LEFT JOIN attempt_dispositions d ON d.call_attempt_id = a.id
            WHERE a.contact_id = $1 AND a.id < $2
            ORDER BY a.id DESC LIMIT $3""",
        contact_id, before_attempt, limit,
    )  # fmt: skip
    return [{"attempt_id": r["id"], "at": r["created_at"].isoformat(), "campaign": r["campaign"],
             "agent": r["display_name"] or r["email"], "disposition": r["disposition_code"],
             "outcome": "abandoned" if r["abandoned"] else (r["hangup_cause"] or r["state"]),
             "notes": r["notes"], "talk_s": round(float(r["talk_s"]), 1) if r["talk_s"] is not None else None}
            for r in rows]  # fmt: skip
