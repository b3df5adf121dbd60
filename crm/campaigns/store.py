"""Telemarketing campaigns in PostgreSQL: create, read, edit, audience rules, lifecycle actions.

Starting a campaign runs the checklist and freezes its audience in one transaction: the contacts its include
rules select, minus those its exclude rules select, become ``campaign_members`` (a snapshot, recorded). A
refresh later adds contacts that have joined since and never removes one already there.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import asyncpg

from crm import audit
from crm.audience.filters import compile_filter
from crm.audit import Actor
from crm.campaigns.lifecycle import (
    CHECKED,
    EDITABLE,
    CampaignAction,
    CampaignStatus,
    Item,
    Readiness,
    blocking_failures,
    checklist,
    next_status,
)
from crm.campaigns.settings import DEFAULTS, IN_SETTINGS, AudienceRule, CampaignFields
from crm.compliance.campaign_rules import CampaignNotFound
from crm.compliance.windows import CallingWindow


class CampaignConflict(ValueError):
    """The campaign's status does not allow this (409)."""


class NotReady(ValueError):
    def __init__(self, failures: list[Item]) -> None:
        super().__init__("; ".join(item.message for item in failures))
        self.failures = failures


class BadReference(ValueError):
    """A field names a script, form, list... that does not exist (422)."""


COLUMNS = tuple(name for name in CampaignFields.model_fields if name not in (*IN_SETTINGS, "local_presence"))
_REFERENCES = {"script_id": "scripts", "qualification_form_id": "qualification_forms",
               "disposition_catalogue_id": "disposition_catalogues", "telephony_connection_id": "telephony_connections",
               "client_organisation_id": "client_organisations"}  # fmt: skip
_SELECT = f"""SELECT id, status::text AS status, channel::text AS channel, {", ".join(COLUMNS)}, started_at,
                     completed_at, settings, created_at, updated_at,
                     (SELECT count(*) FROM campaign_members m WHERE m.campaign_id = campaigns.id) AS member_count,
                     (SELECT coalesce(jsonb_agg(jsonb_build_object('mode', r.mode, 'list_id', r.list_id,
                             'segment_id', r.segment_id, 'domain_set_id', r.domain_set_id) ORDER BY r.id), '[]')
                        FROM campaign_audience_rules r WHERE r.campaign_id = campaigns.id) AS audience
                FROM campaigns WHERE deleted_at IS NULL AND channel = 'phone'"""


def _row(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    settings = out.pop("settings") or {}
    for name in IN_SETTINGS:
        out[name] = settings.get(name, getattr(DEFAULTS, name))
    out["local_presence"] = settings.get("local_presence", False)
    for name in ("dial_mode", "amd_mode", "amd_machine_action", "account_cap_mode"):
        out[name] = str(out[name]) if out[name] is not None else None
    return out


async def get(conn: asyncpg.Pool | asyncpg.Connection, campaign_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(f"{_SELECT} AND id = $1", campaign_id)
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    return _row(row)


async def page(pool: asyncpg.Pool, *, limit: int, after_id: int | None, status: str | None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"{_SELECT} AND id > $1 AND ($2::text IS NULL OR status::text = $2) ORDER BY id LIMIT $3",
        after_id or 0, status, limit,
    )  # fmt: skip
    return [_row(row) for row in rows]


async def check_references(conn: asyncpg.Connection, values: dict[str, Any],
                           references: dict[str, str] = _REFERENCES) -> None:  # fmt: skip
    """Each id in ``values`` named in ``references`` (field -> table) points at a live row, held for the
    transaction; BadReference names the first that does not."""
    for name, table in references.items():
        ref = values.get(name)
        if ref is None:
            continue
        live = "" if table == "client_organisations" else " AND deleted_at IS NULL"
        # FOR KEY SHARE: a concurrent delete of the script (form...) waits for this transaction, then sees it used.
        if not await conn.fetchval(f"SELECT 1 FROM {table} WHERE id = $1{live} FOR KEY SHARE", ref):
            raise BadReference(f"{name}: {table.replace('_', ' ')[:-1]} {ref} does not exist")


def _split(fields: CampaignFields, *, creating: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    given = fields.model_dump(exclude_unset=not creating)
    if creating:
        defaults = DEFAULTS.model_dump(exclude_none=True)
        given = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    columns = {k: v for k, v in given.items() if k in COLUMNS}
    settings = {k: v for k, v in given.items() if k in (*IN_SETTINGS, "local_presence")}
    return columns, settings


async def create(pool: asyncpg.Pool, actor: Actor, fields: CampaignFields) -> dict[str, Any]:
    columns, settings = _split(fields, creating=True)
    if not columns.get("name"):
        raise BadReference("name: required")
    names = [*columns, "channel", "settings", "created_by"]
    async with pool.acquire() as conn, conn.transaction():
        await check_references(conn, columns)
        try:
            campaign_id = await conn.fetchval(
                f"""INSERT INTO campaigns ({", ".join(names)})
                    VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING id""",
                *columns.values(), "phone", settings, actor.user_id,
            )  # fmt: skip
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise BadReference(contradiction(exc)) from None
        await audit.record(conn, actor, "campaign.created", "campaign", campaign_id, {"name": columns["name"]})
        return await get(conn, campaign_id)


async def update(pool: asyncpg.Pool, actor: Actor, campaign_id: int, fields: CampaignFields) -> dict[str, Any]:
    columns, settings = _split(fields, creating=False)
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id)
        if CampaignStatus(current["status"]) not in EDITABLE:
            raise CampaignConflict(f"a {current['status']} campaign cannot be edited; pause it first")
        if "account_cap_mode" in columns and "account_cap" not in columns:
            columns["account_cap"] = None if columns["account_cap_mode"] is None else current["account_cap"]
        await check_references(conn, columns)
        if columns or settings:
            assignments = [f"{name} = ${i}" for i, name in enumerate(columns, start=2)]
            assignments.append(f"settings = settings || ${len(columns) + 2}::jsonb")
            try:
                await conn.execute(
                    f"UPDATE campaigns SET {', '.join(assignments)}, updated_at = now() WHERE id = $1",
                    campaign_id, *columns.values(), settings,
                )  # fmt: skip
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise BadReference(contradiction(exc)) from None
            await audit.record(conn, actor, "campaign.updated", "campaign", campaign_id,
                               {"fields": sorted([*columns, *settings])})  # fmt: skip
        if current["status"] == "scheduled":  # it must stay ready to start at its time
            failures = blocking_failures(checklist(await readiness(conn, campaign_id), datetime.now(UTC)))
            if failures:
                raise NotReady(failures)
        return await get(conn, campaign_id)


def contradiction(exc: asyncpg.IntegrityConstraintViolationError) -> str:
    name = getattr(exc, "constraint_name", None) or exc.__class__.__name__
    return f"the settings contradict each other ({name}): {getattr(exc, 'detail', None) or exc}"


async def lock(conn: asyncpg.Connection, campaign_id: int, channel: str = "phone") -> asyncpg.Record:
    """The campaign's row, locked for the transaction (CampaignNotFound for another channel's)."""
    row = await conn.fetchrow(
        """SELECT id, status::text AS status, account_cap FROM campaigns
            WHERE id = $1 AND deleted_at IS NULL AND channel = $2::contact_channel FOR UPDATE""",
        campaign_id, channel,
    )  # fmt: skip
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    return row


async def delete(pool: asyncpg.Pool, actor: Actor, campaign_id: int) -> None:
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id)
        if current["status"] != "draft":
            raise CampaignConflict(f"only a draft can be deleted; this one is {current['status']} (archive it)")
        await conn.execute("UPDATE campaigns SET deleted_at = now() WHERE id = $1", campaign_id)
        await audit.record(conn, actor, "campaign.deleted", "campaign", campaign_id)


async def set_audience(pool: asyncpg.Pool, actor: Actor, campaign_id: int, rules: list[AudienceRule],
                       channel: str = "phone") -> None:  # fmt: skip
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id, channel)
        if CampaignStatus(current["status"]) not in EDITABLE:
            raise CampaignConflict(f"a {current['status']} campaign's audience cannot change; pause it first")
        for rule in rules:
            for name, table in (("list_id", "static_lists"), ("segment_id", "segments"),
                                ("domain_set_id", "domain_sets")):  # fmt: skip
                ref = getattr(rule, name)
                if ref is not None and not await conn.fetchval(
                    f"SELECT 1 FROM {table} WHERE id = $1 AND deleted_at IS NULL", ref
                ):
                    raise BadReference(f"{name}: {ref} does not exist")
        await conn.execute("DELETE FROM campaign_audience_rules WHERE campaign_id = $1", campaign_id)
        await conn.executemany(
            """INSERT INTO campaign_audience_rules (campaign_id, mode, list_id, segment_id, domain_set_id)
               VALUES ($1, $2, $3, $4, $5)""",
            [(campaign_id, r.mode, r.list_id, r.segment_id, r.domain_set_id) for r in rules],
        )
        await audit.record(conn, actor, "campaign.audience_changed", "campaign", campaign_id,
                           {"rules": [r.model_dump(exclude_none=True) for r in rules]})  # fmt: skip


async def audience_sql(conn: asyncpg.Connection, campaign_id: int, first_param: int) -> tuple[str, list[Any]]:
    """SQL selecting the contact ids the campaign's rules select now (includes minus excludes), or ''."""
    rules = await conn.fetch(
        """SELECT r.mode::text AS mode, r.list_id, r.segment_id, r.domain_set_id, s.filter_definition AS definition,
                  coalesce(l.deleted_at, s.deleted_at, d.deleted_at) IS NOT NULL AS gone
             FROM campaign_audience_rules r LEFT JOIN segments s ON s.id = r.segment_id
             LEFT JOIN static_lists l ON l.id = r.list_id LEFT JOIN domain_sets d ON d.id = r.domain_set_id
            WHERE r.campaign_id = $1 ORDER BY r.id""",
        campaign_id,
    )
    params: list[Any] = []
    parts: dict[str, list[str]] = {"include": [], "exclude": []}
    for rule in rules:
        if rule["gone"]:
            what = "list" if rule["list_id"] else "segment" if rule["segment_id"] else "domain set"
            raise BadReference(f"the audience names a {what} that was deleted; change the audience")
        n = first_param + len(params)
        if rule["list_id"] is not None:
            sql = f"SELECT contact_id FROM list_members WHERE list_id = ${n}"
            params.append(rule["list_id"])
        elif rule["domain_set_id"] is not None:
            sql = f"""SELECT c.id FROM contacts c WHERE c.account_id IN (SELECT account_id FROM domain_set_items
                       WHERE domain_set_id = ${n} AND match_status = 'matched')"""
            params.append(rule["domain_set_id"])
        else:
            compiled = compile_filter(rule["definition"], first_param=n)
            sql = f"SELECT c.id FROM contacts c LEFT JOIN accounts a ON a.id = c.account_id WHERE {compiled.sql}"
            params += compiled.params
        parts[rule["mode"]].append(sql)
    if not parts["include"]:
        return "", []
    sql = " UNION ".join(parts["include"])
    if parts["exclude"]:
        sql = f"({sql}) EXCEPT ({' UNION '.join(parts['exclude'])})"
    return sql, params


async def snapshot(conn: asyncpg.Connection, actor: Actor, campaign_id: int) -> tuple[int, int]:
    """Add the contacts the audience selects now and are not members yet; (added, members now)."""
    selection, params = await audience_sql(conn, campaign_id, first_param=3)
    added = 0
    if selection:
        snapshot_id = await conn.fetchval(
            """INSERT INTO campaign_audience_snapshots (campaign_id, rules, taken_by)
               SELECT $1, coalesce(jsonb_agg(to_jsonb(r) - 'campaign_id' - 'created_at'), '[]'), $2
                 FROM campaign_audience_rules r WHERE r.campaign_id = $1 RETURNING id""",
            campaign_id, actor.user_id,
        )  # fmt: skip
        added = await conn.fetchval(
            f"""WITH added AS (
                  INSERT INTO campaign_members (campaign_id, contact_id, snapshot_id, account_id)
                  SELECT $1, c.id, $2, c.account_id FROM contacts c
                   WHERE c.deleted_at IS NULL AND c.id IN ({selection})
                  ON CONFLICT (campaign_id, contact_id) DO NOTHING RETURNING 1)
                SELECT count(*) FROM added""",
            campaign_id, snapshot_id, *params,
        )  # fmt: skip
        await conn.execute("UPDATE campaign_audience_snapshots SET member_count = $2 WHERE id = $1",
                           snapshot_id, added)  # fmt: skip
    members = await conn.fetchval("SELECT count(*) FROM campaign_members WHERE campaign_id = $1", campaign_id)
    return int(added), int(members)


async def readiness(conn: asyncpg.Connection, campaign_id: int) -> Readiness:
    c = await get(conn, campaign_id)
    selection, params = await audience_sql(conn, campaign_id, first_param=1)
    size = 0
    if selection:
        size = await conn.fetchval(
            f"SELECT count(*) FROM contacts c WHERE c.deleted_at IS NULL AND c.id IN ({selection})", *params
        )
    includes = await conn.fetchval(
        "SELECT count(*) FROM campaign_audience_rules WHERE campaign_id = $1 AND mode = 'include'", campaign_id
    )
    form_fields = await conn.fetchval(
        "SELECT jsonb_array_length(fields) FROM qualification_forms WHERE id = $1 AND deleted_at IS NULL",
        c["qualification_form_id"],
    )
    dispositions = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE NOT is_system) AS agent,
                  count(*) FILTER (WHERE is_positive AND NOT is_system) AS positive
             FROM dispositions WHERE catalogue_id = $1 AND deleted_at IS NULL""",
        c["disposition_catalogue_id"],
    )
    pool_size = await conn.fetchval(
        """SELECT count(*) FROM caller_id_numbers
            WHERE status = 'active' AND (campaign_id = $1 OR campaign_id IS NULL)""",
        campaign_id,
    )
    connection_ok = await conn.fetchval(
        """SELECT 1 FROM telephony_connections WHERE deleted_at IS NULL AND is_active
              AND (id = $1 OR ($1::bigint IS NULL AND is_default))""",
        c["telephony_connection_id"],
    )
    window, rule = await conn.fetchrow(
        "SELECT calling_window, abandon_rule::text FROM campaigns WHERE id = $1", campaign_id
    )
    script = await conn.fetchval("SELECT id FROM scripts WHERE id = $1 AND deleted_at IS NULL", c["script_id"])
    return Readiness(
        dial_mode=c["dial_mode"], audience_rules=includes, audience_size=size, script_id=script,
        qualification_form_id=c["qualification_form_id"] if form_fields is not None else None,
        form_fields=form_fields or 0, disposition_catalogue_id=c["disposition_catalogue_id"],
        agent_dispositions=dispositions["agent"], positive_dispositions=dispositions["positive"],
        caller_id=c["caller_id_e164"], caller_id_pool=pool_size if c["local_presence"] else 0,
        telephony_connection_ok=bool(connection_ok), calling_window_ok=_window_opens(window),
        ring_timeout_secs=c["ring_timeout_secs"], amd_mode=c["amd_mode"], amd_machine_action=c["amd_machine_action"],
        machine_message=c["machine_message"], abandon_message=c["abandon_message"], starts_at=c["starts_at"],
        ends_at=c["ends_at"], abandon_rule=rule,
    )  # fmt: skip


def _window_opens(window: dict[str, Any] | None) -> bool:
    try:
        return any(CallingWindow.from_json(window or {}).days)  # some weekday has an open interval
    except ValueError:
        return False


async def act(
    pool: asyncpg.Pool, actor: Actor, campaign_id: int, action: CampaignAction, now: datetime
) -> dict[str, Any]:
    """Move the campaign through its lifecycle; the checklist must pass to schedule, start or resume."""
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id)
        target = next_status(CampaignStatus(current["status"]), action)
        if action in CHECKED:
            ready = await readiness(conn, campaign_id)
            if action is CampaignAction.RESUME:  # it dials its frozen members, whatever the lists hold now
                members = await conn.fetchval("SELECT count(*) FROM campaign_members WHERE campaign_id = $1",
                                              campaign_id)  # fmt: skip
                ready = dataclasses.replace(ready, audience_rules=max(ready.audience_rules, 1), audience_size=members)
            failures = blocking_failures(checklist(ready, now))
            if action is CampaignAction.SCHEDULE and (await get(conn, campaign_id))["starts_at"] is None:
                raise CampaignConflict("set starts_at before scheduling")
            if failures:
                raise NotReady(failures)
        details: dict[str, Any] = {"from": current["status"], "to": target.value}
        if action is CampaignAction.START:
            details["added"], details["members"] = await snapshot(conn, actor, campaign_id)
        await conn.execute(
            f"""UPDATE campaigns SET status = $2, updated_at = now()
                {", started_at = coalesce(started_at, now())" if target is CampaignStatus.RUNNING else ""}
                {", completed_at = now()" if target is CampaignStatus.COMPLETED else ""}
                WHERE id = $1""",
            campaign_id, target.value,
        )  # fmt: skip
        await audit.record(conn, actor, f"campaign.{action.value}", "campaign", campaign_id, details)
        return await get(conn, campaign_id)


async def refresh_audience(pool: asyncpg.Pool, actor: Actor, campaign_id: int) -> tuple[int, int]:
    async with pool.acquire() as conn, conn.transaction():
        current = await lock(conn, campaign_id)
        if current["status"] not in ("running", "paused"):
            raise CampaignConflict(f"a {current['status']} campaign has no audience to refresh; start it")
        added, members = await snapshot(conn, actor, campaign_id)
        await audit.record(conn, actor, "campaign.audience_refreshed", "campaign", campaign_id, {"added": added})
        return added, members
