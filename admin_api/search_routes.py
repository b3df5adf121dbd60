"""Global search over accounts and contacts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import ReadModel
from admin_api.segment_routes import ContactOut
from crm.audience.search import search
from crm.roles import Role

api = Api()
READ = {Role.ADMIN, Role.CAMPAIGN_MANAGER, Role.SUPERVISOR}


class SearchQuery(BaseModel):
    q: str = Field(min_length=2, max_length=200, description="name words, e-mail, phone (any format) or domain")
    limit: int = Field(20, ge=1, le=100)


class AccountHitOut(ReadModel):
    id: int
    name: str
    domain: str | None
    registrable_domain: str | None
    main_line_e164: str | None


class SearchOut(BaseModel):
    interpreted_as: list[str] = Field(description="how the query was read: phone, e-mail, domain or name")
    accounts: list[AccountHitOut]
    contacts: list[ContactOut]


@api.route("GET", "/api/search", summary="Search accounts and contacts", tag="search", roles=READ,
           query=SearchQuery, response=SearchOut)  # fmt: skip
async def global_search(req: ApiRequest) -> SearchOut:
    result = await search(
        req.services.pool, req.query.q, region=req.services.default_phone_region, limit=req.query.limit
    )
    return SearchOut.model_validate(result, from_attributes=True)
