"""A telemarketing campaign's settings: what a manager sets, validated. (Compliance settings - calling window,
attempts, retries, consent - have their own model, ``crm.compliance.campaign_rules``.)"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm.audience.phones import normalise_phone

DialMode = Literal["preview", "progressive", "predictive"]
AmdMode = Literal["disabled", "detect", "detect_beep", "detect_words", "greeting_end", "premium",
                  "premium_ios_call_screening_detection"]  # fmt: skip
MachineAction = Literal["hangup", "leave_message", "route_to_agent"]
CapMode = Literal["queue_size", "connected_calls", "positive_dispositions"]

#: Settings kept in ``campaigns.settings`` (the rest are columns).
IN_SETTINGS = ("wrap_up_seconds", "local_presence", "amd_false_positive_rate", "hopper_size", "record_calls")
MAX_ID = 2**63 - 1
#: Fields a manager may clear (set to null); the others always have a value.
CLEARABLE = frozenset({"machine_message", "caller_id_e164", "telephony_connection_id", "script_id",
                       "qualification_form_id", "disposition_catalogue_id", "client_organisation_id", "starts_at",
                       "ends_at", "account_cap_mode", "account_cap"})  # fmt: skip


class CampaignFields(BaseModel):
    """Every field optional: a create takes defaults for those left out, an update changes only those given."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S")
    description: str | None = Field(None, max_length=5000)
    dial_mode: DialMode | None = None
    max_abandon_rate: Decimal | None = Field(None, ge=0, le=Decimal("0.05"), max_digits=5, decimal_places=4,
                                             description="the ceiling: 0.03 in the US and UK")  # fmt: skip
    lines_per_agent: Decimal | None = Field(None, ge=1, le=20, max_digits=4, decimal_places=2)
    ring_timeout_secs: int | None = Field(None, ge=15, le=600, description="never under 15 s (US, UK)")
    amd_mode: AmdMode | None = None
    amd_machine_action: MachineAction | None = None
    machine_message: str | None = Field(None, max_length=2000)
    abandon_message: str | None = Field(None, max_length=2000,
                                        description="played when no agent is free within 2 s: who is calling, "
                                        "and how to opt out")  # fmt: skip
    caller_id_e164: str | None = Field(None, description="a fixed caller id; null with local_presence: from the pool")
    local_presence: bool | None = Field(None, description="caller id from the pool, matching the contact's area")
    telephony_connection_id: int | None = Field(None, ge=1, le=MAX_ID)
    script_id: int | None = Field(None, ge=1, le=MAX_ID)
    qualification_form_id: int | None = Field(None, ge=1, le=MAX_ID)
    disposition_catalogue_id: int | None = Field(None, ge=1, le=MAX_ID)
    client_organisation_id: int | None = Field(None, ge=1, le=MAX_ID)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    account_cap_mode: CapMode | None = None
    account_cap: int | None = Field(None, ge=1, le=100_000)
    wrap_up_seconds: int | None = Field(None, ge=5, le=3600)
    amd_false_positive_rate: float | None = Field(
        None, ge=0, le=0.5, description="estimated share of people AMD calls machines"
    )
    hopper_size: int | None = Field(None, ge=10, le=100_000)
    record_calls: bool | None = Field(None, description="record conversations (both sides) from the bridge: the "
                                      "recording is linked from the call and its lead; say so in the script "
                                      "where the law asks for notice or consent")  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self) -> CampaignFields:
        for name in self.model_fields_set - CLEARABLE:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.caller_id_e164 is not None:
            phone = normalise_phone(self.caller_id_e164, None)
            if phone.e164 is None:
                raise ValueError(f"caller_id_e164: {phone.invalid_reason}")
            self.caller_id_e164 = phone.e164
        for name in ("starts_at", "ends_at"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name}: give a time zone (e.g. Z or +01:00)")
            if moment is not None and not 2000 <= moment.year <= 2999:
                raise ValueError(f"{name}: a year between 2000 and 2999")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        both = {"account_cap_mode", "account_cap"} <= self.model_fields_set
        if both and (self.account_cap_mode is None) != (self.account_cap is None):
            raise ValueError("account_cap_mode and account_cap go together (both, or both null)")
        return self


DEFAULTS = CampaignFields(
    dial_mode="progressive", max_abandon_rate=Decimal("0.03"), lines_per_agent=Decimal("3"), ring_timeout_secs=25,
    amd_mode="disabled", amd_machine_action="hangup", abandon_message="", local_presence=False, wrap_up_seconds=60,
    amd_false_positive_rate=0.02, hopper_size=200, record_calls=False,
)  # fmt: skip


class AudienceRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["include", "exclude"]
    list_id: int | None = Field(None, ge=1, le=MAX_ID)
    segment_id: int | None = Field(None, ge=1, le=MAX_ID)
    domain_set_id: int | None = Field(None, ge=1, le=MAX_ID)

    @model_validator(mode="after")
    def _one_source(self) -> AudienceRule:
        if sum(x is not None for x in (self.list_id, self.segment_id, self.domain_set_id)) != 1:
            raise ValueError("a rule names exactly one of list_id, segment_id, domain_set_id")
        return self
