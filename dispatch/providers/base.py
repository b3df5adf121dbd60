"""What every provider takes and answers, and the classification of its failures. Pure.

A send is ``sent``, or fails as ``permanent`` (this recipient will never take it: a hard bounce at submission),
``temporary`` (try again later, with back-off) or ``throttled`` (the provider wants us slower: back off and let
the limiter take over). ``ambiguous`` marks a failure after the provider may have accepted the message (the
connection died after the data went out); it is retried like a temporary one and counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Kind = Literal["sent", "permanent", "temporary", "throttled"]
#: Retry back-off for temporary failures: 1, 2, 4 ... minutes, at most an hour; given up after MAX_ATTEMPTS.
BACKOFF_BASE_S = 60.0
BACKOFF_MAX_S = 3600.0
MAX_ATTEMPTS = 6


@dataclass(frozen=True, slots=True)
class Merged:
    """A recipient as a batched HTTP provider takes it: the variant's template (``dispatch.merge.MergeVariant``,
    shared by the batch) and this recipient's values; or, for a variant with template logic, its own rendered
    parts (``template`` None: a request of its own)."""

    template: Any
    subject: str
    values: list[str]
    unsubscribe_url: str
    html: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class Outgoing:
    ledger_id: int
    from_email: str
    to_email: str
    message_id: str
    data: bytes  # the whole message, RFC 5322 (SMTP); empty for a batched provider, which takes ``merged``
    merged: Merged | None = None
    from_name: str = ""
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    kind: Kind
    detail: str = ""  # the provider's id when sent, its answer otherwise
    retry_after_s: float | None = None
    #: the failure says nothing about the recipient: the provider or the connection failed (counts toward the
    #: campaign's pause after consecutive provider errors)
    provider_fault: bool = False


class Transport(Protocol):
    name: str
    #: how many sends may be in progress at once (SMTP: the pool's connections; HTTP: requests)
    concurrency: int
    #: recipients per request: 1 for SMTP; a batched HTTP provider takes ``Merged`` messages
    batch_size: int

    async def open(self) -> None: ...

    async def send(self, message: Outgoing) -> SendResult: ...

    async def send_batch(self, messages: list[Outgoing]) -> list[SendResult]: ...

    async def close(self) -> None: ...


def classify_smtp(code: int, text: str) -> SendResult:
    """An SMTP reply to MAIL, RCPT or DATA (RFC 5321 4.2.1, with the throttling replies real relays send)."""
    detail = f"{code} {text}".strip()[:500]
    lowered = text.lower()
    if 200 <= code < 300:
        return SendResult("sent", detail)
    if code == 454 or (code in (421, 450, 451) and any(w in lowered for w in ("throttl", "rate", "too many"))):
        return SendResult("throttled", detail, provider_fault=True)
    if code == 421:  # the service is closing the channel: nothing about this recipient
        return SendResult("temporary", detail, provider_fault=True)
    if 400 <= code < 500:
        return SendResult("temporary", detail, provider_fault=code in (451, 452) and "mailbox" not in lowered)
    if code in (530, 534, 535, 538, 554) and any(w in lowered for w in ("auth", "relay", "policy", "blocked")):
        return SendResult("permanent", detail, provider_fault=True)  # our account or IP, not the recipient
    return SendResult("permanent", detail)


def backoff_s(attempt: int) -> float:
    """Delay before attempt ``attempt + 1`` after a temporary failure of attempt ``attempt`` (1-based)."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempt - 1)))
