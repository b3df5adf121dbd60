"""Accounts and contacts one at a time: list and read accounts; create, update, soft-delete either."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from admin_api.api import Api, ApiRequest
from admin_api.models import Strict
from admin_api.pagination import Page, PageQuery, decode_cursor, page_of
from admin_api.problems import Problem
from crm.audience import aliases, records
from crm.audience.aliases import AccountNotFound, AliasError
from crm.audience.records import IdentityTaken, RecordError, RecordNotFound
from crm.roles import Role

api = Api()
WRITE = {Role.ADMIN, Role.CAMPAIGN_MANAGER}
READ = WRITE | {Role.SUPERVISOR}

Text = Field(None, max_length=500)


class AccountBody(Strict):
    name: str | None = Field(None, min_length=1, max_length=500)
    domain: str | None = Field(None, max_length=300, description="website or domain; normalised")
    industry: str | None = Text
    employee_count: int | None = Field(None, ge=0, le=10_000_000)
    office_country: str | None = Field(None, min_length=2, max_length=2)
    main_line: str | None = Field(None, max_length=40, description="any format; stored as E.164")
    custom_fields: dict[str, str] | None = None


class ContactBody(Strict):
    first_name: str | None = Text
    last_name: str | None = Text
    job_title: str | None = Text
    email: str | None = Field(None, max_length=320)
    phone: str | None = Field(None, max_length=60, description="any format; read in the contact's country")
    account_id: int | None = Field(None, ge=1)
    country: str | None = Field(None, min_length=2, max_length=2)
    timezone: str | None = Field(None, max_length=64)
    custom_fields: dict[str, str] | None = None


class AccountOut(BaseModel):
    id: int
    name: str
    domain: str | None
    registrable_domain: str | None
    industry: str | None
    employee_count: int | None
    office_country: str | None
    main_line_e164: str | None
    custom_fields: dict[str, Any]
    contact_count: int
    source_id: int | None
    last_source_id: int | None
    created_at: datetime
    updated_at: datetime


class AccountPage(Page[AccountOut]):
    pass


class Created(BaseModel):
    id: int


class Changed(BaseModel):
    changed_fields: int = Field(description="0 when every value was already as given")


_ACCOUNT_SELECT = f"""SELECT {", ".join(f"a.{name}" for name in AccountOut.model_fields if name != "contact_count")},
       (SELECT count(*) FROM contacts c WHERE c.account_id = a.id AND c.deleted_at IS NULL) AS contact_count
  FROM accounts a WHERE a.deleted_at IS NULL"""


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, RecordError):
        return Problem(422, str(exc), errors=[{"loc": ["body", exc.field], "msg": str(exc)}])
    if isinstance(exc, IdentityTaken):
        return Problem(409, str(exc))
    return Problem(404, str(exc))


def _given(body: BaseModel) -> dict[str, Any]:
    return body.model_dump(exclude_unset=True)


@api.route("GET", "/api/accounts", summary="Accounts", tag="accounts", roles=READ, query=PageQuery,
           response=AccountPage)  # fmt: skip
async def list_accounts(req: ApiRequest) -> AccountPage:
    query = req.query
    rows = await req.services.pool.fetch(
        f"{_ACCOUNT_SELECT} AND ($2::bigint IS NULL OR a.id > $2) ORDER BY a.id LIMIT $1",
        query.limit + 1,
        decode_cursor(query.cursor),
    )
    items, next_cursor = page_of([dict(row) for row in rows], query.limit, key=lambda row: int(row["id"]))
    return AccountPage.model_validate({"items": items, "next_cursor": next_cursor})


@api.route("GET", "/api/accounts/{accountId}", summary="An account", tag="accounts", roles=READ,
           response=AccountOut)  # fmt: skip
async def get_account(req: ApiRequest) -> AccountOut:
    account_id = req.path_int("accountId")
    row = await req.services.pool.fetchrow(f"{_ACCOUNT_SELECT} AND a.id = $1", account_id)
    if row is None:
        raise Problem(404, f"account {account_id} does not exist")
    return AccountOut.model_validate(dict(row))


@api.route("POST", "/api/accounts", summary="Create an account", tag="accounts", roles=WRITE, body=AccountBody,
           response=Created, status=201)  # fmt: skip
async def create_account(req: ApiRequest) -> Created:
    given = _given(req.body)
    if not given.get("name"):
        raise Problem(422, "name: is required", errors=[{"loc": ["body", "name"], "msg": "is required"}])
    try:
        values = records.account_values(given, req.services.default_phone_region)
        return Created(id=await records.create(req.services.pool, req.actor, "accounts", values))
    except (RecordError, IdentityTaken) as exc:
        raise _problem(exc) from None


@api.route("PATCH", "/api/accounts/{accountId}", summary="Update an account", tag="accounts", roles=WRITE,
           body=AccountBody, response=Changed)  # fmt: skip
async def update_account(req: ApiRequest) -> Changed:
    account_id = req.path_int("accountId")
    try:
        values = records.account_values(_given(req.body), req.services.default_phone_region)
        return Changed(
            changed_fields=await records.update(req.services.pool, req.actor, "accounts", account_id, values)
        )
    except (RecordError, IdentityTaken, RecordNotFound) as exc:
        raise _problem(exc) from None


@api.route("DELETE", "/api/accounts/{accountId}", summary="Delete an account (soft)", tag="accounts", roles=WRITE)
async def delete_account(req: ApiRequest) -> None:
    try:
        await records.soft_delete(req.services.pool, req.actor, "accounts", req.path_int("accountId"))
    except RecordNotFound as exc:
        raise _problem(exc) from None


class AliasBody(Strict):
    domain: str = Field(min_length=1, max_length=300, description="website or domain; normalised")


class AliasOut(BaseModel):
    domain: str
    registrable_domain: str | None
    created_at: datetime


class AliasList(BaseModel):
    items: list[AliasOut]


class AliasAdded(BaseModel):
    domain: str = Field(description="the alias as stored (normalised)")
    added: bool = Field(description="false when the account already had it")


@api.route("GET", "/api/accounts/{accountId}/aliases", summary="Other domains an account is known by",
           tag="accounts", roles=READ, response=AliasList)  # fmt: skip
async def list_account_aliases(req: ApiRequest) -> AliasList:
    try:
        found = await aliases.list_aliases(req.services.pool, req.path_int("accountId"))
    except AccountNotFound as exc:
        raise Problem(404, str(exc)) from None
    return AliasList(items=[AliasOut(**vars(alias)) for alias in found])


@api.route("POST", "/api/accounts/{accountId}/aliases", summary="Add a domain the account is known by (domain-set"
           " matching treats it like the account's own)", tag="accounts", roles=WRITE, body=AliasBody,
           response=AliasAdded)  # fmt: skip
async def add_account_alias(req: ApiRequest) -> AliasAdded:
    try:
        domain, added = await aliases.add_alias(
            req.services.pool, req.actor, req.path_int("accountId"), req.body.domain
        )
    except AccountNotFound as exc:
        raise Problem(404, str(exc)) from None
    except AliasError as exc:
        raise Problem(422, f"domain: {exc}", errors=[{"loc": ["body", "domain"], "msg": str(exc)}]) from None
    return AliasAdded(domain=domain, added=added)


@api.route("DELETE", "/api/accounts/{accountId}/aliases/{domain}", summary="Remove an alias", tag="accounts",
           roles=WRITE)  # fmt: skip
async def remove_account_alias(req: ApiRequest) -> None:
    account_id = req.path_int("accountId")
    domain = req.request.match_info["domain"]
    try:
        removed = await aliases.remove_alias(req.services.pool, req.actor, account_id, domain)
    except AccountNotFound as exc:
        raise Problem(404, str(exc)) from None
    if not removed:
        raise Problem(404, f"account {account_id} has no alias {domain!r}")


@api.route("POST", "/api/contacts", summary="Create a contact", tag="contacts", roles=WRITE, body=ContactBody,
           response=Created, status=201)  # fmt: skip
async def create_contact(req: ApiRequest) -> Created:
    """A contact needs a valid e-mail or phone; an e-mail already used by a live contact is a 409."""
    try:
        values = records.contact_values(_given(req.body), req.services.default_phone_region)
        return Created(id=await records.create(req.services.pool, req.actor, "contacts", values))
    except (RecordError, IdentityTaken) as exc:
        raise _problem(exc) from None


@api.route("PATCH", "/api/contacts/{contactId}", summary="Update a contact", tag="contacts", roles=WRITE,
           body=ContactBody, response=Changed)  # fmt: skip
async def update_contact(req: ApiRequest) -> Changed:
    contact_id = req.path_int("contactId")
    try:
        values = records.contact_values(_given(req.body), req.services.default_phone_region)
        return Changed(
            changed_fields=await records.update(req.services.pool, req.actor, "contacts", contact_id, values)
        )
    except (RecordError, IdentityTaken, RecordNotFound) as exc:
        raise _problem(exc) from None


@api.route("DELETE", "/api/contacts/{contactId}", summary="Delete a contact (soft)", tag="contacts", roles=WRITE)
async def delete_contact(req: ApiRequest) -> None:
    try:
        await records.soft_delete(req.services.pool, req.actor, "contacts", req.path_int("contactId"))
    except RecordNotFound as exc:
        raise _problem(exc) from None
