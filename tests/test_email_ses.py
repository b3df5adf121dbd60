"""Amazon SES v2 SendBulkEmail: AWS Signature Version 4 against AWS's published example, and a campaign sent
through the local stand-in, which checks the signature and answers per recipient."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from dispatch.providers.ses import ses_results, sigv4
from sim.mail_api import MailApi, serving
from tests.conftest import bearer, login
from tests.email_setup import email_campaign, reset_email, wait_for


def test_signature_version_4_matches_the_aws_example() -> None:
    """The IAM ListUsers example of AWS's Signature Version 4 documentation."""
    headers = sigv4(
        "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, b"",
        access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region="us-east-1",
        service="iam", now=datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
    )  # fmt: skip
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


@pytest.mark.parametrize(
    ("status", "kind", "fault"),
    [("SUCCESS", "sent", False), ("MESSAGE_REJECTED", "permanent", False), ("ACCOUNT_THROTTLED", "throttled", True),
     ("TRANSIENT_FAILURE", "temporary", True), ("ACCOUNT_SUSPENDED", "permanent", True),
     ("MAIL_FROM_DOMAIN_NOT_VERIFIED", "permanent", True)],
)  # fmt: skip
def test_each_recipient_gets_its_own_answer(status: str, kind: str, fault: bool) -> None:
    answer = json.dumps({"BulkEmailEntryResults": [{"Status": "SUCCESS", "MessageId": "m1"}, {"Status": status}]})
    first, second = ses_results(200, answer, 2)
    assert first.kind == "sent"
    assert (second.kind, second.provider_fault) == (kind, fault)


@pytest.fixture
async def email_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await reset_email(clean_db)
    return clean_db


async def test_a_campaign_goes_out_through_ses(
    make_client: Any, email_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    api = MailApi("unused", keep=True, aws_secret="SECRETKEY")
    async with serving(api) as base_url:
        client = await make_client(email={"sandbox": False})
        auth = bearer(await login(client, "admin@test.example"))
        people = [f"person{n}@acme.example" for n in range(120)] + ["bounce@reject.invalid"]
        campaign = await email_campaign(email_db, people, port=1, status="draft")
        profile = await client.post(
            "/api/sender-profiles",
            headers=auth,
            json={
                "name": "ses",
                "from_name": "Pivotal",
                "from_email": "news@pivotal.example",
                "provider": "ses",
                "secret": "AKIDTEST:SECRETKEY",
                "provider_settings": {"base_url": base_url, "region": "eu-west-1"},
            },
        )
        assert profile.status == 201, await profile.text()
        await email_db.execute("UPDATE campaigns SET sender_profile_id = $2, status = 'running' WHERE id = $1",
                               campaign, (await profile.json())["id"])  # fmt: skip
        await wait_for(email_db, "SELECT count(*) = 121 FROM email_messages WHERE campaign_id = $1 AND status IN "
                       "('sent', 'failed')", campaign)  # fmt: skip
        assert api.requests == 3, "batches of 50"
        assert api.refused == 0, "every request's signature verified"
        rows = {r["to_email"]: r for r in await email_db.fetch("SELECT to_email, status::text, last_error, "
                                                                "provider_message_id FROM email_messages")}  # fmt: skip
        assert rows["bounce@reject.invalid"]["status"] == "failed", "rejected alone, the rest of its batch sent"
        assert rows["person3@acme.example"]["status"] == "sent"
        one = next(d for d in api.delivered if d.to == "person3@acme.example")
        assert one.subject == "The Q4 report for F3"
        assert "<p>Hi F3,</p>" in one.html
        assert one.headers["X-Pivotal-Message"]
