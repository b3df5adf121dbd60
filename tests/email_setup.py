"""Shared set-up of the e-mail tests: an audience, a sender profile pointing at a sink, a running campaign."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

HTML = """<html><body><p>Hi {{ contact.first_name }},</p>
<p>Read <a href="https://example.com/report?utm_source=pivotal&amp;who={{ contact.last_name }}">the report</a>.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> - Pivotal Inc., 1 Main Street, Springfield, IL 62701</p>
</body></html>"""


async def reset_email(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """TRUNCATE email_events, email_messages, email_variants, campaign_members, campaign_audience_snapshots,
                    campaigns, sender_profiles, warmup_plans, contacts, accounts, suppressions, consents CASCADE"""
    )


async def email_campaign(pool: asyncpg.Pool, recipients: list[str], *, port: int, connections: int = 4,
                         settings: dict[str, Any] | None = None, max_per_second: float | None = None,
                         status: str = "running") -> int:  # fmt: skip
    """Contacts for ``recipients`` (first names F<n>, last names L<n>), a sender profile for the sink at ``port``,
    a campaign with one variant and every contact a member. Returns the campaign id."""
    await pool.execute(
        """INSERT INTO accounts (name, domain, registrable_domain) VALUES ('Acme', 'acme.example', 'acme.example')"""
    )
    await pool.executemany(
        """INSERT INTO contacts (account_id, first_name, last_name, email)
           VALUES ((SELECT min(id) FROM accounts), $1, $2, $3)""",
        [(f"F{n}", f"L{n}", address) for n, address in enumerate(recipients)],
    )
    profile = await pool.fetchval(
        """INSERT INTO sender_profiles (name, from_name, from_email, provider, provider_settings, postal_address,
                                        max_per_second)
           VALUES ('Sales', 'Pivotal Sales', 'sales@pivotal.example', 'smtp', $1, '1 Main Street', $2) RETURNING id""",
        {"host": "127.0.0.1", "port": port, "security": "none", "connections": connections},
        max_per_second,
    )  # fmt: skip
    campaign = await pool.fetchval(
        """INSERT INTO campaigns (name, channel, status, sender_profile_id, settings, started_at)
           VALUES ('Q4 report', 'email', $1, $2, $3, now()) RETURNING id""",
        status, profile, settings or {},
    )  # fmt: skip
    await pool.execute(
        """INSERT INTO email_variants (campaign_id, variant_key, subject, html_body)
           VALUES ($1, 'A', 'The Q4 report for {{ contact.first_name }}', $2)""",
        campaign, HTML,
    )  # fmt: skip
    await pool.execute(
        """INSERT INTO campaign_members (campaign_id, contact_id, account_id)
           SELECT $1, id, account_id FROM contacts""",
        campaign,
    )
    return int(campaign)


async def wait_for(pool: asyncpg.Pool, sql: str, *args: Any, timeout: float = 30.0) -> Any:
    """Poll until ``sql`` returns a true value; return it."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = await pool.fetchval(sql, *args)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"still {value!r} after {timeout} s: {sql}")
