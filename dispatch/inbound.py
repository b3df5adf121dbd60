"""Provider webhooks: signatures checked first, then the events read into one shape. No I/O but what is passed in.

- SendGrid's signed Event Webhook: ECDSA P-256 over timestamp + body (the public key from SendGrid's settings,
  base64 DER), the timestamp inside the replay window.
- Amazon SES through SNS: the message's canonical string signed with SHA1withRSA (SignatureVersion 1) or
  SHA256withRSA (2) by the certificate at SigningCertURL, which must be an https URL on an SNS host (the caller
  fetches and caches it); the Timestamp inside the replay window; the topic, when configured, one of ours.
- Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key, the timestamp inside the window and the
  token never seen before (a replay cache as long as the window).

Every event becomes an ``InboundEvent``: which message (our X-Pivotal-Message ledger id when the provider echoes
it, else the recipient's address), and what happened: delivered, bounce_hard, bounce_soft, complaint,
unsubscribe, open, click. Anything else is ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from crm import safe_json

#: Signed timestamps older or newer than this are refused (a captured request cannot be replayed later).
REPLAY_WINDOW_S = 300.0
#: SNS retries a delivery for a while; its Timestamp is the first attempt's.
SNS_WINDOW_S = 3600.0
SNS_CERT_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]+\.pem$")
MAX_EVENTS = 5000


class Rejected(ValueError):
    """Not verifiably the provider's: 401 (reason says why) or 400 (malformed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True, slots=True)
class InboundEvent:
    provider: str
    event_id: str  # the provider's, for de-duplication
    kind: str  # delivered, bounce_hard, bounce_soft, complaint, unsubscribe, open, click
    recipient: str
    message_id: int | None  # our ledger id, when the provider echoed it
    occurred_at: float
    detail: str = ""
    url: str | None = None


def _ledger_id(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    return int(text) if text.isdigit() and len(text) < 19 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _click_url(kind: str, item: dict[str, Any]) -> str | None:
    return str(item["url"])[:2000] if kind == "click" and item.get("url") else None


def _parse_json(body: bytes) -> Any:
    try:
        return safe_json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(400, f"the body is not JSON: {exc}") from None


# -- SendGrid -------------------------------------------------------------------------------------------------------


def sendgrid_key(public_key_b64: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("the SendGrid verification key is not an elliptic-curve key")
    return key


_SENDGRID_KINDS = {"delivered": "delivered", "spamreport": "complaint", "unsubscribe": "unsubscribe",
                   "group_unsubscribe": "unsubscribe", "open": "open", "click": "click"}  # fmt: skip


def sendgrid_events(key: ec.EllipticCurvePublicKey, headers: Any, body: bytes, now: float) -> list[InboundEvent]:
    signature = headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    if not signature or not timestamp:
        raise Rejected(401, "missing_signature")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW_S:
        raise Rejected(401, "stale_timestamp")
    try:
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected(401, "bad_signature") from None
    batch = _parse_json(body)
    if not isinstance(batch, list) or len(batch) > MAX_EVENTS:
        raise Rejected(400, f"expected a JSON array of at most {MAX_EVENTS} events")
    events = []
    for item in batch:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            continue
        name = item.get("event")
        if name in ("bounce", "dropped"):
            soft = item.get("type") == "blocked" or str(item.get("status", "")).startswith("4")
            kind = "bounce_soft" if soft else "bounce_hard"
        elif name in _SENDGRID_KINDS:
            kind = _SENDGRID_KINDS[name]
        else:
            continue
        event_id = str(item.get("sg_event_id") or "")[:200]
        if not event_id:
            continue
        at = item.get("timestamp")
        events.append(InboundEvent("sendgrid", event_id, kind, item["email"].strip().lower()[:254],
                                   _ledger_id(item.get("pivotal_message")),
                                   float(at) if isinstance(at, int | float) else now,
                                   str(item.get("reason") or item.get("response") or "")[:500],
                                   _click_url(kind, item)))  # fmt: skip
    return events


# -- SES through SNS ---------------------------------------------------------------------------------------------


_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


@dataclass(frozen=True)
class SnsEnvelope:
    kind: str  # Notification, SubscriptionConfirmation, UnsubscribeConfirmation
    message_id: str
    topic_arn: str
    message: str
    cert_url: str
    subscribe_url: str | None
    raw: dict[str, Any]


def sns_envelope(body: bytes, cert_url_pattern: re.Pattern[str] = SNS_CERT_URL) -> SnsEnvelope:
    """The SNS message, before its signature is checked (the caller fetches the certificate it names)."""
    doc = _parse_json(body)
    if not isinstance(doc, dict) or doc.get("Type") not in _SNS_FIELDS:
        raise Rejected(400, "not an SNS message")
    for name in ("MessageId", "TopicArn", "Message", "Timestamp", "Signature", "SigningCertURL"):
        if not isinstance(doc.get(name), str):
            raise Rejected(400, f"not an SNS message: no {name}")
    if doc.get("SignatureVersion") not in ("1", "2"):
        raise Rejected(401, "unknown_signature_version")
    if not cert_url_pattern.match(doc["SigningCertURL"]):
        raise Rejected(401, "untrusted_certificate_url")
    subscribe = doc.get("SubscribeURL")
    if subscribe is not None and (not isinstance(subscribe, str) or urlsplit(subscribe).hostname !=
                                  urlsplit(doc["SigningCertURL"]).hostname):  # fmt: skip
        raise Rejected(401, "untrusted_subscribe_url")
    return SnsEnvelope(doc["Type"], doc["MessageId"], doc["TopicArn"], doc["Message"], doc["SigningCertURL"],
                       subscribe, doc)  # fmt: skip


def sns_verify(envelope: SnsEnvelope, cert_pem: bytes, now: float, topics: frozenset[str] = frozenset()) -> None:
    doc = envelope.raw
    if topics and envelope.topic_arn not in topics:
        raise Rejected(401, "unknown_topic")
    try:
        sent = datetime.fromisoformat(doc["Timestamp"].replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        raise Rejected(400, "bad Timestamp") from None
    if abs(now - sent) > SNS_WINDOW_S:
        raise Rejected(401, "stale_timestamp")
    canonical = "".join(f"{name}\n{doc[name]}\n" for name in _SNS_FIELDS[envelope.kind]
                        if isinstance(doc.get(name), str))  # fmt: skip
    try:
        public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise Rejected(401, "bad_certificate")
        digest = hashes.SHA1() if doc["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303 - SNS v1 is SHA1
        public_key.verify(base64.b64decode(doc["Signature"]), canonical.encode(), padding.PKCS1v15(), digest)
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected(401, "bad_signature") from None


def ses_events(envelope: SnsEnvelope, now: float) -> list[InboundEvent]:
    """The SES notification inside a verified SNS Notification: bounces, complaints, deliveries."""
    note = _parse_json(envelope.message.encode())
    if not isinstance(note, dict):
        return []
    kind = note.get("notificationType") or note.get("eventType")
    mail = _dict(note.get("mail"))
    ledger_id = None
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "x-pivotal-message":
            ledger_id = _ledger_id(header.get("value"))
    out = []
    if kind == "Bounce" and isinstance(note.get("bounce"), dict):
        bounce = note["bounce"]
        hard = bounce.get("bounceType") == "Permanent"
        for n, r in enumerate(bounce.get("bouncedRecipients") or []):
            if isinstance(r, dict) and isinstance(r.get("emailAddress"), str):
                out.append(
                    InboundEvent(
                        "ses",
                        f"{envelope.message_id}.{n}",
                        "bounce_hard" if hard else "bounce_soft",
                        r["emailAddress"].strip().lower()[:254],
                        ledger_id,
                        now,
                        str(r.get("diagnosticCode") or bounce.get("bounceSubType") or "")[:500],
                    )
                )
    elif kind == "Complaint" and isinstance(note.get("complaint"), dict):
        for n, r in enumerate(note["complaint"].get("complainedRecipients") or []):
            if isinstance(r, dict) and isinstance(r.get("emailAddress"), str):
                out.append(
                    InboundEvent(
                        "ses",
                        f"{envelope.message_id}.{n}",
                        "complaint",
                        r["emailAddress"].strip().lower()[:254],
                        ledger_id,
                        now,
                        str(note["complaint"].get("complaintFeedbackType") or "")[:500],
                    )
                )
    elif kind == "Delivery":
        for n, address in enumerate(mail.get("destination") or []):
            if isinstance(address, str):
                out.append(
                    InboundEvent(
                        "ses", f"{envelope.message_id}.{n}", "delivered", address.strip().lower()[:254], ledger_id, now
                    )
                )
    return out  # fmt: skip


# -- Mailgun --------------------------------------------------------------------------------------------------------


class TokenCache:
    """Mailgun tokens seen within the replay window: a repeated token is a replay."""

    def __init__(self, window_s: float = REPLAY_WINDOW_S, limit: int = 200_000) -> None:
        self.window_s, self.limit = window_s, limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, token: str, now: float) -> bool:
        while self._seen and (next(iter(self._seen.values())) < now - self.window_s or len(self._seen) > self.limit):
            self._seen.popitem(last=False)
        if token in self._seen:
            return True
        self._seen[token] = now
        return False


_MAILGUN_KINDS = {"delivered": "delivered", "complained": "complaint", "unsubscribed": "unsubscribe",
                  "opened": "open", "clicked": "click"}  # fmt: skip


def mailgun_events(signing_key: str, cache: TokenCache, body: bytes, now: float) -> list[InboundEvent]:
    doc = _parse_json(body)
    signature = doc.get("signature") if isinstance(doc, dict) else None
    if not isinstance(signature, dict):
        raise Rejected(401, "missing_signature")
    timestamp, token, sig = (str(signature.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW_S:
        raise Rejected(401, "stale_timestamp")
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not token or not hmac.compare_digest(expected, sig):
        raise Rejected(401, "bad_signature")
    if cache.seen(token, now):
        raise Rejected(401, "replayed_token")
    data = doc.get("event-data")
    if not isinstance(data, dict) or not isinstance(data.get("recipient"), str):
        return []
    name = data.get("event")
    if name == "failed":
        kind = "bounce_hard" if data.get("severity") == "permanent" else "bounce_soft"
    elif name in _MAILGUN_KINDS:
        kind = _MAILGUN_KINDS[name]
    else:
        return []
    variables, status = _dict(data.get("user-variables")), _dict(data.get("delivery-status"))
    at = data.get("timestamp")
    return [InboundEvent("mailgun", str(data.get("id") or token)[:200], kind, data["recipient"].strip().lower()[:254],
                         _ledger_id(variables.get("pivotal_message")),
                         float(at) if isinstance(at, int | float) else now,
                         str(status.get("message") or status.get("description") or "")[:500],
                         _click_url(kind, data))]  # fmt: skip
