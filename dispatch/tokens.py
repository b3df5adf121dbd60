"""Signed tokens in the links of every message: unsubscribe, open pixel, click redirect.

A token names one ledger row (and, for a click, the URL) and carries an HMAC-SHA256 tag truncated to 128 bits,
so nobody can unsubscribe someone else, count an open for them, or turn our click endpoint into an open
redirect: the URL a click leads to is inside the signed part. Tokens never expire (CAN-SPAM wants an opt-out
that works for at least 30 days; an old message's link should keep working). The key is derived per purpose from
the daemon's secrets key, so a leaked click token proves nothing about unsubscribe tokens.

    token = base64url(kind | message id (8 bytes) | extra) "." base64url(tag)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Literal

#: unsubscribe, open, click (with its URL), and a message's token for its pixel and its links (a click then names
#: the link by its number in the variant: what batched providers send, one signature a recipient instead of one a
#: link; unsubscribing keeps its own token, so a forwarded link cannot unsubscribe anyone)
Kind = Literal["u", "o", "c", "m"]
KINDS: tuple[Kind, ...] = ("u", "o", "c", "m")
TAG_BYTES = 16
#: Longer tokens are refused before any work (a URL is at most 2,048 characters in the body we send).
MAX_TOKEN_CHARS = 4096


class BadToken(ValueError):
    """A token that is malformed or not ours. Its message is safe to show."""


@dataclass(frozen=True, slots=True)
class Claim:
    kind: Kind
    message_id: int
    extra: str = ""  # the URL of a click


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the token key needs at least 16 bytes")
        self._key = hashlib.sha256(b"pivotal email links v1\0" + secret).digest()
        # hmac.new copies a prepared state per token instead of re-keying (about twice as fast per message)
        self._base = hmac.new(self._key, digestmod=hashlib.sha256)

    def sign(self, kind: Kind, message_id: int, extra: str = "") -> str:
        body = kind.encode("ascii") + struct.pack(">Q", message_id) + extra.encode("utf-8")
        mac = self._base.copy()
        mac.update(body)
        return f"{_b64(body)}.{_b64(mac.digest()[:TAG_BYTES])}"

    def verify(self, token: str, kind: Kind, *, or_message: bool = False) -> Claim:
        """The claim of a token of ``kind`` (or, with ``or_message``, of a message's token)."""
        try:
            return self._verify(token, kind)
        except BadToken:
            if not or_message:
                raise
            return self._verify(token, "m")

    def _verify(self, token: str, kind: Kind) -> Claim:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise BadToken("the link is malformed")
        body_text, tag_text = token.split(".")
        try:
            body, tag = _unb64(body_text), _unb64(tag_text)
        except (binascii.Error, ValueError):
            raise BadToken("the link is malformed") from None
        mac = self._base.copy()
        mac.update(body)
        if len(tag) != TAG_BYTES or not hmac.compare_digest(mac.digest()[:TAG_BYTES], tag):
            raise BadToken("the link is not valid (it was changed or is not ours)")
        if len(body) < 9 or body[:1] != kind.encode("ascii"):
            raise BadToken("the link is not valid here")
        (message_id,) = struct.unpack(">Q", body[1:9])
        try:
            extra = body[9:].decode("utf-8")
        except UnicodeDecodeError:
            raise BadToken("the link is malformed") from None
        return Claim(kind, message_id, extra)
