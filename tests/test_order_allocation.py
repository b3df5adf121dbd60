"""Allocating published leads to orders (crm/orders/allocation.py) and classifying job titles: tables, the day
passed in."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from crm.orders.allocation import Book, LeadFacts, Order, OrderFilter, allocate
from crm.orders.job_titles import classify
from crm.orders.push import retry_in, signature, url_problem, verify
from crm.orders.steering import steer

TODAY = date(2026, 11, 24)


def lead(n: int, *, campaign: int = 1, contact: int | None = None, account: int | None = 1, title: str = "CTO",
         employees: int | None = 500, industry: str | None = "Software",
         country: str | None = "US") -> LeadFacts:  # fmt: skip
    return LeadFacts(n, campaign, contact or n, account, title, employees, industry, country)


def order(n: int, quantity: int = 10, *, client: int = 1, campaigns: frozenset[int] | set[int] = frozenset({1}),
          **kw: Any) -> Order:  # fmt: skip
    return Order(n, client_id=client, campaigns=frozenset(campaigns), quantity=quantity, **kw)


@pytest.mark.parametrize(
    ("title", "function", "seniority"),
    [
        ("CTO", "engineering", "c_level"),
        ("Chief Financial Officer", "finance", "c_level"),
        ("VP of Marketing", "marketing", "vp"),
        ("Vice President, Sales", "sales", "vp"),
        ("Head of IT", "it", "director"),
        ("Director, Information Security", "security", "director"),
        ("Marketing Manager", "marketing", "manager"),
        ("Senior Software Engineer", "engineering", "senior"),
        ("Sales Development Representative", "sales", "entry"),
        ("Co-Founder & CEO", "executive", "c_level"),
        ("HR Business Partner", "hr", "entry"),
        ("Managing Partner", None, "c_level"),
        ("Owner", "executive", "c_level"),
        ("Product Owner", "product", "entry"),
        ("Channel Partner Manager", None, "manager"),
        ("Executive Assistant to the CEO", None, "entry"),
        ("Assistant to the President", None, "entry"),
        ("Barista", None, None),
        ("", None, None),
    ],
)
def test_job_titles_are_classified(title: str, function: str | None, seniority: str | None) -> None:
    assert classify(title) == (function, seniority)


@pytest.mark.parametrize(
    ("flt", "facts", "matches"),
    [
        (OrderFilter(), lead(1), True),
        (OrderFilter(job_functions=frozenset({"engineering"})), lead(1), True),
        (OrderFilter(job_functions=frozenset({"marketing"})), lead(1), False),
        (OrderFilter(seniorities=frozenset({"vp", "c_level"})), lead(1), True),
        (OrderFilter(seniorities=frozenset({"vp"})), lead(1, title="Barista"), False),
        (OrderFilter(min_employees=200, max_employees=1000), lead(1), True),
        (OrderFilter(min_employees=1000), lead(1), False),
        (OrderFilter(max_employees=100), lead(1, employees=None), False),  # unknown size never fits a size filter
        (OrderFilter(industries=frozenset({"software"})), lead(1, industry="SOFTWARE"), True),
        (OrderFilter(industries=frozenset({"retail"})), lead(1), False),
        (OrderFilter(countries=frozenset({"US", "CA"})), lead(1, country="us"), True),
        (OrderFilter(countries=frozenset({"GB"})), lead(1, country=None), False),
        (OrderFilter(account_ids=frozenset({1, 2})), lead(1), True),
        (OrderFilter(account_ids=frozenset({2})), lead(1), False),
        (OrderFilter(account_ids=frozenset({2})), lead(1, account=None), False),
    ],
)
def test_order_filters(flt: OrderFilter, facts: LeadFacts, matches: bool) -> None:
    assert flt.matches(facts) is matches


@pytest.mark.parametrize(
    ("orders", "leads", "expected"),
    [
        # quantity, then the over-delivery allowance
        ([order(1, 2)], [lead(1), lead(2), lead(3)], [(1, 1), (2, 1)]),
        ([order(1, 10, over_delivery_pct=20)], [lead(n) for n in range(1, 14)], [(n, 1) for n in range(1, 13)]),
        # pace: 2 a week from a start 8 days ago = 4 by now
        (
            [order(1, 10, weekly_pace=2, starts_on=date(2026, 11, 16))],
            [lead(n) for n in range(1, 7)],
            [(n, 1) for n in range(1, 5)],
        ),
        # not started, ended, another campaign
        ([order(1, starts_on=date(2026, 12, 1))], [lead(1)], []),
        ([order(1, ends_on=date(2026, 11, 23))], [lead(1)], []),
        ([order(1, campaigns={2})], [lead(1)], []),
        # the same person twice in one order
        ([order(1)], [lead(1, contact=7), lead(2, contact=7)], [(1, 1)]),
        # the order furthest behind its pace first (1 has 4 of room, 2 has 10), then the oldest on a tie
        ([order(1, 4), order(2, 10)], [lead(1)], [(1, 2)]),
        ([order(1, 5), order(2, 5)], [lead(1), lead(2)], [(1, 1), (2, 2)]),
        # per-account cap
        ([order(1, per_account_cap=1)], [lead(1, account=5), lead(2, account=5), lead(3, account=6)], [(1, 1), (3, 1)]),
        # a filter sends a lead to the order it fits
        (
            [order(1, filter=OrderFilter(job_functions=frozenset({"marketing"}))), order(2)],
            [lead(1, title="CTO")],
            [(1, 2)],
        ),
        (
            [order(1, 1, filter=OrderFilter(job_functions=frozenset({"marketing"}))), order(2, 1)],
            [lead(1, title="CMO"), lead(2, title="CTO")],
            [(1, 1), (2, 2)],
        ),
    ],
)
def test_allocation(orders: list[Order], leads: list[LeadFacts], expected: list[tuple[int, int]]) -> None:
    assert allocate(leads, orders, Book(), TODAY) == expected


def test_the_client_scope_blocks_a_person_any_of_the_client_s_orders_had() -> None:
    client_wide, own = order(1, dedupe_scope="client"), order(2)
    book = Book()
    book.add(order(3), lead(9, contact=7))  # an earlier order of the same client had contact 7
    assert allocate([lead(1, contact=7)], [client_wide], book, TODAY) == []
    assert allocate([lead(1, contact=7)], [own], book, TODAY) == [(1, 2)]  # scope "order": only its own


def test_a_returned_lead_frees_its_place_but_not_its_person() -> None:
    book = Book()
    book.add(order(1, 1), lead(1, contact=7), counts=False)  # returned: a replacement is owed
    assert allocate([lead(2, contact=7), lead(3, contact=8)], [order(1, 1)], book, TODAY) == [(3, 1)]


def test_what_the_book_holds_counts_against_quantity_and_pace() -> None:
    book = Book()
    for n in range(3):
        book.add(order(1, 4), lead(100 + n))
    assert allocate([lead(1), lead(2)], [order(1, 4)], book, TODAY) == [(1, 1)]


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, 30.0), (2, 60.0), (3, 120.0), (7, 1920.0), (8, 3600.0), (11, 3600.0), (12, None), (20, None)],
)
def test_a_failed_push_is_tried_again_later_up_to_twelve_times(attempts: int, delay: float | None) -> None:
    assert retry_in(attempts) == delay


@pytest.mark.parametrize(
    ("mangle", "ok"),
    [
        (lambda ts, body, sig: (ts, body, sig), True),
        (lambda ts, body, sig: (ts, body + b" ", sig), False),
        (lambda ts, body, sig: (str(int(ts) + 1), body, sig), False),
        (lambda ts, body, sig: (str(int(ts) - 301), body, signature("s" * 16, int(ts) - 301, body)), False),
        (lambda ts, body, sig: (ts, body, "v1=" + "0" * 64 + ", " + sig), True),  # a rotated secret's pair
        (lambda ts, body, sig: ("soon", body, sig), False),
    ],
)
def test_a_push_s_signature_covers_body_and_time(mangle: Any, ok: bool) -> None:
    now, body = 1_800_000_000, b'{"order_id": 1}'
    ts, sent, sig = mangle(str(now), body, signature("s" * 16, now, body))
    assert verify("s" * 16, ts, sent, sig, now) is ok


@pytest.mark.parametrize(
    ("url", "allow_private", "problem"),
    [
        ("https://crm.buyer.example/hooks/leads", False, None),
        ("https://203.0.113.9/hook", False, "into this network"),  # documentation range: not global
        ("https://8.8.8.8/hook", False, None),
        ("http://crm.buyer.example/hook", False, "must be https"),
        ("https://127.0.0.1:5432/", False, "into this network"),
        ("https://10.1.2.3/", False, "into this network"),
        ("https://[::1]/", False, "into this network"),
        ("https://169.254.169.254/latest/meta-data", False, "into this network"),
        ("https://localhost/", False, "into this network"),
        ("https://user:pw@crm.buyer.example/", False, "credentials"),
        ("ftp://crm.buyer.example/", False, "http(s)"),
        ("http://127.0.0.1:8080/hook", True, None),
    ],
)
def test_webhook_urls_that_would_reach_inside_are_refused(url: str, allow_private: bool, problem: str | None) -> None:
    found = url_problem(url, allow_private)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("orders", "held", "member", "expected"),
    [
        ([], {}, lead(1), (1, 0, False)),  # no order: not steered
        ([order(1, 10)], {}, lead(1), (1, 100, False)),  # nothing delivered, no pace: all of it is due
        ([order(1, 10)], {1: 5}, lead(1), (1, 50, False)),
        ([order(1, 10)], {1: 10}, lead(1), (1, 0, True)),  # full: held
        ([order(1, 10, over_delivery_pct=10)], {1: 10}, lead(1), (1, 9, False)),  # room in the allowance: 1 of 11
        # paced: 2 a week from today: 2 due, 2 held = on pace, priority 0 but not held
        ([order(1, 10, weekly_pace=2, starts_on=TODAY)], {1: 2}, lead(1), (1, 0, False)),
        ([order(1, 10, filter=OrderFilter(job_functions=frozenset({"marketing"})))], {}, lead(1), (1, 0, True)),
        (
            [order(1, 10, filter=OrderFilter(job_functions=frozenset({"marketing"}))), order(2, 10)],
            {2: 9},
            lead(1),
            (1, 10, False),
        ),
        ([order(1, 10, campaigns={2})], {}, lead(1), (1, 0, False)),  # another campaign's order
    ],
)
def test_orders_steer_who_is_dialled_first_and_who_waits(
    orders: list[Order], held: dict[int, int], member: LeadFacts, expected: tuple[int, int, bool]
) -> None:
    book = Book()
    for order_id, count in held.items():
        book.held[order_id] = count
    assert steer([member], orders, book, TODAY) == [expected]
