"""A/B tests: the cohort gets the variants, the winner (by people's opens, or chosen by hand) goes to the rest."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from dispatch.ab_test import VariantScore, pick_winner
from tests.conftest import bearer, login
from tests.email_setup import HTML, email_campaign, reset_email, wait_for


@pytest.mark.parametrize(
    ("scores", "criterion", "winner"),
    [
        ([("A", 100, 20, 1), ("B", 100, 30, 0)], "open_rate", "B"),
        ([("A", 100, 20, 5), ("B", 100, 30, 0)], "click_rate", "A"),
        ([("A", 100, 20, 0), ("B", 200, 40, 0)], "open_rate", "B"),  # same rate: more evidence
        ([("A", 100, 20, 0), ("B", 100, 20, 0)], "open_rate", "A"),  # a full tie: the first
        ([("A", 0, 0, 0), ("B", 10, 0, 0)], "open_rate", "B"),  # nothing sent is no candidate
        ([("A", 0, 0, 0), ("B", 0, 0, 0)], "open_rate", None),
    ],
)
def test_pick_winner(scores: list[tuple[str, int, int, int]], criterion: str, winner: str | None) -> None:
    picked = pick_winner([VariantScore(key, n, *figures) for n, (key, *figures) in enumerate(scores)], criterion)
    assert (picked.key if picked else None) == winner


@pytest.fixture
async def email_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await reset_email(clean_db)
    return clean_db


async def _ab_campaign(pool: asyncpg.Pool, n: int, criterion: str) -> int:
    campaign = await email_campaign(pool, [f"person{i}@acme.example" for i in range(n)], port=1, status="draft")
    await pool.execute("UPDATE email_variants SET split_share = 50 WHERE campaign_id = $1", campaign)
    await pool.execute(
        """INSERT INTO email_variants (campaign_id, variant_key, subject, html_body, split_share)
           VALUES ($1, 'B', 'Your Q4 numbers, {{ contact.first_name }}', $2, 50)""",
        campaign, HTML,
    )  # fmt: skip
    await pool.execute(
        """UPDATE campaigns SET ab_winner_criterion = $2, ab_test_share = 20, ab_decide_after_minutes = 1,
                  status = 'running' WHERE id = $1""",
        campaign, criterion,
    )  # fmt: skip
    return campaign


_COHORT_SENT = """SELECT count(*) FILTER (WHERE status = 'sent') AS sent, count(*) AS rows,
                         count(DISTINCT variant_id) AS variants FROM email_messages WHERE campaign_id = $1"""


async def _cohort(pool: asyncpg.Pool, campaign: int, n: int) -> int:
    """Waits until the cohort is sent and the engine waits for the winner; its size."""
    await wait_for(pool, "SELECT count(*) > 0 AND count(*) = count(*) FILTER (WHERE status = 'sent') FROM "
                   "email_messages WHERE campaign_id = $1", campaign)  # fmt: skip
    row = await pool.fetchrow(_COHORT_SENT, campaign)
    assert 0.05 * n < row["rows"] < 0.4 * n, "about 20% of the audience in the test (a hash: +-5 sd here)"
    assert row["variants"] == 2
    return int(row["rows"])


async def _everyone_once(pool: asyncpg.Pool, campaign: int, n: int, winner: str, cohort: int) -> None:
    await wait_for(pool, "SELECT status = 'completed' FROM campaigns WHERE id = $1", campaign)
    rows = await pool.fetch(
        """SELECT m.contact_id, v.variant_key, m.status::text FROM email_messages m
             JOIN email_variants v ON v.id = m.variant_id WHERE m.campaign_id = $1 ORDER BY m.id""",
        campaign,
    )
    assert len(rows) == n
    assert len({r["contact_id"] for r in rows}) == n, "nobody twice"
    assert {r["status"] for r in rows} == {"sent"}
    rest = rows[cohort:]
    assert {r["variant_key"] for r in rest} == {winner}, "everyone after the test gets the winner"
    assert (
        await pool.fetchval("SELECT variant_key FROM email_variants WHERE campaign_id = $1 AND is_winner", campaign)
        == winner
    )


async def test_the_variant_people_opened_more_goes_to_the_rest(make_client: Any, email_db: asyncpg.Pool) -> None:
    n = 150
    await make_client()
    campaign = await _ab_campaign(email_db, n, "open_rate")
    cohort = await _cohort(email_db, campaign, n)
    # people opened B more; a privacy proxy "opened" every A: machines are no evidence
    await email_db.execute(
        """INSERT INTO email_events (email_message_id, campaign_id, event_type, occurred_at, payload)
           SELECT m.id, m.campaign_id, 'open', now(), CASE WHEN v.variant_key = 'A'
                  THEN '{"machine": "apple mail privacy protection"}'::jsonb ELSE '{}'::jsonb END
             FROM email_messages m JOIN email_variants v ON v.id = m.variant_id WHERE m.campaign_id = $1""",
        campaign,
    )
    await email_db.execute(  # the wait after the test's last message is over
        "UPDATE email_messages SET sent_at = sent_at - interval '2 minutes' WHERE campaign_id = $1", campaign
    )
    await _everyone_once(email_db, campaign, n, "B", cohort)
    detail = await email_db.fetchval("SELECT detail FROM audit_log WHERE action = 'campaign.ab_winner'")
    assert detail["key"] == "B"
    assert detail["by"] == "open_rate"
    assert detail["variants"]["A"]["unique_opens"] == 0


async def test_a_manager_chooses_the_winner_by_hand(
    make_client: Any, email_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    n = 100
    client = await make_client()
    auth = bearer(await login(client, "campaign_manager@test.example"))
    campaign = await _ab_campaign(email_db, n, "manual")
    cohort = await _cohort(email_db, campaign, n)
    assert await email_db.fetchval("SELECT status::text FROM campaigns WHERE id = $1", campaign) == "running"
    chosen = await client.post(f"/api/email-campaigns/{campaign}/variants/A/winner", headers=auth)
    assert chosen.status == 200, await chosen.text()
    again = await client.post(f"/api/email-campaigns/{campaign}/variants/B/winner", headers=auth)
    assert again.status == 409
    await _everyone_once(email_db, campaign, n, "A", cohort)
