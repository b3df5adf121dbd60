"""A local stand-in for the batched e-mail APIs: SendGrid v3 ``/v3/mail/send``, Mailgun
``/v3/{domain}/messages`` and SES v2 ``/v2/email/outbound-bulk-emails``, on loopback, for tests and benchmarks.

It checks what the real services check first (the API key, the batch limits, the required fields), answers as
they do (SendGrid 202 with X-Message-Id; Mailgun 200 with an id), and merges each recipient's message (the
substitutions or recipient variables into the template) when asked to keep them, so a test reads what each
person would get. Recipients at ``throttle.invalid`` get 429, at ``fail.invalid`` 500, at ``reject.invalid`` 400
(the whole request, as the services do).

    python -m sim.mail_api --port 8025 --key test-key [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MAX_PERSONALIZATIONS = 1000


@dataclass
class Delivered:
    provider: str
    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    variables: dict[str, str]


@dataclass
class MailApi:
    key: str
    keep: bool = False
    aws_secret: str = ""  # SES: the secret access key the signatures are checked with
    requests: int = 0
    recipients: int = 0
    refused: int = 0
    delivered: list[Delivered] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v3/mail/send", self.sendgrid)
        app.router.add_post("/v3/{domain}/messages", self.mailgun)
        app.router.add_post("/v2/email/outbound-bulk-emails", self.ses)
        app.router.add_get("/_sim/stats", self.stats)
        return app

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "recipients": self.recipients, "refused": self.refused})

    def _fault(self, addresses: list[str]) -> web.Response | None:
        for address in addresses:
            domain = address.rsplit("@", 1)[-1]
            if domain == "throttle.invalid":
                return web.json_response({"errors": [{"message": "too many requests"}]}, status=429,
                                         headers={"Retry-After": "1"})  # fmt: skip
            if domain == "fail.invalid":
                return web.json_response({"errors": [{"message": "internal error"}]}, status=500)
            if domain == "reject.invalid":
                return web.json_response({"errors": [{"message": "invalid recipient"}]}, status=400)
        return None

    async def sendgrid(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            self.refused += 1
            return web.json_response({"errors": [{"message": "authorization required"}]}, status=401)
        try:
            body = json.loads(await request.read())
            personalizations = body["personalizations"]
            content = {c["type"]: c["value"] for c in body["content"]}
            sender = body["from"]["email"]
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"errors": [{"message": f"bad request: {exc!r}"}]}, status=400)
        if not 1 <= len(personalizations) <= MAX_PERSONALIZATIONS or not sender:
            return web.json_response({"errors": [{"message": "1 to 1000 personalizations"}]}, status=400)
        addresses = [p["to"][0]["email"] for p in personalizations]
        fault = self._fault(addresses)
        if fault is not None:
            return fault
        self.recipients += len(personalizations)
        if self.keep:
            for p in personalizations:
                subs = p.get("substitutions", {})
                merged = {part: _substitute(value, subs) for part, value in content.items()}
                subject = _substitute(p.get("subject", ""), subs)
                self.delivered.append(Delivered("sendgrid", p["to"][0]["email"], subject,
                                                merged.get("text/html", ""), merged.get("text/plain", ""),
                                                {**body.get("headers", {}), **p.get("headers", {})},
                                                p.get("custom_args", {})))  # fmt: skip
        return web.Response(status=202, headers={"X-Message-Id": uuid.uuid4().hex})

    async def mailgun(self, request: web.Request) -> web.Response:
        self.requests += 1
        auth = request.headers.get("Authorization", "")
        if auth != "Basic " + base64.b64encode(f"api:{self.key}".encode()).decode():
            self.refused += 1
            return web.Response(status=401, text="Forbidden")
        form = await request.post()
        to = [a.strip() for v in form.getall("to", []) for a in str(v).split(",") if a.strip()]
        if not 1 <= len(to) <= MAX_PERSONALIZATIONS or "from" not in form:
            return web.json_response({"message": "to: 1 to 1000 recipients; from: required"}, status=400)
        fault = self._fault(to)
        if fault is not None:
            return fault
        try:
            variables = json.loads(str(form.get("recipient-variables", "{}")))
        except ValueError:
            return web.json_response({"message": "recipient-variables is not JSON"}, status=400)
        self.recipients += len(to)
        if self.keep:
            for address in to:
                mine = {k: str(v) for k, v in variables.get(address, {}).items()}
                headers = {k[2:]: _recipient(str(v), mine) for k, v in form.items() if k.startswith("h:")}
                self.delivered.append(Delivered("mailgun", address, _recipient(str(form.get("subject", "")), mine),
                                                _recipient(str(form.get("html", "")), mine),
                                                _recipient(str(form.get("text", "")), mine), headers,
                                                {k[2:]: _recipient(str(v), mine) for k, v in form.items()
                                                 if k.startswith("v:")}))  # fmt: skip
        return web.json_response({"id": f"<{uuid.uuid4().hex}@mailgun.test>", "message": "Queued. Thank you."})

    async def ses(self, request: web.Request) -> web.Response:
        """SES v2 SendBulkEmail: the Signature Version 4 checked with ``aws_secret``; answered per recipient."""
        self.requests += 1
        body = await request.read()
        if not self.aws_secret or not _sigv4_ok(request, body, self.aws_secret):
            self.refused += 1
            return web.json_response({"message": "The request signature we calculated does not match"}, status=403)
        try:
            doc = json.loads(body)
            content = doc["DefaultContent"]["Template"]["TemplateContent"]
            entries = doc["BulkEmailEntries"]
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"message": f"bad request: {exc!r}"}, status=400)
        if not 1 <= len(entries) <= 50:
            return web.json_response({"message": "1 to 50 BulkEmailEntries"}, status=400)
        results = []
        for entry in entries:
            to = entry["Destination"]["ToAddresses"][0]
            domain = to.rsplit("@", 1)[-1]
            if domain == "reject.invalid":
                results.append({"Status": "MESSAGE_REJECTED", "Error": "Email address is not verified."})
                continue
            if domain == "throttle.invalid":
                results.append({"Status": "ACCOUNT_THROTTLED", "Error": "Maximum sending rate exceeded."})
                continue
            self.recipients += 1
            message_id = uuid.uuid4().hex
            results.append({"Status": "SUCCESS", "MessageId": message_id})
            if self.keep:
                data = json.loads(entry["ReplacementEmailContent"]["ReplacementTemplate"]["ReplacementTemplateData"])
                headers = {h["Name"]: h["Value"] for h in entry.get("ReplacementHeaders", [])}
                self.delivered.append(Delivered("ses", to, _handlebars(content.get("Subject", ""), data),
                                                _handlebars(content.get("Html", ""), data),
                                                _handlebars(content.get("Text", ""), data), headers, {}))  # fmt: skip
        return web.json_response({"BulkEmailEntryResults": results})


def _sigv4_ok(request: web.Request, body: bytes, secret: str) -> bool:
    """Signature Version 4, recomputed from the request as AWS does."""
    match = re.match(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
        request.headers.get("Authorization", ""),
    )
    if not match:
        return False
    _, day, region, service, signed, signature = match.groups()
    names = signed.split(";")
    canonical_headers = "".join(f"{n}:{' '.join(request.headers.get(n, '').split())}\n" for n in names)
    canonical = "\n".join([request.method, request.path, "", canonical_headers, signed,
                           hashlib.sha256(body).hexdigest()])  # fmt: skip
    amz_date = request.headers.get("X-Amz-Date", "")
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, f"{day}/{region}/{service}/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])  # fmt: skip
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature)


def _handlebars(text: str, data: dict[str, Any]) -> str:
    merged = re.sub(r"\{\{\{([A-Za-z0-9_]+)\}\}\}", lambda m: str(data.get(m.group(1), "")), text)
    return merged.replace("\\{{", "{{")


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    if not substitutions:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(substitutions, key=len, reverse=True)))
    return pattern.sub(lambda m: substitutions[m.group(0)], text)


def _recipient(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"%recipient\.([A-Za-z0-9_]+)%", lambda m: variables.get(m.group(1), ""), text)


@contextlib.asynccontextmanager
async def serving(api: MailApi, host: str = "127.0.0.1", port: int = 0) -> Any:
    """Runs the API on a free loopback port; yields the base URL."""
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--keep", action="store_true", help="merge and keep every message (memory grows)")
    parser.add_argument("--aws-secret", default="", help="SES: the secret access key signatures are checked with")
    args = parser.parse_args()
    api = MailApi(args.key, keep=args.keep, aws_secret=args.aws_secret)

    async def run() -> None:
        async with serving(api, port=args.port) as url:
            print(f"mail API on {url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
