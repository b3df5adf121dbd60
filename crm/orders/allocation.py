"""Which published lead serves which order: a pure function over what the orders hold now.

An order takes a lead when it is active on the day, works through the lead's campaign, matches the lead (its
filters), has room (its quantity plus the over-delivery allowance, never more than its pace allows by now: the
weekly pace is cumulative from the start, so an order behind can catch up but never run ahead), has not had
the person (within the order, or across the client's orders when its de-duplication scope is the client) and,
with a per-account cap, has room for the account. Among the orders that could take a lead, the one furthest
behind its pace gets it (ties: the oldest order). Leads are taken oldest first. A returned lead no longer
counts towards its order (a replacement is owed) but its person stays delivered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from crm.orders.job_titles import classify


@dataclass(frozen=True, slots=True)
class LeadFacts:
    id: int
    campaign_id: int
    contact_id: int
    account_id: int | None
    job_title: str = ""
    employees: int | None = None
    industry: str | None = None
    country: str | None = None  # ISO 3166 alpha-2, the contact's or else the account's


@dataclass(frozen=True, slots=True)
class OrderFilter:
    """None: no filter on that. Industries compared case-insensitively; countries upper case."""

    job_functions: frozenset[str] | None = None
    seniorities: frozenset[str] | None = None
    min_employees: int | None = None
    max_employees: int | None = None
    industries: frozenset[str] | None = None
    countries: frozenset[str] | None = None
    account_ids: frozenset[int] | None = None  # a target account list or domain set, resolved to accounts

    def matches(self, lead: LeadFacts) -> bool:
        if self.account_ids is not None and lead.account_id not in self.account_ids:
            return False
        if self.countries is not None and (lead.country or "").upper() not in self.countries:
            return False
        if self.industries is not None and (lead.industry or "").casefold() not in self.industries:
            return False
        if self.min_employees is not None and (lead.employees is None or lead.employees < self.min_employees):
            return False
        if self.max_employees is not None and (lead.employees is None or lead.employees > self.max_employees):
            return False
        if self.job_functions is not None or self.seniorities is not None:
            function, seniority = classify(lead.job_title)
            if self.job_functions is not None and function not in self.job_functions:
                return False
            if self.seniorities is not None and seniority not in self.seniorities:
                return False
        return True


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    client_id: int
    campaigns: frozenset[int]
    quantity: int
    over_delivery_pct: int = 0
    weekly_pace: int | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    dedupe_scope: str = "order"  # or "client"
    per_account_cap: int | None = None
    filter: OrderFilter = field(default_factory=OrderFilter)

    @property
    def cap(self) -> int:
        """The quantity plus what the over-delivery policy allows."""
        return self.quantity + self.quantity * self.over_delivery_pct // 100

    def allowed_by(self, today: date) -> int:
        """How many leads the order may hold by ``today``: its cap, or less while its pace holds it back."""
        if self.starts_on is not None and today < self.starts_on:
            return 0
        if self.weekly_pace is None:
            return self.cap
        start = self.starts_on or today  # the API refuses a pace without a start
        weeks = (today - start).days // 7 + 1
        return min(self.cap, self.weekly_pace * weeks)

    def active_on(self, today: date) -> bool:
        return (self.starts_on is None or self.starts_on <= today) and (self.ends_on is None or today <= self.ends_on)


@dataclass
class Book:
    """What the orders hold now; ``allocate`` adds to it as it goes."""

    held: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # order -> leads (returned not counted)
    per_account: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    order_contacts: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    client_contacts: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))

    def add(self, order: Order, lead: LeadFacts, *, counts: bool = True) -> None:
        if counts:
            self.held[order.id] += 1
            if lead.account_id is not None:
                self.per_account[order.id, lead.account_id] += 1
        self.order_contacts[order.id].add(lead.contact_id)
        self.client_contacts[order.client_id].add(lead.contact_id)


def allocate(leads: Iterable[LeadFacts], orders: Sequence[Order], book: Book, today: date) -> list[tuple[int, int]]:
    """(lead id, order id) for each lead an order takes, in the leads' order."""
    by_campaign: dict[int, list[Order]] = defaultdict(list)
    room = {}
    for order in orders:
        if order.active_on(today):
            room[order.id] = order.allowed_by(today)
            for campaign_id in order.campaigns:
                by_campaign[campaign_id].append(order)
    out = []
    for lead in leads:
        best: Order | None = None
        best_gap = 0
        for order in by_campaign.get(lead.campaign_id, ()):
            gap = room[order.id] - book.held[order.id]
            if gap <= 0 or (best is not None and (gap, -order.id) <= (best_gap, -best.id)):
                continue  # full, paced, or no better than the one found
            if lead.contact_id in book.order_contacts[order.id]:
                continue
            if order.dedupe_scope == "client" and lead.contact_id in book.client_contacts[order.client_id]:
                continue
            if (order.per_account_cap is not None and lead.account_id is not None
                    and book.per_account[order.id, lead.account_id] >= order.per_account_cap):  # fmt: skip
                continue
            if not order.filter.matches(lead):
                continue
            best, best_gap = order, gap
        if best is not None:
            book.add(best, lead)
            out.append((lead.id, best.id))
    return out
