"""Batched HTTP providers: SendGrid v3 (1,000 personalizations a request) and Mailgun (1,000 recipients with
recipient variables). Each request carries the variant's template once and each recipient's values.

Answers are classified like SMTP replies: 2xx sent (every recipient of the request); 429 throttled (its
Retry-After honoured); 5xx, timeouts and lost connections temporary (retried with back-off; a connection lost
after the request went out may have been accepted: those recipients are the ambiguous ones); 401/403 permanent
and the provider's fault (the account: the campaign pauses after enough of them); other 4xx permanent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from dispatch.providers.base import Outgoing, SendResult

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HttpOptions:
    base_url: str
    api_key: str
    domain: str = ""  # Mailgun's sending domain
    batch_size: int = 1000
    connections: int = 4
    timeout_s: float = TIMEOUT_S


def classify_http(status: int, text: str, retry_after: str | None = None) -> SendResult:
    detail = f"{status} {text}".strip()[:500]
    if 200 <= status < 300:
        return SendResult("sent", detail)
    if status == 429:
        wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        return SendResult("throttled", detail, retry_after_s=wait, provider_fault=True)
    if status >= 500 or status == 408:
        return SendResult("temporary", detail, provider_fault=True)
    if status in (401, 403):
        return SendResult("permanent", detail, provider_fault=True)
    return SendResult("permanent", detail, provider_fault=True)  # a request the provider refuses is ours to fix


class _HttpTransport:
    name = "http"

    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        self.concurrency = options.connections
        self.batch_size = options.batch_size
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.options.connections * 2)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=self.options.timeout_s))  # fmt: skip

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: Outgoing) -> SendResult:
        return (await self.send_batch([message]))[0]

    async def send_batch(self, messages: list[Outgoing]) -> list[SendResult]:
        if not messages:
            return []
        if self._session is None:
            raise RuntimeError("the transport is not open")
        try:
            result = await self._post(self._session, messages)
        except TimeoutError:
            result = SendResult("temporary", "timed out (the provider may have accepted it)", provider_fault=True)
        except aiohttp.ClientError as exc:
            result = SendResult("temporary", f"connection failed: {exc}"[:500], provider_fault=True)
        return [result] * len(messages)

    async def _post(self, session: aiohttp.ClientSession, messages: list[Outgoing]) -> SendResult:
        raise NotImplementedError


def _check_batch(messages: list[Outgoing]) -> Any:
    """The batch's shared template: every message of a batch has the same one (or it is a batch of one)."""
    first = messages[0].merged
    if first is None:
        raise ValueError("a batched provider takes merged messages")
    if first.template is None and len(messages) > 1:
        raise ValueError("a message rendered on its own goes alone")
    return first.template


class SendGridTransport(_HttpTransport):
    name = "sendgrid"

    async def _post(self, session: aiohttp.ClientSession, messages: list[Outgoing]) -> SendResult:
        body = sendgrid_body(messages)
        async with session.post(f"{self.options.base_url.rstrip('/')}/v3/mail/send", data=body,
                                headers={"Authorization": f"Bearer {self.options.api_key}",
                                         "Content-Type": "application/json"}) as response:  # fmt: skip
            text = (await response.text())[:300] if response.status >= 300 else response.headers.get("X-Message-Id", "")
            return classify_http(response.status, text, response.headers.get("Retry-After"))


def sendgrid_body(messages: list[Outgoing]) -> bytes:
    template = _check_batch(messages)
    first = messages[0]
    assert first.merged is not None
    personalizations = []
    for m in messages:
        merged = m.merged
        assert merged is not None
        p: dict[str, Any] = {
            "to": [{"email": m.to_email}], "subject": merged.subject,
            "custom_args": {"pivotal_message": str(m.ledger_id)},
            "headers": {"List-Unsubscribe": f"<{merged.unsubscribe_url}>", "X-Pivotal-Message": str(m.ledger_id)},
        }  # fmt: skip
        if template is not None:
            p["substitutions"] = {f"-pv{n}-": value for n, value in enumerate(merged.values)}
        personalizations.append(p)
    if template is not None:
        text, html = template.render("text", _sendgrid_tag), template.render("html", _sendgrid_tag)
    else:
        text, html = first.merged.text, first.merged.html
    body: dict[str, Any] = {
        "personalizations": personalizations,
        "from": {"email": first.from_email, **({"name": first.from_name} if first.from_name else {})},
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        "headers": {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        "tracking_settings": {"click_tracking": {"enable": False}, "open_tracking": {"enable": False}},
    }  # fmt: skip
    if first.reply_to:
        body["reply_to"] = {"email": first.reply_to}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _sendgrid_tag(n: int) -> str:
    return f"-pv{n}-"


def _mailgun_tag(n: int) -> str:
    return f"%recipient.pv{n}%"


class MailgunTransport(_HttpTransport):
    name = "mailgun"

    async def _post(self, session: aiohttp.ClientSession, messages: list[Outgoing]) -> SendResult:
        form = mailgun_form(messages)
        url = f"{self.options.base_url.rstrip('/')}/v3/{self.options.domain}/messages"
        auth = "Basic " + base64.b64encode(f"api:{self.options.api_key}".encode()).decode()
        async with session.post(url, data=form, headers={"Authorization": auth}) as response:
            text = await response.text()
            if 200 <= response.status < 300:
                try:
                    text = str(json.loads(text).get("id", ""))
                except (ValueError, AttributeError):
                    text = ""
            return classify_http(response.status, text[:300], response.headers.get("Retry-After"))


def mailgun_form(messages: list[Outgoing]) -> aiohttp.FormData:
    template = _check_batch(messages)
    first = messages[0]
    assert first.merged is not None
    sender = f"{first.from_name} <{first.from_email}>" if first.from_name else first.from_email
    variables = {}
    form = aiohttp.FormData()
    form.add_field("from", sender)
    form.add_field("to", ", ".join(m.to_email for m in messages))  # one field: form parsers cap the field count
    for m in messages:
        merged = m.merged
        assert merged is not None
        values = {f"pv{n}": value for n, value in enumerate(merged.values)}
        variables[m.to_email] = values | {"subject": merged.subject, "unsubscribe": merged.unsubscribe_url,
                                          "pivotal_message": str(m.ledger_id)}  # fmt: skip
    if template is not None:
        text, html = template.render("text", _mailgun_tag), template.render("html", _mailgun_tag)
    else:
        text, html = first.merged.text, first.merged.html
    form.add_field("subject", "%recipient.subject%")
    form.add_field("text", text)
    form.add_field("html", html)
    form.add_field("recipient-variables", json.dumps(variables, separators=(",", ":"), ensure_ascii=False))
    form.add_field("h:List-Unsubscribe", "<%recipient.unsubscribe%>")
    form.add_field("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    form.add_field("h:X-Pivotal-Message", "%recipient.pivotal_message%")
    form.add_field("v:pivotal_message", "%recipient.pivotal_message%")
    form.add_field("o:tracking", "no")
    if first.reply_to:
        form.add_field("h:Reply-To", first.reply_to)
    return form
