"""Amazon SES v2 ``SendBulkEmail``: up to 50 recipients a request, the variant as an inline template
(``TemplateContent``) and each recipient's values as its replacement data; answered per recipient.

Requests are signed with AWS Signature Version 4 (``sigv4`` below: the documented algorithm, a few HMACs; boto's
signer would bring botocore, a synchronous HTTP stack we do not use, for these 40 lines). The secret is
``ACCESS_KEY_ID:SECRET_ACCESS_KEY``; ``provider_settings`` give the ``region`` (and optionally ``base_url``,
``configuration_set``, ``batch_size`` up to 50).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from dispatch.providers.base import Outgoing, SendResult
from dispatch.providers.http_api import _check_batch, _HttpTransport, classify_http

MAX_BATCH = 50
PATH = "/v2/email/outbound-bulk-emails"
#: Per-recipient statuses (BulkEmailStatus): what they say about the recipient and about us.
_STATUS: dict[str, tuple[str, bool]] = {
    "SUCCESS": ("sent", False),
    "MESSAGE_REJECTED": ("permanent", False),
    "ACCOUNT_THROTTLED": ("throttled", True),
    "ACCOUNT_DAILY_QUOTA_EXCEEDED": ("throttled", True),
    "TRANSIENT_FAILURE": ("temporary", True),
    "FAILED": ("temporary", True),
}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4(method: str, url: str, headers: dict[str, str], body: bytes, *, access_key: str, secret_key: str,
          region: str, service: str, now: datetime) -> dict[str, str]:  # fmt: skip
    """The headers to add (X-Amz-Date, Authorization) for a request signed with AWS Signature Version 4."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    all_headers = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    all_headers["host"] = parts.netloc
    all_headers["x-amz-date"] = amz_date
    signed = ";".join(sorted(all_headers))
    query = "&".join(sorted(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, _, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
    ))  # fmt: skip
    canonical = "\n".join([
        method.upper(), quote(parts.path or "/", safe="/-_.~"), query,
        "".join(f"{k}:{all_headers[k]}\n" for k in sorted(all_headers)), signed, hashlib.sha256(body).hexdigest(),
    ])  # fmt: skip
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"X-Amz-Date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                             f"Signature={signature}"}  # fmt: skip


def _ses_tag(n: int) -> str:
    return "{{{" + f"pv{n}" + "}}}"  # triple braces: the values are escaped already (Handlebars would escape again)


def ses_body(messages: list[Outgoing], configuration_set: str | None = None) -> bytes:
    template = _check_batch(messages)
    first = messages[0]
    assert first.merged is not None
    sender = f"{first.from_name} <{first.from_email}>" if first.from_name else first.from_email
    if template is not None:
        html, text = template.render("html", _ses_tag), template.render("text", _ses_tag)
    else:
        html, text = _literal(first.merged.html), _literal(first.merged.text)
    entries = []
    for m in messages:
        merged = m.merged
        assert merged is not None
        data = {f"pv{n}": value for n, value in enumerate(merged.values)} | {"subject": merged.subject}
        entries.append({
            "Destination": {"ToAddresses": [m.to_email]},
            "ReplacementEmailContent": {"ReplacementTemplate": {"ReplacementTemplateData": json.dumps(data)}},
            "ReplacementHeaders": [{"Name": "List-Unsubscribe", "Value": f"<{merged.unsubscribe_url}>"},
                                   {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
                                   {"Name": "X-Pivotal-Message", "Value": str(m.ledger_id)}],
        })  # fmt: skip
    body: dict[str, Any] = {
        "FromEmailAddress": sender,
        "DefaultContent": {"Template": {"TemplateContent": {"Subject": "{{{subject}}}", "Html": html, "Text": text},
                                        "TemplateData": "{}"}},
        "BulkEmailEntries": entries,
    }  # fmt: skip
    if first.reply_to:
        body["ReplyToAddresses"] = [first.reply_to]
    if configuration_set:
        body["ConfigurationSetName"] = configuration_set
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _literal(text: str) -> str:
    """A rendered part inside a Handlebars template: braces kept as they are."""
    return text.replace("{{", "\\{{")


def ses_results(status: int, text: str, count: int, retry_after: str | None = None) -> list[SendResult]:
    if not 200 <= status < 300:
        return [classify_http(status, text, retry_after)] * count
    try:
        entries = json.loads(text)["BulkEmailEntryResults"]
    except (ValueError, KeyError, TypeError):
        return [SendResult("temporary", "an answer without per-recipient results", provider_fault=True)] * count
    out = []
    for n in range(count):
        entry = entries[n] if n < len(entries) and isinstance(entries[n], dict) else {}
        name = str(entry.get("Status", "FAILED"))
        kind, fault = _STATUS.get(name, ("permanent", True))  # account and configuration errors: ours to fix
        detail = str(entry.get("MessageId") or f"{name}: {entry.get('Error', '')}")[:500]
        out.append(SendResult(kind, detail, provider_fault=fault))  # type: ignore[arg-type]
    return out


class SesTransport(_HttpTransport):
    name = "ses"

    def __init__(self, options: Any, access_key: str, secret_key: str, region: str,
                 configuration_set: str | None = None) -> None:  # fmt: skip
        super().__init__(options)
        self.batch_size = min(MAX_BATCH, options.batch_size)
        self._access, self._secret, self._region = access_key, secret_key, region
        self._configuration_set = configuration_set

    async def send_batch(self, messages: list[Outgoing]) -> list[SendResult]:
        if not messages:
            return []
        if self._session is None:
            raise RuntimeError("the transport is not open")
        body = ses_body(messages, self._configuration_set)
        url = f"{self.options.base_url.rstrip('/')}{PATH}"
        headers = {"Content-Type": "application/json"}
        headers |= sigv4("POST", url, headers, body, access_key=self._access, secret_key=self._secret,
                         region=self._region, service="ses", now=datetime.now(UTC))  # fmt: skip
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                return ses_results(response.status, await response.text(), len(messages),
                                   response.headers.get("Retry-After"))  # fmt: skip
        except TimeoutError:
            result = SendResult("temporary", "timed out (SES may have accepted it)", provider_fault=True)
        except aiohttp.ClientError as exc:
            result = SendResult("temporary", f"connection failed: {exc}"[:500], provider_fault=True)
        return [result] * len(messages)
