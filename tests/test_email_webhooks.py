"""Provider webhooks against the real daemon: signatures made with real keys (ECDSA for SendGrid, an RSA
certificate served over HTTP for SNS, HMAC for Mailgun), forged and replayed requests refused, bounces and
complaints suppressing the address, and a campaign paused when its bounce rate crosses the ceiling."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.email_setup import email_campaign, reset_email, wait_for

MAILGUN_KEY = "key-0123456789abcdef"


@pytest.fixture
async def email_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    await reset_email(clean_db)
    return clean_db


@pytest.fixture
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def sns_cert() -> AsyncIterator[tuple[rsa.RSAPrivateKey, str]]:
    """An RSA key and its self-signed certificate, served over loopback HTTP as SNS serves its own."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM)
    app = web.Application()

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=pem)

    app.router.add_get("/SimpleNotificationService-test.pem", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield key, f"http://127.0.0.1:{port}/SimpleNotificationService-test.pem"
    finally:
        await runner.cleanup()


async def _sent_campaign(pool: asyncpg.Pool, client: Any, n: int) -> tuple[int, dict[str, int]]:
    recipients = [f"person{i}@acme.example" for i in range(n)]
    campaign = await email_campaign(pool, recipients, port=1)  # sandbox: captured, not sent to the port
    await wait_for(pool, "SELECT count(*) = $2 FROM email_messages WHERE campaign_id = $1 AND status = 'sent'",
                   campaign, n)  # fmt: skip
    ids = {r["to_email"]: r["id"] for r in await pool.fetch("SELECT id, to_email FROM email_messages")}
    return campaign, ids


def _sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, at: int | None = None) -> dict[str, str]:
    timestamp = str(at if at is not None else int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"Content-Type": "application/json", "X-Twilio-Email-Event-Webhook-Signature":
            base64.b64encode(signature).decode(), "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}  # fmt: skip


def _public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


async def _suppressed(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT value, source::text FROM suppressions WHERE channel = 'email' AND lifted_at IS NULL"
    )
    return {r["value"]: r["source"] for r in rows}


async def test_sendgrid_bounces_and_complaints_suppress_and_forgeries_are_refused(
    make_client: Any, email_db: asyncpg.Pool, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await make_client(email={"sendgrid_webhook_public_key": _public_b64(sendgrid_key)})
    campaign, ids = await _sent_campaign(email_db, client, 5)
    events = [
        {"email": "person0@acme.example", "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 no such user", "sg_event_id": "e1", "timestamp": int(time.time()),
         "pivotal_message": str(ids["person0@acme.example"])},
        {"email": "person1@acme.example", "event": "spamreport", "sg_event_id": "e2", "timestamp": int(time.time())},
        {"email": "person2@acme.example", "event": "delivered", "sg_event_id": "e3"},
        {"email": "person3@acme.example", "event": "processed", "sg_event_id": "e4"},  # not ours to count
    ]  # fmt: skip
    body = json.dumps(events).encode()
    response = await client.post("/webhooks/email/sendgrid", data=body, headers=_sendgrid_headers(sendgrid_key, body))
    assert response.status == 200, await response.text()
    assert await response.json() == {"received": 3, "stored": 3, "duplicates": 0}
    assert await _suppressed(email_db) == {"person0@acme.example": "bounce", "person1@acme.example": "complaint"}
    statuses = {r["to_email"]: r["status"] for r in await email_db.fetch("SELECT to_email, status::text FROM "
                                                                           "email_messages")}  # fmt: skip
    assert statuses["person0@acme.example"] == "bounced"
    assert statuses["person1@acme.example"] == "sent"

    again = await client.post("/webhooks/email/sendgrid", data=body, headers=_sendgrid_headers(sendgrid_key, body))
    assert await again.json() == {"received": 3, "stored": 0, "duplicates": 3}  # a retry changes nothing

    other = ec.generate_private_key(ec.SECP256R1())
    forged = await client.post("/webhooks/email/sendgrid", data=body, headers=_sendgrid_headers(other, body))
    assert forged.status == 401
    assert (await forged.json())["reason"] == "bad_signature"
    tampered = body.replace(b"person2", b"person4")
    altered = await client.post("/webhooks/email/sendgrid", data=tampered,
                                headers=_sendgrid_headers(sendgrid_key, body) | {})  # fmt: skip
    assert altered.status == 401
    stale = await client.post("/webhooks/email/sendgrid", data=body,
                              headers=_sendgrid_headers(sendgrid_key, body, int(time.time()) - 3600))  # fmt: skip
    assert (await stale.json())["reason"] == "stale_timestamp"
    report = await email_db.fetchval(
        "SELECT count(*) FROM email_events WHERE campaign_id = $1 AND provider IS NOT NULL", campaign
    )
    assert report == 3
    metrics = await (await client.get("/metrics")).text()
    assert 'pivotal_email_webhook_events_total{kind="complaint",provider="sendgrid"} 2.0' in metrics  # and its retry
    assert 'pivotal_email_webhook_events_total{kind="rejected_bad_signature",provider="sendgrid"} 2.0' in metrics


def _mailgun(event: dict[str, Any], token: str, at: int | None = None) -> bytes:
    timestamp = str(at if at is not None else int(time.time()))
    signature = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": timestamp, "token": token, "signature": signature},
                       "event-data": event}).encode()  # fmt: skip


async def test_mailgun_soft_bounces_suppress_after_the_limit_and_a_token_is_used_once(
    make_client: Any, email_db: asyncpg.Pool
) -> None:
    client = await make_client(email={"mailgun_webhook_signing_key": MAILGUN_KEY, "soft_bounce_limit": 3})
    await _sent_campaign(email_db, client, 3)
    headers = {"Content-Type": "application/json"}
    for n in range(3):
        soft = {"event": "failed", "severity": "temporary", "recipient": "person0@acme.example", "id": f"mg{n}",
                "delivery-status": {"message": "452 mailbox full"}}  # fmt: skip
        response = await client.post("/webhooks/email/mailgun", data=_mailgun(soft, f"token{n}"), headers=headers)
        assert response.status == 200, await response.text()
        expected = {"person0@acme.example": "bounce"} if n == 2 else {}
        assert await _suppressed(email_db) == expected, f"after {n + 1} soft bounces"

    complaint = _mailgun({"event": "complained", "recipient": "person1@acme.example", "id": "mg9"}, "token9")
    assert (await client.post("/webhooks/email/mailgun", data=complaint, headers=headers)).status == 200
    replay = await client.post("/webhooks/email/mailgun", data=complaint, headers=headers)
    assert replay.status == 401
    assert (await replay.json())["reason"] == "replayed_token"
    wrong = json.loads(complaint)
    wrong["signature"]["signature"] = "0" * 64
    wrong["signature"]["token"] = "token10"
    forged = await client.post("/webhooks/email/mailgun", data=json.dumps(wrong), headers=headers)
    assert (await forged.json())["reason"] == "bad_signature"
    assert "person1@acme.example" in await _suppressed(email_db)
    unsubscribed = _mailgun({"event": "unsubscribed", "recipient": "person2@acme.example", "id": "mg11"}, "token11")
    assert (await client.post("/webhooks/email/mailgun", data=unsubscribed, headers=headers)).status == 200
    assert (await _suppressed(email_db))["person2@acme.example"] == "unsubscribe"


async def test_ses_webhooks_need_our_topics(make_client: Any, email_db: asyncpg.Pool) -> None:
    """Any AWS account can sign an SNS message: without the topics we subscribed, nothing is evidence."""
    client = await make_client()
    response = await client.post("/webhooks/email/ses", data=b"{}", headers={"Content-Type": "text/plain"})
    assert response.status == 503


def _sns(key: rsa.RSAPrivateKey, cert_url: str, message: dict[str, Any], version: str, **changes: Any) -> bytes:
    doc = {"Type": "Notification", "MessageId": f"sns-{version}-{time.time_ns()}",
           "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events", "Message": json.dumps(message),
           "Timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"), "SignatureVersion": version,
           "SigningCertURL": cert_url}  # fmt: skip
    canonical = "".join(f"{k}\n{doc[k]}\n" for k in ("Message", "MessageId", "Timestamp", "TopicArn", "Type"))
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS signature version 1
    doc["Signature"] = base64.b64encode(key.sign(canonical.encode(), padding.PKCS1v15(), digest)).decode()
    return json.dumps(doc | changes).encode()


async def test_ses_through_sns_both_signature_versions(
    make_client: Any, email_db: asyncpg.Pool, sns_cert: tuple[rsa.RSAPrivateKey, str]
) -> None:
    key, cert_url = sns_cert
    client = await make_client(email={"sns_cert_url_pattern": r"^http://127\.0\.0\.1:\d+/[^?#]+\.pem$",
                                      "sns_topic_arns": ["arn:aws:sns:us-east-1:123456789012:ses-events"]})  # fmt: skip
    _, ids = await _sent_campaign(email_db, client, 3)
    bounce = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [
                {"emailAddress": "person0@acme.example", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
        },
        "mail": {"headers": [{"name": "X-Pivotal-Message", "value": str(ids["person0@acme.example"])}]},
    }
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "person1@acme.example"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {},
    }
    headers = {"Content-Type": "text/plain"}
    v1 = await client.post("/webhooks/email/ses", data=_sns(key, cert_url, bounce, "1"), headers=headers)
    assert v1.status == 200, await v1.text()
    v2 = await client.post("/webhooks/email/ses", data=_sns(key, cert_url, complaint, "2"), headers=headers)
    assert v2.status == 200, await v2.text()
    assert await _suppressed(email_db) == {"person0@acme.example": "bounce", "person1@acme.example": "complaint"}

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "bad_signature": _sns(other, cert_url, bounce, "2"),
        "untrusted_certificate_url": _sns(key, "https://evil.example.com/cert.pem", bounce, "2"),
        "unknown_topic": _sns(key, cert_url, bounce, "2", TopicArn="arn:aws:sns:us-east-1:1:other"),
        "unknown_signature_version": _sns(key, cert_url, bounce, "2", SignatureVersion="3"),
    }
    for reason, body in cases.items():
        response = await client.post("/webhooks/email/ses", data=body, headers=headers)
        assert response.status == 401, reason
        assert (await response.json())["reason"] == reason
    tampered = json.loads(_sns(key, cert_url, complaint, "2"))
    tampered["Message"] = tampered["Message"].replace("person1", "person2")
    response = await client.post("/webhooks/email/ses", data=json.dumps(tampered), headers=headers)
    assert (await response.json())["reason"] in ("bad_signature", "unknown_topic")
    assert "person2@acme.example" not in await _suppressed(email_db)


async def test_a_campaign_whose_bounce_rate_crosses_its_ceiling_pauses(
    make_client: Any, email_db: asyncpg.Pool, sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    client = await make_client(email={"sendgrid_webhook_public_key": _public_b64(sendgrid_key)})
    recipients = [f"person{i}@acme.example" for i in range(1000)]  # 5 s at 200/s: still sending when judged
    campaign = await email_campaign(email_db, recipients, port=1, max_per_second=200.0)
    await wait_for(email_db, "SELECT count(*) >= 200 FROM email_messages WHERE campaign_id = $1 AND status = 'sent'",
                   campaign)  # fmt: skip
    bounced = [{"email": f"person{i}@acme.example", "event": "bounce", "sg_event_id": f"b{i}"} for i in range(30)]
    body = json.dumps(bounced).encode()
    response = await client.post("/webhooks/email/sendgrid", data=body, headers=_sendgrid_headers(sendgrid_key, body))
    assert response.status == 200
    status = await email_db.fetchval("SELECT status::text FROM campaigns WHERE id = $1", campaign)
    reason = await email_db.fetchval("SELECT detail->>'reason' FROM audit_log WHERE action = 'campaign.auto_paused'")
    assert status == "paused"
    assert "hard-bounce rate" in reason
