"""The lead QA workflow's rules (crm/leads/qa_workflow.py): a table of moves, the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm.leads.qa_workflow import CLAIM_TTL, Lead, Move, Refused, Rules, decide
from crm.roles import Role

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
QA, ADMIN, CLIENT, MANAGER = (frozenset({r}) for r in (Role.QUALITY_ANALYST, Role.ADMIN, Role.CLIENT,
                                                        Role.CAMPAIGN_MANAGER))  # fmt: skip
RULES = Rules(checklist=("recording_reviewed", "title_fits"), reasons={"no_consent": "No consent", "other": "Other"})
MINE = Lead("under_review", 7, NOW + timedelta(minutes=5))
THEIRS = Lead("under_review", 8, NOW + timedelta(minutes=5))
EXPIRED = Lead("under_review", 8, NOW - timedelta(seconds=1))
ALL_DONE = {"recording_reviewed": True, "title_fits": True}


@pytest.mark.parametrize(
    ("lead", "move", "status", "claimed_by"),
    [
        (Lead("new"), Move("claim", 7, QA, NOW), "under_review", 7),
        (EXPIRED, Move("claim", 7, QA, NOW), "under_review", 7),
        (MINE, Move("claim", 7, QA, NOW), "under_review", 7),  # renewed
        (MINE, Move("release", 7, QA, NOW), "new", None),
        (MINE, Move("approve", 7, QA, NOW, checklist=ALL_DONE), "approved", None),
        (THEIRS, Move("approve", 1, ADMIN, NOW, checklist=ALL_DONE), "approved", None),  # an admin overrides
        (MINE, Move("reject", 7, QA, NOW, reason_code="no_consent"), "rejected", None),
        (MINE, Move("reject", 7, QA, NOW, reason_code="other", notes="wrong company"), "rejected", None),
        (Lead("approved"), Move("publish", 7, QA, NOW), "published", None),
        (Lead("rejected"), Move("reopen", 1, ADMIN, NOW), "new", None),
        (Lead("published"), Move("return", 30, CLIENT, NOW, reason="left the company"), "returned", None),
    ],
)
def test_allowed_moves(lead: Lead, move: Move, status: str, claimed_by: int | None) -> None:
    change = decide(lead, move, RULES)
    assert (change.status, change.claimed_by) == (status, claimed_by)
    if status == "under_review":
        assert change.claimed_until == NOW + CLAIM_TTL


@pytest.mark.parametrize(
    ("lead", "move", "code", "words"),
    [
        (Lead("new"), Move("claim", 7, MANAGER, NOW), 403, "roles"),
        (Lead("new"), Move("claim", 7, CLIENT, NOW), 403, "roles"),
        (Lead("published"), Move("return", 7, QA, NOW, reason="x"), 403, "roles"),
        (Lead("rejected"), Move("reopen", 7, QA, NOW), 403, "roles"),
        (THEIRS, Move("claim", 7, QA, NOW), 409, "another analyst"),
        (THEIRS, Move("approve", 7, QA, NOW, checklist=ALL_DONE), 409, "another analyst"),
        (THEIRS, Move("release", 7, QA, NOW), 409, "another analyst"),
        (EXPIRED, Move("reject", 8, QA, NOW, reason_code="no_consent"), 409, "claim the lead"),
        (Lead("new"), Move("approve", 7, QA, NOW, checklist=ALL_DONE), 409, "only one that is under_review"),
        (Lead("approved"), Move("claim", 7, QA, NOW), 409, "cannot claim"),
        (Lead("new"), Move("publish", 7, QA, NOW), 409, "cannot publish"),
        (Lead("returned"), Move("return", 30, CLIENT, NOW, reason="x"), 409, "cannot return"),
        (MINE, Move("approve", 7, QA, NOW), 422, "confirm recording_reviewed, title_fits"),
        (
            MINE,
            Move("approve", 7, QA, NOW, checklist={"recording_reviewed": True, "title_fits": False}),
            422,
            "confirm title_fits",
        ),
        (MINE, Move("approve", 7, QA, NOW, checklist=ALL_DONE | {"made_up": True}), 422, "made_up"),
        (MINE, Move("reject", 7, QA, NOW), 422, "reason_code"),
        (MINE, Move("reject", 7, QA, NOW, reason_code="bored"), 422, "'bored' is not an active"),
        (MINE, Move("reject", 7, QA, NOW, reason_code="other", notes="  "), 422, "needs notes"),
        (Lead("published"), Move("return", 30, CLIENT, NOW, reason=" "), 422, "needs a reason"),
    ],
)
def test_refused_moves(lead: Lead, move: Move, code: int, words: str) -> None:
    with pytest.raises(Refused) as refused:
        decide(lead, move, RULES)
    assert refused.value.status == code
    assert words in str(refused.value)


def test_a_rejection_keeps_the_reason_and_the_notes() -> None:
    change = decide(MINE, Move("reject", 7, QA, NOW, reason_code="no_consent", notes="asked twice"), RULES)
    assert (change.rejection_reason, change.status_reason) == ("no_consent", "No consent: asked twice")


def test_a_return_owes_a_replacement_and_a_publication_is_dated() -> None:
    assert decide(Lead("published"), Move("return", 30, CLIENT, NOW, reason="bounced"), RULES).replacement_owed
    assert decide(Lead("approved"), Move("publish", 7, QA, NOW), RULES).published


def test_renewing_a_claim_records_no_transition() -> None:
    assert not decide(MINE, Move("claim", 7, QA, NOW), RULES).changes_status
    assert decide(Lead("new"), Move("claim", 7, QA, NOW), RULES).changes_status
