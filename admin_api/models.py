"""Request and response bodies shared by several route modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from crm.audience.lists import MAX_IDS as MAX_SELECTED_IDS
from crm.passwords import MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS
from crm.roles import Role

_EMAIL_SHAPE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _password_fits_bcrypt(value: str) -> str:
    if len(value.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254, pattern=_EMAIL_SHAPE)]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_CHARS), AfterValidator(_password_fits_bcrypt)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    """A response body read from one of our own domain objects by attribute name."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def of(cls, source: object) -> Self:
        return cls.model_validate(source)


class UserCreateBody(Strict):
    email: Email
    password: Password
    display_name: str = Field("", max_length=200)
    roles: list[Role] = Field(min_length=1, description="At least one role.")
    must_change_password: bool = False
    client_organisation_id: int | None = Field(None, gt=0, description="required with the client role")

    @model_validator(mode="after")
    def _client_has_organisation(self) -> Self:
        if Role.CLIENT in self.roles and self.client_organisation_id is None:
            raise ValueError("a user with the client role needs client_organisation_id")
        return self


class UserOut(ReadModel):
    id: int
    email: str
    display_name: str
    roles: tuple[Role, ...]
    role: Role | None = Field(description="Legacy single role: the most privileged of `roles`.")
    is_active: bool
    must_change_password: bool
    client_organisation_id: int | None
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    deactivated_at: datetime | None


class RoleAssignmentOut(ReadModel):
    role: Role
    assigned_by: int | None
    assigned_by_email: str | None
    assigned_at: datetime


class RoleList(BaseModel):
    user_id: int
    roles: list[RoleAssignmentOut]


class Selection(Strict):
    """Contacts to act on: explicit ids, or every live contact a filter matches (across all pages)."""

    contact_ids: list[int] | None = Field(None, min_length=1, max_length=MAX_SELECTED_IDS)
    filter: dict[str, Any] | None = Field(None, description="a segment filter (see the README)")

    @model_validator(mode="after")
    def _one(self) -> Selection:
        if (self.contact_ids is None) == (self.filter is None):
            raise ValueError("give exactly one of contact_ids or filter")
        return self


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
