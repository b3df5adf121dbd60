"""Telnyx webhook signatures: Ed25519 over ``f"{timestamp}|{raw body}"`` (reference/telnyx.md section 2).

Checked before anything is parsed, cheapest refusal first: headers present and well-formed, timestamp within
+-300 s of our clock (a replayed delivery is stale), then the signature. The raw body is verified as received,
never re-serialised. Pure apart from PyNaCl; the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
TOLERANCE_S = 300


class SignatureRejected(ValueError):
    """The delivery is not provably from the carrier; ``reason`` is a short label for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def load_public_key(encoded: str) -> VerifyKey:
    """Base64 of the raw 32-byte Ed25519 public key (44 characters), as Telnyx and our simulator publish it."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook public key is not Base64") from None
    if len(raw) != 32:
        raise ValueError(f"the webhook public key must be 32 bytes, got {len(raw)}")
    return VerifyKey(raw)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # aiohttp's headers are case-insensitive; a plain dict may not be
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def verify(key: VerifyKey, headers: Mapping[str, str], body: bytes, now: float) -> int:
    """Return the delivery's timestamp, or raise SignatureRejected saying why."""
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    signature_text = _header(headers, SIGNATURE_HEADER)
    if not timestamp_text or not signature_text:
        raise SignatureRejected("missing_headers", f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
    if not timestamp_text.isascii() or not timestamp_text.isdigit() or len(timestamp_text) > 12:
        raise SignatureRejected("bad_timestamp", f"{TIMESTAMP_HEADER} is not a Unix time in seconds")
    timestamp = int(timestamp_text)
    if abs(now - timestamp) > TOLERANCE_S:
        raise SignatureRejected("stale", f"the timestamp is more than {TOLERANCE_S} s from our clock")
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureRejected("bad_signature", f"{SIGNATURE_HEADER} is not Base64") from None
    if len(signature) != 64:
        raise SignatureRejected("bad_signature", "an Ed25519 signature is 64 bytes")
    try:
        key.verify(timestamp_text.encode() + b"|" + body, signature)
    except BadSignatureError:
        raise SignatureRejected("forged", "the signature does not match the body and timestamp") from None
    return timestamp


def sign(key: SigningKey, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers a carrier sends with ``body`` (the simulator's side, and tests')."""
    signature = key.sign(str(timestamp).encode() + b"|" + body).signature
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: base64.b64encode(signature).decode()}


def public_key_text(key: SigningKey) -> str:
    return base64.b64encode(bytes(key.verify_key)).decode()
