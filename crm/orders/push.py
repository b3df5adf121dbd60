"""Leads pushed to a client's webhook: how a request is signed and when a failed one is tried again.

A push is ``POST <webhook_url>`` with a JSON body ``{"order_id", "deliveries": [{"delivery_id", "lead"}]}`` and
three headers: ``X-Pivotal-Delivery`` (the first delivery id, for the client's logs), ``X-Pivotal-Timestamp``
(Unix seconds) and ``X-Pivotal-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the order's
secret>``. A client checks the signature over the raw body and refuses a timestamp more than five minutes off
(``verify`` does both). Any 2xx answer delivers; anything else, or no answer, is tried again after 30 s, 1, 2,
4 ... minutes, at most an hour apart, 12 times in all, then the delivery is marked failed (the leads stay in
the portal and the CSV export).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Pivotal-Signature"
TIMESTAMP_HEADER = "X-Pivotal-Timestamp"
DELIVERY_HEADER = "X-Pivotal-Delivery"
MAX_ATTEMPTS = 12
TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp_header: str, body: bytes, signature_header: str, now: float) -> bool:
    """What a client does with a push: the signature over the raw body, and a timestamp within five minutes."""
    if not timestamp_header.isdigit() or abs(now - int(timestamp_header)) > TOLERANCE_S:
        return False
    expected = signature(secret, int(timestamp_header), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature_header.split(","))


def retry_in(attempts: int, base_s: float = 30.0) -> float | None:
    """Seconds until the next try after ``attempts`` failed ones; None once they are used up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return float(min(3600.0, base_s * 2 ** max(0, attempts - 1)))


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why a client's webhook URL is refused, or None. Without ``allow_private`` an address of this network
    (loopback, private, link-local: what a client must not make the daemon call) is refused when written as
    one; a name that resolves to one is not caught here."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "the webhook URL must be http(s)://host/..."
    if parts.username or parts.password:
        return "the webhook URL must not carry credentials (the signature authenticates the push)"
    if allow_private:
        return None
    if parts.scheme != "https":
        return "the webhook URL must be https"
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return "the webhook URL must not point into this network"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_global:
        return "the webhook URL must not point into this network"
    return None
