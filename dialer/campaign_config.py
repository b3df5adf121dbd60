"""A running campaign's configuration as its runner needs it, read from PostgreSQL in one go (and again whenever
the campaign's row changes): settings, compliance rules, the disposition catalogue, the form, the script and
the caller ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from crm.campaigns import store
from crm.campaigns.forms import FormField
from crm.compliance import campaign_rules
from crm.compliance.decision import PhoneCampaign
from dialer import connections
from dialer.connections import Connection
from dialer.outcome_rules import SYSTEM_CODES, Flags
from pacing.api import PacingSettings


@dataclass
class CampaignConfig:
    id: int
    name: str
    status: str
    updated_at: Any
    dial_mode: str
    pacing: PacingSettings
    ring_timeout_secs: int
    amd_mode: str
    machine_action: str
    machine_message: str | None
    abandon_message: str
    abandon_lockout_hours: int  # 0 unless the rules lock an abandoned contact (UK, or chosen)
    lines_per_agent: float
    wrap_up_seconds: int
    hopper_size: int
    max_attempts: int
    default_retry_minutes: int
    cap_mode: str | None
    cap: int | None
    client_organisation_id: int | None
    connection: Connection
    caller_ids: list[str]
    local_presence: bool
    compliance: PhoneCampaign
    dispositions: dict[str, Flags]  # agent-facing codes of the catalogue
    system: dict[str, Flags]  # the dialer's own outcomes
    form_fields: list[FormField] = field(default_factory=list)
    form: dict[str, Any] | None = None
    script: str = ""
    fallback_zone: str | None = None
    record_calls: bool = False

    def caller_id_for(self, to_e164: str) -> str:
        """A fixed caller id, or with local presence the pool's number sharing the longest prefix with the callee."""
        if not self.local_presence or len(self.caller_ids) == 1:
            return self.caller_ids[0]
        return max(self.caller_ids, key=lambda number: _common_prefix(number, to_e164))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class ConfigError(RuntimeError):
    """The campaign cannot run as configured (the runner reports it and dials nothing)."""


async def load(pool: asyncpg.Pool, campaign_id: int) -> CampaignConfig:
    c = await store.get(pool, campaign_id)
    _, rules = await campaign_rules.load(pool, campaign_id)
    connection = (
        await connections.get(pool, c["telephony_connection_id"])
        if c["telephony_connection_id"]
        else await connections.default_connection(pool)
    )
    caller_ids = [c["caller_id_e164"]] if c["caller_id_e164"] else []
    if c["local_presence"] or not caller_ids:
        rows = await pool.fetch(
            """SELECT e164 FROM caller_id_numbers
                WHERE (campaign_id = $1 OR campaign_id IS NULL) AND status = 'active'
                   OR status = 'resting' AND rest_until < now() AND (campaign_id = $1 OR campaign_id IS NULL)
                ORDER BY campaign_id NULLS LAST, id""",
            campaign_id,
        )
        caller_ids += [row["e164"] for row in rows if row["e164"] not in caller_ids]
    if not caller_ids:
        raise ConfigError("no caller id: set caller_id_e164 or add numbers to the pool")
    flags = await _dispositions(pool, c["disposition_catalogue_id"])
    form = None
    form_fields: list[FormField] = []
    if c["qualification_form_id"]:
        row = await pool.fetchrow(
            "SELECT id, name, fields FROM qualification_forms WHERE id = $1", c["qualification_form_id"]
        )
        if row is not None:
            form = {"id": row["id"], "name": row["name"], "fields": row["fields"]}
            form_fields = [FormField.model_validate(item) for item in row["fields"]]
    script = ""
    if c["script_id"]:
        script = await pool.fetchval("SELECT body FROM scripts WHERE id = $1", c["script_id"]) or ""
    rate = float(c["max_abandon_rate"])
    amd_on = c["amd_mode"] != "disabled"
    return CampaignConfig(
        id=campaign_id, name=c["name"], status=c["status"], updated_at=c["updated_at"], dial_mode=c["dial_mode"],
        pacing=PacingSettings(
            max_abandon_rate=rate, lines_per_agent=float(c["lines_per_agent"]),
            amd_false_positive_rate=float(c["amd_false_positive_rate"]) if amd_on else 0.0,
            abandon_rule=rules.abandon_rule,
        ),
        ring_timeout_secs=c["ring_timeout_secs"], amd_mode=c["amd_mode"], machine_action=c["amd_machine_action"],
        machine_message=c["machine_message"], abandon_message=c["abandon_message"],
        abandon_lockout_hours=rules.phone(campaign_id).attempts.abandon_lockout_hours,
        lines_per_agent=float(c["lines_per_agent"]),
        wrap_up_seconds=int(c["wrap_up_seconds"]), hopper_size=int(c["hopper_size"]),
        max_attempts=rules.max_attempts, default_retry_minutes=rules.default_retry_minutes,
        cap_mode=c["account_cap_mode"], cap=c["account_cap"], client_organisation_id=c["client_organisation_id"],
        connection=connection, caller_ids=caller_ids, local_presence=bool(c["local_presence"]),
        compliance=rules.phone(campaign_id),
        dispositions={code: f for code, f in flags.items() if not f.is_system},
        system={code: f for code, f in flags.items() if f.is_system},
        form_fields=form_fields, form=form, script=script, fallback_zone=rules.timezone_fallback,
        record_calls=bool(c["record_calls"]),
    )  # fmt: skip


async def _dispositions(pool: asyncpg.Pool, catalogue_id: int | None) -> dict[str, Flags]:
    """The catalogue's codes; the dialer's outcomes it lacks come from the default catalogue."""
    rows = await pool.fetch(
        """SELECT d.id, d.code, d.label, d.is_positive, d.is_dnc, d.is_callback, d.is_final, d.is_system,
                  d.retry_after_minutes, d.hotkey, d.catalogue_id = $1 AS own
             FROM dispositions d JOIN disposition_catalogues c ON c.id = d.catalogue_id
            WHERE d.deleted_at IS NULL AND (d.catalogue_id = $1 OR (c.code = 'default' AND d.is_system))
            ORDER BY own DESC, d.sort_order, d.id""",
        catalogue_id,
    )
    flags: dict[str, Flags] = {}
    for row in rows:
        values = {k: row[k] for k in row.keys() if k != "own"}  # noqa: SIM118 - a Record
        flags.setdefault(row["code"], Flags(**values))
    missing = [code for code in SYSTEM_CODES if code not in flags]
    if missing:
        raise ConfigError(f"the dialer's outcomes {', '.join(missing)} are missing from every catalogue")
    return flags
