"""The e-mail engine end to end: the daemon sends a running campaign to a real SMTP server (aiosmtpd) through
its connection pool, keeps the ledger, honours suppressions and unsubscribes, and serves the links."""

from __future__ import annotations

import email
import email.policy
import re
from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from sim.smtp_sink import RecordingHandler
from tests.email_setup import email_campaign, reset_email, wait_for


@pytest.fixture
async def email_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await reset_email(clean_db)
    return clean_db


def _message(data: bytes) -> Any:
    return email.message_from_bytes(data, policy=email.policy.default)


async def test_a_campaign_is_sent_through_the_pool_and_the_ledger_tells_who_got_what(
    make_client: Any, email_db: asyncpg.Pool, sink: tuple[RecordingHandler, int]
) -> None:
    handler, port = sink
    people = [f"person{n}@acme.example" for n in range(120)]
    recipients = [*people, "permfail@acme.example", "tempfail@acme.example", "blocked@acme.example"]
    campaign = await email_campaign(email_db, recipients, port=port)
    await email_db.execute(
        """INSERT INTO suppressions (channel, value, source, reason) VALUES ('email', 'blocked@acme.example',
           'manual', 'asked us')"""
    )
    client = await make_client(email={"sandbox": False})
    answered = """SELECT count(*) > 0 AND count(*) FILTER (WHERE status = 'sending'
                                 OR (status = 'queued' AND attempt_count = 0)) = 0
                    FROM email_messages WHERE campaign_id = $1"""
    await wait_for(email_db, answered, campaign)

    delivered = sorted(rcpt for _, _, rcpt, _ in handler.accepted)
    assert delivered == sorted(people), "each person once; never the suppressed or failing addresses"
    rows = {r["to_email"]: r for r in await email_db.fetch(
        "SELECT to_email, status::text, status_reason, last_error, attempt_count, next_attempt_at FROM email_messages"
        " WHERE campaign_id = $1", campaign)}  # fmt: skip
    assert {rows[p]["status"] for p in people} == {"sent"}
    assert rows["permfail@acme.example"]["status"] == "failed"
    assert rows["permfail@acme.example"]["last_error"].startswith("550")
    assert rows["tempfail@acme.example"]["status"] == "queued", "a temporary failure waits for its retry"
    assert rows["tempfail@acme.example"]["next_attempt_at"] is not None
    assert rows["blocked@acme.example"]["status"] == "suppressed"
    assert "do-not-contact" in rows["blocked@acme.example"]["status_reason"]
    status = await email_db.fetchval("SELECT status::text FROM campaigns WHERE id = $1", campaign)
    assert status == "running", await email_db.fetch("SELECT action, detail FROM audit_log ORDER BY id")

    # what went out: rendered per person, RFC 8058 headers, a deterministic Message-ID per recipient
    at, ledger_id, rcpt, data = handler.accepted[0]
    message = _message(data)
    first = await email_db.fetchval("SELECT first_name FROM contacts WHERE email = $1", rcpt)
    assert message["Subject"] == f"The Q4 report for {first}"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    contact = await email_db.fetchval("SELECT contact_id FROM email_messages WHERE id = $1", int(ledger_id))
    assert message["Message-ID"] == f"<c{campaign}.r{contact}@pivotal.example>"
    html = message.get_body(("html",)).get_content()
    assert f"Hi {first}," in html

    # the unsubscribe link: GET shows a page and changes nothing; POST (one-click) suppresses at once
    unsubscribe = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"])).group(1)  # type: ignore[union-attr]
    path = "/" + unsubscribe.split("/", 3)[3]
    page = await client.get(path)
    assert page.status == 200
    assert rcpt in await page.text()
    assert not await email_db.fetchval("SELECT count(*) FROM suppressions WHERE value = $1", rcpt)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    done = await client.post(path, data=b"List-Unsubscribe=One-Click", headers=form, allow_redirects=False)
    assert done.status == 200
    assert (
        await email_db.fetchval(
            "SELECT source::text FROM suppressions WHERE channel = 'email' AND value = $1 AND lifted_at IS NULL", rcpt
        )
        == "unsubscribe"
    )
    again = await client.post(path, data=b"List-Unsubscribe=One-Click", allow_redirects=False)
    assert again.status == 200
    assert await email_db.fetchval("SELECT count(*) FROM email_events WHERE event_type = 'unsubscribe'") == 1
    forged = await client.post(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"), data=b"x")
    assert forged.status == 404

    # a tracked link redirects to the signed URL only; the pixel answers a GIF and both are recorded
    tracked = re.search(r'href="(https?://[^"]+/e/c/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    tracked_path = "/" + tracked.split("/", 3)[3]
    hop = await client.get(tracked_path, allow_redirects=False, headers={"User-Agent": "Mozilla/5.0 (X11) Firefox/130"})
    assert hop.status == 302
    assert hop.headers["Location"] == f"https://example.com/report?utm_source=pivotal&who=L{first[1:]}"
    assert (await client.get(tracked_path[:-4] + "xxxx", allow_redirects=False)).status == 404
    pixel = re.search(r'<img src="(https?://[^"]+/e/o/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    gif = await client.get("/" + pixel.split("/", 3)[3], headers={"User-Agent": "Mozilla/5.0"})
    assert gif.status == 200
    assert gif.headers["Content-Type"] == "image/gif"
    events = await wait_for(email_db, "SELECT count(*) FROM email_events WHERE event_type IN ('open', 'click')"
                                      " HAVING count(*) = 2")  # fmt: skip
    assert events == 2
    machine = await email_db.fetchval("SELECT payload->>'machine' FROM email_events WHERE event_type = 'open'")
    assert machine == "Apple Mail Privacy Protection"


async def test_the_sandbox_captures_instead_of_sending_and_the_api_lists_it(
    email_db: asyncpg.Pool, client: Any, tokens: dict[Role, str]
) -> None:
    """``client`` runs with the default settings: sandbox mode."""
    campaign = await email_campaign(email_db, ["ann@acme.example", "bob@acme.example"], port=1)
    await wait_for(email_db, "SELECT count(*) = 2 FROM email_messages WHERE campaign_id = $1 AND status = 'sent'",
                   campaign)  # fmt: skip
    await wait_for(email_db, "SELECT status = 'completed' FROM campaigns WHERE id = $1", campaign)
    listed = await client.get("/api/email/captures", headers={"Authorization": f"Bearer {tokens[Role.ADMIN]}"})
    assert listed.status == 200
    items = (await listed.json())["items"]
    assert sorted(i["to"] for i in items) == ["ann@acme.example", "bob@acme.example"]
    assert all(i["list_unsubscribe_post"] == "List-Unsubscribe=One-Click" for i in items)
    one = await client.get(f"/api/email/captures/{items[0]['id']}",
                           headers={"Authorization": f"Bearer {tokens[Role.ADMIN]}"})  # fmt: skip
    assert "Unsubscribe" in (await one.json())["text"]
    agent = await client.get("/api/email/captures", headers={"Authorization": f"Bearer {tokens[Role.AGENT]}"})
    assert agent.status == 403
