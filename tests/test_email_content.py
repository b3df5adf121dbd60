"""The pure parts of the e-mail engine: signed link tokens, templates, the MIME builder, SMTP reply classes."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from dispatch.mime import Envelope, HeaderInjection, build
from dispatch.providers.base import backoff_s, classify_smtp
from dispatch.templates import CompiledVariant, TemplateProblem
from dispatch.text_part import html_to_text
from dispatch.tokens import BadToken, Signer

LINKS = {"unsubscribe_url": "https://t.example/e/u/TOKEN", "open_url": "https://t.example/e/o/TOKEN.gif"}
FIELDS = {"contact": {"first_name": "Ann", "email": "ann@acme.example"}, "account": {"name": "Acme"},
          "campaign": {"name": "Q4"}}  # fmt: skip
HTML = """<html><body>
<p>Hi {{ contact.first_name }},</p>
<p><a href="https://example.com/offer?c={{ account.name }}&amp;x=1">the offer</a></p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> - 1 Main Street, Springfield</p>
</body></html>"""


# -- tokens --------------------------------------------------------------------------------------------------


def test_a_token_round_trips_and_names_its_row() -> None:
    signer = Signer(b"k" * 32)
    claim = signer.verify(signer.sign("c", 42, "https://example.com/a?b=1"), "c")
    assert (claim.kind, claim.message_id, claim.extra) == ("c", 42, "https://example.com/a?b=1")


@pytest.mark.parametrize(
    ("mangle", "kind", "message"),
    [
        (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], "u", "not valid"),  # tag changed
        (lambda t: "x" + t, "u", "not valid|malformed"),  # body changed
        (lambda t: t, "c", "not valid here"),  # an unsubscribe token used as a click
        (lambda t: t.replace(".", ""), "u", "malformed"),
        (lambda t: "", "u", "malformed"),
        (lambda t: "a" * 5000 + "." + "b", "u", "malformed"),
        (lambda t: "!!!.???", "u", "not valid|malformed"),
    ],
)
def test_a_forged_or_misused_token_is_refused(mangle, kind, message) -> None:  # type: ignore[no-untyped-def]
    signer = Signer(b"k" * 32)
    with pytest.raises(BadToken, match=message):
        signer.verify(mangle(signer.sign("u", 7)), kind)


def test_another_key_s_tokens_are_refused() -> None:
    with pytest.raises(BadToken):
        Signer(b"a" * 32).verify(Signer(b"b" * 32).sign("u", 1), "u")


def test_a_click_token_cannot_be_rewritten_to_another_url() -> None:
    """No open redirect: the URL is inside the signed part."""
    signer = Signer(b"k" * 32)
    body, tag = signer.sign("c", 1, "https://example.com/").split(".")
    evil_body = Signer(b"k" * 32).sign("c", 1, "https://evil.example/").split(".")[0]
    with pytest.raises(BadToken):
        signer.verify(f"{evil_body}.{tag}", "c")


# -- templates -----------------------------------------------------------------------------------------------


def test_a_variant_renders_merge_fields_tracked_links_pixel_and_preheader() -> None:
    variant = CompiledVariant("Hello {{ contact.first_name }}", "For {{ account.name }}", HTML, "")
    out = variant.render(FIELDS, LINKS, lambda url: "https://t.example/e/c/" + url.replace("&", "%26"))
    assert out.subject == "Hello Ann"
    assert 'href="https://t.example/e/c/https://example.com/offer?c=Acme%26x=1"' in out.html
    assert 'href="https://t.example/e/u/TOKEN"' in out.html  # the unsubscribe link is never tracked
    assert '<img src="https://t.example/e/o/TOKEN.gif"' in out.html
    assert out.html.index("<img") < out.html.index("</body>")
    assert "For Acme</div><p>" not in out.html
    assert ">For Acme</div>" in out.html
    assert "Unsubscribe (https://t.example/e/u/TOKEN)" in out.text  # the derived text part keeps the link
    assert "the offer (https://example.com/offer?c=Acme&x=1)" in out.text


def test_merge_values_are_escaped_in_html_and_cannot_break_the_subject_line() -> None:
    variant = CompiledVariant("Hi {{ contact.first_name }}", "", "<p>{{ contact.first_name }}</p>", "")
    out = variant.render({"contact": {"first_name": "<script>x</script>\r\nBcc: all@example.com"}}, LINKS, None)
    assert "<script>" not in out.html
    assert "&lt;script&gt;" in out.html
    assert "\n" not in out.subject
    assert "\r" not in out.subject


@pytest.mark.parametrize(
    ("subject", "html", "part", "line", "field"),
    [
        ("Hi {{ contact.first_nme }}", "<p>x</p>", "subject", 1, "contact.first_nme"),
        ("Hi", "<p>x</p>\n<p>{{ account.revenue }}</p>", "html", 2, "account.revenue"),
        ("Hi", "<p>\n\n{% if %}</p>", "html", 3, None),
        ("Hi {{ foo }}", "<p>x</p>", "subject", 1, "foo"),
        ("Hi {{ contact.__class__ }}", "<p>x</p>", "subject", 1, "contact.__class__"),
    ],
)
def test_a_template_that_cannot_work_is_refused_at_compile_time_with_part_line_and_field(
    subject: str, html: str, part: str, line: int, field: str | None
) -> None:
    with pytest.raises(TemplateProblem) as caught:
        CompiledVariant(subject, "", html, "")
    assert (caught.value.part, caught.value.line) == (part, line)
    if field:
        assert caught.value.field == field
        assert field in str(caught.value)


def test_an_empty_field_fails_the_recipient_under_the_error_policy_naming_field_and_line() -> None:
    variant = CompiledVariant("Hi", "", "<p>\n{{ contact.first_name }}</p>", "")
    with pytest.raises(TemplateProblem) as caught:
        variant.render({"contact": {"first_name": ""}}, LINKS, None)
    assert (caught.value.part, caught.value.line, caught.value.field) == ("html", 2, "contact.first_name")


def test_the_blank_policy_and_default_filter_fill_empty_fields() -> None:
    variant = CompiledVariant("Hi {{ contact.first_name }}!", "", '<p>{{ contact.first_name | default("there") }}</p>',
                              "", missing="blank")  # fmt: skip
    out = variant.render({"contact": {}}, LINKS, None)
    assert out.subject == "Hi !"
    assert "<p>there</p>" in out.html


def test_the_sandbox_refuses_to_reach_python_internals() -> None:
    variant = CompiledVariant("x", "", "<p>{{ contact.first_name.__class__.__mro__ }}</p>", "", missing="blank")
    assert "object" not in variant.render(FIELDS, LINKS, None).html
    loop = CompiledVariant("x", "", "{% for i in range(10**9) %}{% endfor %}<p>y</p>", "")
    with pytest.raises(TemplateProblem):  # the sandbox caps range()
        loop.render(FIELDS, LINKS, None)


def test_html_over_100_kb_is_refused() -> None:
    with pytest.raises(TemplateProblem, match="100 KB"):
        CompiledVariant("x", "", "<p>" + "x" * 103_000 + "</p>", "")


def test_text_is_derived_from_html_without_styles_and_with_links() -> None:
    text = html_to_text("<html><head><style>p{}</style></head><body><h1>Title</h1><p>One <b>two</b></p>"
                        '<ul><li>a</li><li>b</li></ul><a href="https://x.example/">site</a></body></html>')  # fmt: skip
    assert text == "Title\n\nOne two\n\n- a\n\n- b\n\nsite (https://x.example/)\n"


# -- MIME ----------------------------------------------------------------------------------------------------


def _parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_message_carries_rfc_8058_headers_a_deterministic_id_and_both_parts() -> None:
    subject = "Grüße, Ann — über alles " * 3
    envelope = Envelope("Zoë", "sales@pivotal.example", "ann@acme.example", subject, "c7.r99@pivotal.example",
                        "https://t.example/e/u/TOK", "reply@pivotal.example", 1234)  # fmt: skip
    data = build(envelope, "<p>" + "é" * 3000 + "</p>", "plain ü\nsecond line")
    message = _parse(data)
    assert message["List-Unsubscribe"] == "<https://t.example/e/u/TOK>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == "<c7.r99@pivotal.example>"
    assert message["Subject"] == "Grüße, Ann — über alles " * 3
    assert message["From"].addresses[0].display_name == "Zoë"
    assert message["Reply-To"] == "reply@pivotal.example"
    assert message["X-Pivotal-Message"] == "1234"
    text, html = message.iter_parts()
    assert text.get_content() == "plain ü\nsecond line"
    assert html.get_content() == "<p>" + "é" * 3000 + "</p>"
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert b"\n" not in data.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    ("html", "encoding"),
    [
        ("<p>plain ASCII</p>\n<p>second line</p>", "7bit"),
        ("<p>" + "x" * 1200 + "</p>", "base64"),  # a line over RFC 5321's 998 characters
        ("<p>Zoë</p>", "base64"),
        ("<p>a bare\rcarriage return</p>", "7bit"),
    ],
)
def test_a_part_goes_as_it_is_when_it_can_and_base64_otherwise(html: str, encoding: str) -> None:
    envelope = Envelope("", "a@x.example", "b@x.example", "s", "m@x.example", "https://t.example/u")
    data = build(envelope, html, "text")
    message = _parse(data)
    part = message.get_body(("html",))
    assert part is not None
    assert part["Content-Transfer-Encoding"] == encoding
    assert part.get_content().replace("\r\n", "\n") == html.replace("\r", "\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@pytest.mark.parametrize("field", ["from_name", "to_email", "subject", "unsubscribe_url", "message_id"])
def test_a_line_break_in_any_header_value_is_refused(field: str) -> None:
    values = {"from_name": "A", "from_email": "a@x.example", "to_email": "b@x.example", "subject": "s",
              "message_id": "m@x.example", "unsubscribe_url": "https://t.example/u"}  # fmt: skip
    values[field] = values[field] + "\r\nBcc: everyone@example.com"
    with pytest.raises(HeaderInjection):
        build(Envelope(**values), "<p>x</p>", "x")  # type: ignore[arg-type]


# -- provider replies ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "kind", "fault"),
    [
        (250, "2.0.0 Ok: queued as ABC", "sent", False),
        (550, "5.1.1 User unknown", "permanent", False),
        (552, "5.2.2 Mailbox full", "permanent", False),
        (554, "5.7.1 Relay access denied", "permanent", True),
        (535, "5.7.8 Authentication credentials invalid", "permanent", True),
        (450, "4.2.1 Mailbox busy", "temporary", False),
        (451, "4.3.0 Temporary local problem", "temporary", True),
        (452, "4.2.2 Mailbox full", "temporary", False),
        (421, "4.3.2 Service shutting down", "temporary", True),
        (421, "4.7.0 Too many messages, rate limited", "throttled", True),
        (454, "Throttling failure: Maximum sending rate exceeded", "throttled", True),
        (451, "4.7.1 Please slow down: rate limit", "throttled", True),
    ],
)
def test_smtp_replies_are_classified(code: int, text: str, kind: str, fault: bool) -> None:
    result = classify_smtp(code, text)
    assert (result.kind, result.provider_fault) == (kind, fault)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (20, 3600)])
def test_temporary_failures_back_off_exponentially_to_an_hour(attempt: int, delay: float) -> None:
    assert backoff_s(attempt) == delay
