"""Request and response bodies of orders, shared by the staff routes and the client portal."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, model_validator

from admin_api.models import Strict
from admin_api.pagination import Page, PageQuery
from crm.orders.job_titles import FUNCTIONS, SENIORITIES

Function = Literal[FUNCTIONS]  # type: ignore[valid-type]
Seniority = Literal[SENIORITIES]  # type: ignore[valid-type]
OrderStatus = Literal["draft", "active", "paused", "fulfilled", "cancelled"]


class OrderFilters(Strict):
    """Which leads the order takes; every filter given must hold (none: any lead of its campaigns)."""

    job_functions: list[Function] | None = Field(None, max_length=len(FUNCTIONS),
                                                 description="from the contact's job title")  # fmt: skip
    seniorities: list[Seniority] | None = Field(None, max_length=len(SENIORITIES))
    min_employees: int | None = Field(None, ge=0, le=10_000_000)
    max_employees: int | None = Field(None, ge=0, le=10_000_000)
    industries: list[str] | None = Field(None, max_length=200, description="the account's industry, any case")
    countries: list[str] | None = Field(None, max_length=250, description="ISO 3166 alpha-2, contact's or account's")
    account_list_id: int | None = Field(
        None, gt=0, le=2**63 - 1, description="a target account list: the accounts of its contacts"
    )
    domain_set_id: int | None = Field(None, gt=0, le=2**63 - 1, description="a domain set: its matched accounts")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (
            self.min_employees is not None
            and self.max_employees is not None
            and self.min_employees > self.max_employees
        ):
            raise ValueError("min_employees is above max_employees")
        for country in self.countries or ():
            if len(country) != 2 or not country.isascii() or not country.isalpha():
                raise ValueError(f"countries: {country!r} is not an ISO 3166 alpha-2 code")
        return self


class OrderTerms(Strict):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    reference: str | None = Field(None, max_length=200, description="your PO or insertion-order number")
    quantity: int = Field(gt=0, le=1_000_000, description="leads ordered")
    filters: OrderFilters = Field(default_factory=OrderFilters)
    weekly_pace: int | None = Field(None, gt=0, le=1_000_000,
                                    description="at most this many a week, cumulative from starts_on")  # fmt: skip
    starts_on: date | None = None
    ends_on: date | None = None
    price_per_lead: Decimal | None = Field(None, ge=0, max_digits=12, decimal_places=2)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    over_delivery_pct: int = Field(0, ge=0, le=100, description="extra leads accepted beyond quantity, in percent")
    returns_window_days: int = Field(14, ge=0, le=365)
    dedupe_scope: Literal["order", "client"] = Field("order", description="a person once per order, or once "
                                                                           "across all your orders")  # fmt: skip
    per_account_cap: int | None = Field(None, gt=0, le=1_000_000, description="at most this many leads per account")

    @model_validator(mode="after")
    def _dates(self) -> Self:
        if self.starts_on and self.ends_on and self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        if self.weekly_pace is not None and self.starts_on is None:
            raise ValueError("a weekly_pace counts from starts_on: give starts_on")
        return self

    def columns(self) -> dict[str, Any]:
        """As ``crm.orders.store`` stores them."""
        return {"name": self.name, "reference": self.reference, "lead_target": self.quantity,
                "criteria": self.filters.model_dump(exclude_none=True), "weekly_pace": self.weekly_pace,
                "starts_on": self.starts_on, "ends_on": self.ends_on, "price_per_lead": self.price_per_lead,
                "currency": self.currency, "over_delivery_pct": self.over_delivery_pct,
                "returns_window_days": self.returns_window_days, "dedupe_scope": self.dedupe_scope,
                "per_account_cap": self.per_account_cap}  # fmt: skip


class OrderOut(BaseModel):
    id: int
    client_organisation_id: int
    status: str
    name: str
    reference: str | None
    quantity: int
    filters: dict[str, Any]
    weekly_pace: int | None
    starts_on: date | None
    ends_on: date | None
    price_per_lead: Decimal | None
    currency: str
    over_delivery_pct: int
    returns_window_days: int
    dedupe_scope: str
    per_account_cap: int | None
    campaign_ids: list[int]
    webhook_url: str | None
    has_webhook_secret: bool
    delivered: int = Field(description="leads the order holds (returned ones not counted)")
    returned: int
    cap: int = Field(description="quantity plus the over-delivery allowance")
    due_by_now: int = Field(description="what the pace allows by today")
    behind_pace: int = Field(description="due_by_now - delivered, at least 0")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> OrderOut:
        return cls.model_validate(row | {"quantity": row["lead_target"], "filters": row["criteria"]})


class OrderPage(Page[OrderOut]):
    pass


class OrderQuery(PageQuery):
    """Orders, newest first."""

    status: OrderStatus | None = None


class WeekOut(BaseModel):
    week_starting: date
    delivered: int
    returned: int
    cumulative: int = Field(description="delivered less returned, up to this week")
    pace_target: int | None = Field(description="what the weekly pace allows by the end of this week")


class ReasonCountOut(BaseModel):
    reason: str | None = None
    code: str | None = None
    label: str | None = None
    leads: int


class OrderReport(BaseModel):
    order_id: int
    quantity: int
    cap: int
    delivered: int
    returned: int
    due_by_now: int
    behind_pace: int
    remaining: int = Field(description="quantity - delivered, at least 0")
    days_left: int | None = Field(description="until ends_on, that day included")
    counted_from: date = Field(description="starts_on, or the day the order was placed")
    by_week: list[WeekOut]
    returns: list[ReasonCountOut] = Field(description="returned leads by the client's reason")
    rejections: list[ReasonCountOut] = Field(description="QA rejections of the linked campaigns' leads, by reason "
                                             "(staff only: empty in the portal)")  # fmt: skip
