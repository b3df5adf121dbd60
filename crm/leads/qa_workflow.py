"""The lead QA workflow as a pure function: who may move a lead where, and what each move needs.

    new --claim--> under_review --approve--> approved --publish--> published --return--> returned
                        |  ^                                                   (a replacement is owed)
              release   |  | claim (an expired claim)
                        v  |
                        new <--reopen (admin)-- rejected <--reject-- under_review

A lead under review is held by one analyst until its claim expires (``CLAIM_TTL``); only the holder (or an admin)
may release, approve or reject it, so two analysts never review the same lead. Approval needs every item of the
campaign's checklist confirmed; rejection needs a reason from the catalogue (``other`` also needs notes); a return
needs a reason. The store applies the change and records it (who, when, notes) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from crm.roles import Role

Status = Literal["new", "under_review", "approved", "rejected", "published", "returned"]
Action = Literal["claim", "release", "approve", "reject", "publish", "reopen", "return"]

#: How long a claim holds without activity; an analyst's next action or ``claim`` again renews it.
CLAIM_TTL = timedelta(minutes=15)
REVIEWERS = frozenset({Role.QUALITY_ANALYST, Role.ADMIN})
#: who may take each action
ROLES: Mapping[Action, frozenset[Role]] = {
    "claim": REVIEWERS,
    "release": REVIEWERS,
    "approve": REVIEWERS,
    "reject": REVIEWERS,
    "publish": REVIEWERS,
    "reopen": frozenset({Role.ADMIN}),
    "return": frozenset({Role.CLIENT, Role.ADMIN}),
}
#: the statuses each action starts from
FROM: Mapping[Action, frozenset[Status]] = {
    "claim": frozenset({"new", "under_review"}),
    "release": frozenset({"under_review"}),
    "approve": frozenset({"under_review"}),
    "reject": frozenset({"under_review"}),
    "publish": frozenset({"approved"}),
    "reopen": frozenset({"rejected", "approved"}),
    "return": frozenset({"published"}),
}
TO: Mapping[Action, Status] = {
    "claim": "under_review",
    "release": "new",
    "approve": "approved",
    "reject": "rejected",
    "publish": "published",
    "reopen": "new",
    "return": "returned",
}


@dataclass(frozen=True, slots=True)
class Lead:
    status: Status
    claimed_by: int | None = None
    claimed_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Move:
    action: Action
    actor_id: int
    roles: frozenset[Role]
    now: datetime
    notes: str = ""
    checklist: Mapping[str, bool] = field(default_factory=dict)  # approve: item key -> confirmed
    reason_code: str | None = None  # reject: from the catalogue
    reason: str = ""  # return: the client's reason


@dataclass(frozen=True, slots=True)
class Rules:
    """What the move is checked against: the campaign's checklist and the active rejection reasons."""

    checklist: Sequence[str] = ()
    reasons: Mapping[str, str] = field(default_factory=dict)  # code -> label


@dataclass(frozen=True, slots=True)
class Change:
    status: Status
    claimed_by: int | None
    claimed_until: datetime | None
    status_reason: str | None = None  # rejected or returned: why
    rejection_reason: str | None = None
    replacement_owed: bool = False
    published: bool = False  # set published_at
    changes_status: bool = True  # False: a claim renewed or taken over after expiry, no transition to record


class Refused(Exception):
    """The move is not allowed: ``status`` is the HTTP status (403 role, 409 state or claim, 422 what it needs)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decide(lead: Lead, move: Move, rules: Rules) -> Change:
    allowed = ROLES[move.action]
    if not move.roles & allowed:
        raise Refused(403, f"{move.action} needs one of the roles: {', '.join(sorted(allowed))}")
    if lead.status not in FROM[move.action]:
        starts = " or ".join(sorted(FROM[move.action]))
        raise Refused(409, f"cannot {move.action} a lead that is {lead.status} (only one that is {starts})")
    held = lead.status == "under_review" and lead.claimed_until is not None and lead.claimed_until > move.now
    mine = held and lead.claimed_by == move.actor_id
    if move.action == "claim":
        if held and not mine:
            raise Refused(409, f"another analyst is reviewing this lead until {lead.claimed_until:%H:%M:%S} UTC")
        return Change("under_review", move.actor_id, move.now + CLAIM_TTL, changes_status=lead.status != "under_review")
    if move.action in ("release", "approve", "reject") and not mine and Role.ADMIN not in move.roles:
        if held:
            raise Refused(409, "another analyst is reviewing this lead")
        raise Refused(409, f"claim the lead before you {move.action} it (your claim expired or was never taken)")
    if move.action == "release":
        return Change("new", None, None)
    if move.action == "approve":
        missing = [key for key in rules.checklist if move.checklist.get(key) is not True]
        unknown = sorted(set(move.checklist) - set(rules.checklist))
        if unknown:
            raise Refused(422, f"checklist items not on this campaign's checklist: {', '.join(unknown)}")
        if missing:
            raise Refused(422, f"the checklist is not complete: confirm {', '.join(missing)}")
        return Change("approved", None, None)
    if move.action == "reject":
        if move.reason_code is None:
            raise Refused(422, "a rejection needs a reason_code from the catalogue (GET /api/qa/rejection-reasons)")
        label = rules.reasons.get(move.reason_code)
        if label is None:
            raise Refused(422, f"reason_code {move.reason_code!r} is not an active rejection reason")
        if move.reason_code == "other" and not move.notes.strip():
            raise Refused(422, "a rejection for 'other' needs notes saying why")
        reason = f"{label}: {move.notes.strip()}" if move.notes.strip() else label
        return Change("rejected", None, None, status_reason=reason, rejection_reason=move.reason_code)
    if move.action == "publish":
        return Change("published", None, None, published=True)
    if move.action == "reopen":
        return Change("new", None, None)
    # return
    if not move.reason.strip():
        raise Refused(422, "a return needs a reason")
    return Change("returned", None, None, status_reason=move.reason.strip(), replacement_owed=True)
