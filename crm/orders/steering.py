"""How a campaign's orders steer its dialling: who first, and who not now.

For each contact still to be dialled, the campaign's active orders it fits (filters, not already holding the
person) are looked at:
- none of them has room left (each holds its quantity plus the over-delivery allowance): the contact is held,
  not dialled until an order has room again (a new order, a return, a change of terms);
- some are behind their pace: the contact's priority is how far behind the furthest one is, 1 to 100 (its
  shortfall by now as a share of its cap), so the hopper dials for the orders that need leads first;
- otherwise (only orders on or ahead of pace): priority 0, dialled in the usual order.
A contact no order fits is held too when the campaign works only for orders; a campaign with no active order
is not steered at all (every member priority 0, none held).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from crm.orders.allocation import Book, LeadFacts, Order


def steer(members: Iterable[LeadFacts], orders: Sequence[Order], book: Book,
          today: date) -> list[tuple[int, int, bool]]:  # fmt: skip
    """(contact id, priority, held) for each member (``LeadFacts.campaign_id`` says whose orders apply)."""
    active = [order for order in orders if order.active_on(today)]
    out = []
    for member in members:
        mine = [o for o in active if member.campaign_id in o.campaigns]
        if not mine:
            out.append((member.contact_id, 0, False))
            continue
        room = False
        behind = 0.0
        for order in mine:
            held = book.held[order.id]
            if held >= order.cap or member.contact_id in book.order_contacts[order.id]:
                continue
            if order.dedupe_scope == "client" and member.contact_id in book.client_contacts[order.client_id]:
                continue
            if not order.filter.matches(member):
                continue
            room = True
            shortfall = order.allowed_by(today) - held
            if shortfall > 0:
                behind = max(behind, shortfall / order.cap)
        priority = 0 if behind == 0 else max(1, min(100, round(behind * 100)))
        out.append((member.contact_id, priority, not room))
    return out
