"""Suppressions, consent, campaign compliance settings, and "why is (or isn't) this contact reached?"."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, HttpUrl

from admin_api.api import Api, ApiRequest
from admin_api.import_routes import UPLOAD_TYPES, ImportOut
from admin_api.models import ReadModel, Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience.domains import normalise_domain
from crm.audience.import_service import ImportRefused
from crm.compliance import campaign_rules, consent, facts, suppressions
from crm.compliance.campaign_rules import CampaignCompliance, CampaignNotFound
from crm.compliance.compact_sets import text_key
from crm.compliance.suppression_import import SuppressionImport
from crm.compliance.suppression_index import key_of
from crm.compliance.suppressions import SuppressionError, SuppressionNotFound
from crm.roles import Role

api = Api()
MANAGE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
ADD = MANAGE | {Role.SUPERVISOR}
READ = MANAGE | {Role.SUPERVISOR, Role.QUALITY_ANALYST}

Channel = Literal["phone", "email", "domain"]
#: A database id: PostgreSQL bigint.
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


def _storable(moment: datetime | None) -> datetime | None:
    """A time with an offset that PostgreSQL and Python can both hold once converted to UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("give a time zone offset (e.g. Z or +01:00)")
    try:
        year = moment.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not 1900 <= year <= 9000:
        raise ValueError("out of range: years 1900 to 9000")
    return moment


Moment = Annotated[datetime | None, AfterValidator(_storable)]


def _field_problem(exc: SuppressionError | ValueError, field: str = "value") -> Problem:
    name = getattr(exc, "field", field)
    return Problem(422, str(exc), errors=[{"loc": ["body", name], "msg": str(exc)}])


class SuppressionIn(Strict):
    channel: Channel
    value: str = Field(min_length=1, max_length=320, description="a number in any format, an address or a domain")
    country: str | None = Field(
        None, pattern=r"^[A-Z]{2}$", description="how to read a number without a country code (default: settings)"
    )
    scope: Literal["global", "campaign"] = "global"
    campaign_id: Id | None = None
    reason: str = Field("", max_length=500)
    expires_at: Moment = Field(None, description="in force until then; never when null")
    detail: dict[str, str] = Field(default_factory=dict, description="evidence (request reference, ticket...)")


class SuppressionOut(ReadModel):
    id: int
    channel: str
    scope: str
    campaign_id: int | None
    value: str
    source: str
    reason: str
    detail: dict[str, Any]
    added_by: int | None
    added_at: datetime
    expires_at: datetime | None
    lifted_at: datetime | None
    lifted_by: int | None
    lift_reason: str | None


class SuppressionAdded(SuppressionOut):
    created: bool = Field(description="false when an entry in force was renewed")


class SuppressionPage(Page[SuppressionOut]):
    pass


class SuppressionQuery(PageQuery):
    channel: Channel | None = None
    scope: Literal["global", "campaign"] | None = None
    campaign_id: Id | None = None
    value: str | None = Field(None, max_length=320, description="values starting with this (normalised form)")
    include_lifted: bool = False


class LiftIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class CheckQuery(BaseModel):
    value: str = Field(min_length=1, max_length=320)
    channel: Channel
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="for a number without a country code")
    campaign_id: Id | None = None


class CheckOut(BaseModel):
    channel: str
    value: str = Field(description="normalised")
    suppressed: bool
    in_memory_scopes: list[str] = Field(description="what this node enforces right now")
    entries: list[SuppressionOut] = Field(description="the entries in force in PostgreSQL, the e-mail's domain too")


@api.route("POST", "/api/suppressions", summary="Add (or renew) a suppression; durable and on every node in ~1 s",
           tag="compliance", roles=ADD, body=SuppressionIn, response=SuppressionAdded, status=201)  # fmt: skip
async def add_suppression(req: ApiRequest) -> SuppressionAdded:
    body: SuppressionIn = req.body
    if body.expires_at is not None and body.expires_at.tzinfo is None:
        raise Problem(422, "expires_at: give a time zone offset", errors=[{"loc": ["body", "expires_at"], "msg": ""}])
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise Problem(422, "expires_at: must be in the future", errors=[{"loc": ["body", "expires_at"], "msg": ""}])
    try:
        region = body.country or req.services.default_phone_region
        value = suppressions.normalise_value(body.channel, body.value, region)
        async with req.services.pool.acquire() as conn:
            added, created = await suppressions.add(
                conn, req.actor, channel=body.channel, value=value, scope=body.scope, campaign_id=body.campaign_id,
                source="api", reason=body.reason, expires_at=body.expires_at, detail=dict(body.detail),
            )  # fmt: skip
    except SuppressionError as exc:
        raise _field_problem(exc) from None
    return SuppressionAdded.model_validate({**vars_of(added), "created": created})


def vars_of(item: object) -> dict[str, Any]:
    return {name: getattr(item, name) for name in SuppressionOut.model_fields}


@api.route("GET", "/api/suppressions", summary="Suppressions, newest first", tag="compliance", roles=READ,
           query=SuppressionQuery, response=SuppressionPage)  # fmt: skip
async def list_suppressions(req: ApiRequest) -> SuppressionPage:
    query: SuppressionQuery = req.query
    found = await suppressions.search(
        req.services.pool, channel=query.channel, scope=query.scope, campaign_id=query.campaign_id,
        value_prefix=query.value, include_lifted=query.include_lifted, limit=query.limit + 1,
        after_id=decode_cursor(query.cursor),
    )  # fmt: skip
    items, next_cursor = page_of(found, query.limit, key=lambda entry: entry.id)
    return SuppressionPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/suppressions/check", summary="Is a number, address or domain suppressed, and by what?",
           tag="compliance", roles=READ, query=CheckQuery, response=CheckOut)  # fmt: skip
async def check_suppression(req: ApiRequest) -> CheckOut:
    query: CheckQuery = req.query
    try:
        region = query.country or req.services.default_phone_region
        value = suppressions.normalise_value(query.channel, query.value, region)
    except SuppressionError as exc:
        raise Problem(422, str(exc), errors=[{"loc": ["query", "value"], "msg": str(exc)}]) from None
    index = req.services.suppressions.index
    now = req.services.clock()
    scopes = index.scopes(query.channel, key_of(query.channel, value), query.campaign_id, now)
    values: list[tuple[str, str]] = [(query.channel, value)]
    if query.channel == "email":  # an address is also blocked by its company's domain, as the decision does
        host = normalise_domain(value.rsplit("@", 1)[1])
        for domain in dict.fromkeys(d for d in (host.domain, host.registrable) if d):
            values.append(("domain", domain))
            for scope in index.scopes("domain", text_key(domain), query.campaign_id, now):
                if f"domain_{scope}" not in scopes:
                    scopes.append(f"domain_{scope}")
    entries = await suppressions.in_force_for(req.services.pool, values, query.campaign_id)
    return CheckOut(
        channel=query.channel,
        value=value,
        suppressed=bool(scopes or entries),
        in_memory_scopes=scopes,
        entries=[SuppressionOut.model_validate(vars_of(entry)) for entry in entries],
    )


class SuppressionImportQuery(BaseModel):
    channel: Channel
    scope: Literal["global", "campaign"] = "global"
    campaign_id: Id | None = None
    reason: str = Field("", max_length=500)
    expires_at: Moment = None
    column: str | None = Field(None, max_length=200, description="header of the value column; default: the first")
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$", description="for numbers without a country code")
    file_name: str = Field("suppressions.csv", min_length=1, max_length=255)


@api.route("POST", "/api/suppressions/import", summary="Import a suppression list (CSV or one value a line)",
           tag="compliance", roles=MANAGE, query=SuppressionImportQuery, response=ImportOut, status=202,
           upload_media_type="text/csv")  # fmt: skip
async def import_suppression_list(req: ApiRequest) -> ImportOut:
    """Send the file as the raw body. Runs in the background: follow it with `GET /api/imports/{importId}`,
    rejected rows at `GET /api/imports/{importId}/rejects`."""
    if req.request.content_type not in UPLOAD_TYPES:
        raise Problem(415, f"send the file as the raw body with Content-Type {UPLOAD_TYPES[0]}")
    query: SuppressionImportQuery = req.query
    if (query.scope == "campaign") != (query.campaign_id is not None):
        raise Problem(422, "campaign_id: required for a campaign list, and only for one",
                      errors=[{"loc": ["query", "campaign_id"], "msg": "required with scope=campaign"}])  # fmt: skip
    if query.campaign_id is not None and not await req.services.pool.fetchval(
        "SELECT 1 FROM campaigns WHERE id = $1 AND deleted_at IS NULL", query.campaign_id
    ):
        raise Problem(422, f"campaign_id: campaign {query.campaign_id} does not exist",
                      errors=[{"loc": ["query", "campaign_id"], "msg": "no such campaign"}])  # fmt: skip
    if query.expires_at is not None and (query.expires_at.tzinfo is None or query.expires_at <= datetime.now(UTC)):
        raise Problem(422, "expires_at: a future time with a time zone offset",
                      errors=[{"loc": ["query", "expires_at"], "msg": "invalid"}])  # fmt: skip
    options = SuppressionImport(query.channel, query.scope, query.campaign_id, query.reason, query.expires_at,
                                query.column, query.country)  # fmt: skip
    try:
        job = await req.services.imports.import_suppressions(
            req.actor, query.file_name, req.request.content.iter_chunked(64 * 1024), options
        )
    except ImportRefused as exc:
        raise Problem(exc.status, str(exc)) from None
    return ImportOut.of(job)


@api.route("GET", "/api/suppressions/{suppressionId}", summary="A suppression", tag="compliance", roles=READ,
           response=SuppressionOut)  # fmt: skip
async def get_suppression(req: ApiRequest) -> SuppressionOut:
    try:
        found = await suppressions.get(req.services.pool, req.path_int("suppressionId"))
    except SuppressionNotFound as exc:
        raise Problem(404, str(exc)) from None
    return SuppressionOut.model_validate(vars_of(found))


@api.route("POST", "/api/suppressions/{suppressionId}/lift", summary="Lift (remove) a suppression; the row is kept",
           tag="compliance", roles=MANAGE, body=LiftIn, response=SuppressionOut)  # fmt: skip
async def lift_suppression(req: ApiRequest) -> SuppressionOut:
    try:
        lifted = await suppressions.lift(req.services.pool, req.actor, req.path_int("suppressionId"), req.body.reason)
    except SuppressionNotFound as exc:
        raise Problem(404, str(exc)) from None
    except SuppressionError as exc:
        raise Problem(409, str(exc)) from None
    return SuppressionOut.model_validate(vars_of(lifted))


# -- consent ---------------------------------------------------------------------------------------------------


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
           tag="compliance", roles=MANAGE | {Role.SUPERVISOR}, body=ConsentIn, response=ConsentOut,
           status=201)  # fmt: skip
async def record_consent(req: ApiRequest) -> ConsentOut:
    body: ConsentIn = req.body
    if body.recorded_at is not None and (body.recorded_at.tzinfo is None or body.recorded_at > datetime.now(UTC)):
        raise Problem(
            422, "recorded_at: a past time with a time zone offset", errors=[{"loc": ["body", "recorded_at"]}]
        )
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


# -- campaign settings and decisions ---------------------------------------------------------------------------


@api.route("GET", "/api/campaigns/{campaignId}/compliance", summary="A campaign's compliance settings",
           tag="compliance", roles=READ, response=CampaignCompliance)  # fmt: skip
async def get_campaign_compliance(req: ApiRequest) -> CampaignCompliance:
    try:
        _, rules = await campaign_rules.load(req.services.pool, req.path_int("campaignId"))
    except CampaignNotFound as exc:
        raise Problem(404, str(exc)) from None
    return rules


@api.route("PUT", "/api/campaigns/{campaignId}/compliance", summary="Set a campaign's compliance settings",
           tag="compliance", roles=MANAGE, body=CampaignCompliance, response=CampaignCompliance)  # fmt: skip
async def put_campaign_compliance(req: ApiRequest) -> CampaignCompliance:
    try:
        await campaign_rules.save(req.services.pool, req.actor, req.path_int("campaignId"), req.body)
    except CampaignNotFound as exc:
        raise Problem(404, str(exc)) from None
    return req.body  # type: ignore[no-any-return]


class DecisionQuery(BaseModel):
    contact_id: Id
    campaign_id: Id


class ReasonOut(BaseModel):
    code: str
    message: str
    until: datetime | None = Field(description="when this reason stops applying; null if it does not by itself")


class DecisionOut(BaseModel):
    contact_id: int
    campaign_id: int
    channel: str
    allowed: bool
    reasons: list[ReasonOut]
    next_possible: datetime | None = Field(description="when every reason has lifted; null while one is permanent")
    local_time_zones: list[str] | None
    local_time_source: str | None = Field(description="contact, account_office, account_country, phone_number, ...")
    facts: dict[str, Any]


@api.route("GET", "/api/compliance/decision", summary="May this campaign reach this contact now? Every reason if not",
           tag="compliance", roles=READ, query=DecisionQuery, response=DecisionOut)  # fmt: skip
async def explain_decision(req: ApiRequest) -> DecisionOut:
    query: DecisionQuery = req.query
    now = datetime.fromtimestamp(req.services.clock(), UTC)
    try:
        found = await facts.explain(req.services.pool, req.services.suppressions.index, query.contact_id,
                                    query.campaign_id, now)  # fmt: skip
    except (facts.ContactNotFound, CampaignNotFound) as exc:
        raise Problem(404, str(exc)) from None
    decision = found.decision

    def utc(moment: datetime | None) -> datetime | None:
        return moment.astimezone(UTC) if moment is not None else None

    shown = {
        key: asdict(value) if is_dataclass(value) and not isinstance(value, type) else value
        for key, value in found.facts.items()
    }
    return DecisionOut(
        contact_id=query.contact_id,
        campaign_id=query.campaign_id,
        channel=found.channel,
        allowed=decision.allowed,
        reasons=[ReasonOut(code=r.code, message=r.message, until=utc(r.until)) for r in decision.reasons],
        next_possible=utc(decision.next_possible),
        local_time_zones=list(found.zones.zones) if found.zones else None,
        local_time_source=found.zones.source if found.zones else None,
        facts=shown,
    )
