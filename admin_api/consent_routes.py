"""Consent per contact and channel: append an entry, read the state and the history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, HttpUrl

from admin_api.api import Api, ApiRequest
from admin_api.models import Moment, ReadModel, Strict
from admin_api.problems import Problem
from crm.compliance import consent
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER, Role.SUPERVISOR}
READ = WRITE | {Role.QUALITY_ANALYST}


class ConsentIn(Strict):
    channel: Literal["phone", "email"]
    status: Literal["granted", "withdrawn", "unknown"]
    lawful_basis: (
        Literal["consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests"]
        | None
    ) = None
    source: Literal["api", "manual", "agent", "import", "system"] = "api"
    recorded_at: Moment = Field(None, description="when it was given or withdrawn (default: now)")
    proof_text: str | None = Field(None, max_length=2000, description="e.g. the words the contact agreed to")
    proof_url: HttpUrl | None = Field(None, description="e.g. the form or recording")


class ConsentOut(ReadModel):
    id: int
    contact_id: int
    channel: str
    status: str
    lawful_basis: str | None
    source: str
    proof: dict[str, Any]
    recorded_at: datetime
    recorded_by: int | None
    created_at: datetime


class ConsentHistory(BaseModel):
    current: dict[str, str] = Field(description="status per channel: the latest entry, else unknown")
    history: list[ConsentOut] = Field(description="newest first; entries are never changed or removed")


@api.route("POST", "/api/contacts/{contactId}/consents", summary="Record consent given or withdrawn (append-only)",
           tag="compliance", roles=WRITE, body=ConsentIn, response=ConsentOut,
           status=201)  # fmt: skip
async def record_consent(req: ApiRequest) -> ConsentOut:
    body: ConsentIn = req.body
    if body.recorded_at is not None and body.recorded_at > datetime.now(UTC):
        raise Problem(422, "recorded_at: must not be in the future", errors=[{"loc": ["body", "recorded_at"]}])
    if body.status == "granted" and not (body.proof_text or body.proof_url):
        raise Problem(422, "proof: granted consent needs proof (proof_text or proof_url)",
                      errors=[{"loc": ["body", "proof_text"], "msg": "required when status is granted"}])  # fmt: skip
    proof = {k: v for k, v in (("text", body.proof_text), ("url", str(body.proof_url or "") or None)) if v}
    try:
        async with req.services.pool.acquire() as conn:
            entry = await consent.record(
                conn, req.actor, contact_id=req.path_int("contactId"), channel=body.channel, status=body.status,
                lawful_basis=body.lawful_basis, source=body.source, proof=proof, recorded_at=body.recorded_at,
            )  # fmt: skip
    except consent.ContactNotFound as exc:
        raise Problem(404, str(exc)) from None
    return ConsentOut.model_validate(entry, from_attributes=True)


@api.route("GET", "/api/contacts/{contactId}/consents", summary="Consent state and history of a contact",
           tag="compliance", roles=READ, response=ConsentHistory)  # fmt: skip
async def consent_history(req: ApiRequest) -> ConsentHistory:
    try:
        entries = await consent.history(req.services.pool, req.path_int("contactId"))
    except consent.ContactNotFound as exc:
        raise Problem(404, str(exc)) from None
    return ConsentHistory(
        current=consent.current(entries),
        history=[ConsentOut.model_validate(entry, from_attributes=True) for entry in entries],
    )
