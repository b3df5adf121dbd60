"""Batched HTTP providers (SendGrid, Mailgun) against the local stand-in (sim/mail_api.py): a request carries the
template once and each recipient's values, and what each person gets is what the full renderer makes."""

from __future__ import annotations

import html
import re
from typing import Any

import asyncpg
import pytest

from crm.roles import Role
from dispatch.merge import MergeVariant, NotMergeable
from dispatch.providers.base import Merged, Outgoing
from dispatch.providers.http_api import classify_http, mailgun_form, sendgrid_body
from dispatch.templates import CompiledVariant, TemplateProblem
from sim.mail_api import MailApi, _recipient, _substitute, serving
from tests.conftest import bearer, login
from tests.email_setup import HTML, email_campaign, reset_email, wait_for

FIELDS = {"contact": {"first_name": "Zoë", "last_name": "O'Brien & Sons", "email": "z@acme.example"},
          "account": {"name": "Acme <Europe>"}, "campaign": {"name": "Q4"}}  # fmt: skip
LINKS = {"unsubscribe_url": "https://t.example/e/u/TOKEN", "open_url": "https://t.example/e/o/OPEN.gif",
         "postal_address": "1 Main Street"}  # fmt: skip


def _click(url: str) -> str:
    return "https://t.example/e/c/" + url.replace("&", "%26")


def _same_entities(text: str) -> str:
    return text.replace("&#34;", "&quot;").replace("&#39;", "&#x27;")


@pytest.mark.parametrize(
    ("subject", "preheader", "body", "text"),
    [
        ("Hi {{ contact.first_name }}", "", HTML, ""),
        (
            "For {{ account.name }}",
            "Inside: {{ contact.last_name }}",
            HTML,
            "Text for {{ contact.first_name }}\n{{ unsubscribe_url }}",
        ),
        (
            "{{ contact.title | default('Friend') }}",
            "",
            '<p>{{ contact.title | default("there") }}</p>'
            '<a href="https://x.example/{{ contact.last_name }}?a=1&amp;b=2">x</a> {{ postal_address }}',
            "",
        ),
        ("Plain", "", "<html><head></head><body><p>No fields</p></body></html>", ""),
    ],
)
def test_a_merged_message_is_what_the_renderer_makes(subject: str, preheader: str, body: str, text: str) -> None:
    compiled = CompiledVariant(subject, preheader, body, text)
    merge = MergeVariant(subject, preheader, body, text)
    expected = compiled.render(FIELDS, LINKS, _click)
    values = {f"-pv{n}-": v for n, v in enumerate(merge.values(FIELDS, LINKS, _click))}
    assert _substitute(merge.render("html", lambda n: f"-pv{n}-"), values) == _same_entities(expected.html)
    assert _substitute(merge.render("text", lambda n: f"-pv{n}-"), values) == expected.text
    assert merge.subject_for(FIELDS, LINKS) == expected.subject


def test_with_a_links_base_one_token_serves_every_link() -> None:
    merge = MergeVariant("Hi", "", HTML + '<a href="https://example.com/a">a</a>', "", links_base="https://t.example")
    values = dict(zip([f"-pv{n}-" for n in range(len(merge.refs))],
                      merge.values(FIELDS, LINKS | {"message_token": "TOK", "unsubscribe_token": "UNS"}, _click),
                      strict=True))  # fmt: skip
    body = _substitute(merge.render("html", lambda n: f"-pv{n}-"), values)
    assert 'href="https://t.example/e/c/TOK/0"' in body
    assert 'href="https://t.example/e/u/UNS"' in body, "unsubscribing has its own token"
    assert 'src="https://t.example/e/o/TOK.gif"' in body
    assert merge.constant_links == ["https://example.com/a"]
    assert "https://t.example/e/c/https" in body, "the link with a merge field keeps its own signed URL"


def test_logic_needs_the_full_renderer_and_missing_fields_follow_the_policy() -> None:
    with pytest.raises(NotMergeable):
        MergeVariant("Hi", "", "{% if contact.title %}{{ contact.title }}{% endif %}", "")
    with pytest.raises(NotMergeable):
        MergeVariant("Hi {{ contact.first_name | upper }}", "", HTML, "")
    strict = MergeVariant("Hi", "", "<p>{{ contact.title }}</p>", "")
    with pytest.raises(TemplateProblem) as caught:
        strict.values(FIELDS, LINKS, _click)
    assert caught.value.field == "contact.title"
    blank = MergeVariant("Hi", "", "<p>{{ contact.title }}</p>", "", missing="blank")
    assert "" in blank.values(FIELDS, LINKS, _click)


@pytest.mark.parametrize(
    ("status", "kind", "fault"),
    [(202, "sent", False), (200, "sent", False), (429, "throttled", True), (500, "temporary", True),
     (503, "temporary", True), (401, "permanent", True), (400, "permanent", True)],
)  # fmt: skip
def test_http_answers_are_classified(status: int, kind: str, fault: bool) -> None:
    result = classify_http(status, "x", "2")
    assert (result.kind, result.provider_fault) == (kind, fault)


def test_a_batch_body_carries_the_template_once() -> None:
    merge = MergeVariant("Hi {{ contact.first_name }}", "", HTML, "")
    messages = [Outgoing(n, "s@p.example", f"r{n}@acme.example", f"c1.r{n}@p.example", b"",
                         Merged(merge, f"Hi {n}", merge.values(FIELDS, LINKS, _click), f"https://u/{n}"), "Sales")
                for n in range(3)]  # fmt: skip
    body = sendgrid_body(messages)
    assert body.count(b"<html>") == 1
    assert body.count(b'"pivotal_message"') == 3
    form = mailgun_form(messages)
    (to,) = [value for options, _, value in form._fields if options["name"] == "to"]
    assert to == "r0@acme.example, r1@acme.example, r2@acme.example"


@pytest.fixture
async def email_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await reset_email(clean_db)
    return clean_db


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun"])
async def test_a_campaign_goes_out_in_batches(
    make_client: Any, email_db: asyncpg.Pool, role_users: dict[Role, int], provider: str
) -> None:
    api = MailApi("api-key-1", keep=True)
    async with serving(api) as base_url:
        client = await make_client(email={"sandbox": False})
        auth = bearer(await login(client, "admin@test.example"))
        people = [f"person{n}@acme.example" for n in range(300)]
        campaign = await email_campaign(email_db, people, port=1, status="draft")
        await email_db.execute("""UPDATE email_variants SET html_body = replace(html_body, '</body>',
                                  '<a href="https://example.com/pricing?a=1&amp;b=2">Pricing</a></body>')""")
        profile = await client.post("/api/sender-profiles", headers=auth, json={
            "name": provider, "from_name": "Pivotal", "from_email": "news@pivotal.example", "provider": provider,
            "secret": "api-key-1", "provider_settings": {"base_url": base_url, "domain": "mg.pivotal.example",
                                                          "batch_size": 100}})  # fmt: skip
        assert profile.status == 201, await profile.text()
        await email_db.execute("UPDATE campaigns SET sender_profile_id = $2, status = 'running' WHERE id = $1",
                               campaign, (await profile.json())["id"])  # fmt: skip
        await wait_for(email_db, "SELECT count(*) = 300 FROM email_messages WHERE campaign_id = $1 AND status = "
                       "'sent'", campaign)  # fmt: skip
        assert api.recipients == 300
        assert api.requests <= 12, "batches of up to 100, not a request per recipient"
        got = {d.to: d for d in api.delivered}
        assert sorted(got) == sorted(people)
        ids = {r["to_email"]: r["id"] for r in await email_db.fetch("SELECT id, to_email FROM email_messages")}
        one = got["person7@acme.example"]
        assert one.subject == "The Q4 report for F7"
        assert "<p>Hi F7,</p>" in one.html
        assert "/e/c/" in one.html, "links are tracked"
        assert "https://example.com/report" not in one.html
        assert "/e/o/" in one.html
        assert one.headers["X-Pivotal-Message"] == str(ids["person7@acme.example"])
        unsubscribe = one.headers["List-Unsubscribe"].strip("<>")
        assert "Hi F8" not in one.html
        assert html.unescape(unsubscribe) in html.unescape(one.html)
        path = unsubscribe.split("://", 1)[1].split("/", 1)[1]
        response = await client.post("/" + path, data=b"List-Unsubscribe=One-Click",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert response.status == 200
        assert await email_db.fetchval("SELECT count(*) FROM suppressions WHERE value = 'person7@acme.example'") == 1
        hrefs = [html.unescape(h) for h in re.findall(r'href="([^"]+/e/c/[^"]+)"', one.html)]
        assert len(hrefs) == 2
        targets = []
        for href in hrefs:  # the link with a merge field is signed with its URL; the other is numbered
            answer = await client.get("/" + href.split("://", 1)[1].split("/", 1)[1], allow_redirects=False)
            assert answer.status == 302
            targets.append(answer.headers["Location"])
        assert targets == [
            "https://example.com/report?utm_source=pivotal&who=L7",
            "https://example.com/pricing?a=1&b=2",
        ]
        forged = hrefs[1][:-1] + "5"
        assert (await client.get("/" + forged.split("://", 1)[1].split("/", 1)[1], allow_redirects=False)).status == 404


async def test_a_wrong_api_key_pauses_the_campaign(
    make_client: Any, email_db: asyncpg.Pool, role_users: dict[Role, int]
) -> None:
    api = MailApi("the-right-key")
    async with serving(api) as base_url:
        client = await make_client(email={"sandbox": False})
        auth = bearer(await login(client, "admin@test.example"))
        campaign = await email_campaign(email_db, [f"p{n}@acme.example" for n in range(20)], port=1, status="draft",
                                        settings={"max_consecutive_errors": 2})  # fmt: skip
        profile = await client.post("/api/sender-profiles", headers=auth, json={
            "name": "sg", "from_email": "news@pivotal.example", "provider": "sendgrid", "secret": "wrong",
            "provider_settings": {"base_url": base_url, "batch_size": 5}})  # fmt: skip
        await email_db.execute("UPDATE campaigns SET sender_profile_id = $2, status = 'running' WHERE id = $1",
                               campaign, (await profile.json())["id"])  # fmt: skip
        await wait_for(email_db, "SELECT status = 'paused' FROM campaigns WHERE id = $1", campaign)
        assert api.recipients == 0
        assert api.refused >= 2
        statuses = await email_db.fetchval(
            "SELECT count(*) FROM email_messages WHERE campaign_id = $1 AND status = 'sent'", campaign
        )
        assert statuses == 0


def test_the_stand_in_merges_recipient_variables() -> None:
    assert _recipient("Hi %recipient.pv0%, %recipient.none%", {"pv0": "Ann"}) == "Hi Ann, "
