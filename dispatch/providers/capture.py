"""Sandbox mode's provider: nothing leaves the machine; the last messages are kept for the API to list.

Every message is parsed back from the bytes the real providers would get, so what the capture shows (headers,
both parts) is what would have gone out.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import time
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage

from dispatch.providers.base import Outgoing, SendResult

KEPT = 10_000


@dataclass(frozen=True, slots=True)
class Captured:
    id: int
    at: float
    ledger_id: int
    to_email: str
    from_email: str
    message_id: str
    data: bytes

    def summary(self) -> dict[str, object]:
        message = self.parsed()
        return {"id": self.id, "captured_at": self.at, "message_id": self.ledger_id, "to": self.to_email,
                "from": str(message["From"]), "subject": str(message["Subject"]),
                "list_unsubscribe": str(message["List-Unsubscribe"]),
                "list_unsubscribe_post": str(message["List-Unsubscribe-Post"]),
                "size_bytes": len(self.data)}  # fmt: skip

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class CaptureBox:
    """The shared store (one per daemon): every sandbox transport writes here."""

    def __init__(self, kept: int = KEPT) -> None:
        self.messages: deque[Captured] = deque(maxlen=kept)
        self._ids = itertools.count(1)

    def add(self, message: Outgoing) -> Captured:
        item = Captured(next(self._ids), time.time(), message.ledger_id, message.to_email, message.from_email,
                        message.message_id, message.data)  # fmt: skip
        self.messages.append(item)
        return item

    def find(self, capture_id: int) -> Captured | None:
        return next((m for m in self.messages if m.id == capture_id), None)


class CaptureTransport:
    name = "capture"
    concurrency = 4
    batch_size = 1

    def __init__(self, box: CaptureBox) -> None:
        self.box = box

    async def open(self) -> None:
        return None

    async def send(self, message: Outgoing) -> SendResult:
        return SendResult("sent", f"capture-{self.box.add(message).id}")

    async def send_batch(self, messages: list[Outgoing]) -> list[SendResult]:
        return [await self.send(message) for message in messages]

    async def close(self) -> None:
        return None
