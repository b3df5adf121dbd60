"""SMTP through aiosmtplib, with the pool it lacks: N connections kept open and reused.

aiosmtplib runs one transaction at a time per connection and opens a new connection per ``send()`` call, which
is about 5x slower than reusing one (reference/email.md 5.3). The pool keeps ``connections`` clients connected,
hands each send a free one, reconnects a client that failed, and recycles a connection after
``messages_per_connection`` (relays often cap it).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiosmtplib
import aiosmtplib.protocol
import aiosmtplib.smtp
import structlog

from dispatch.providers.base import Outgoing, SendResult, classify_smtp

log = structlog.get_logger("pivotal.email.smtp")

# aiosmtplib rewrites every message with two regular expressions over all of it (lone CR or LF to CRLF, once
# to count SIZE= and once before DATA; then a dot doubled at each line start): a quarter of the daemon's CPU per
# message at full speed. The messages built here are CRLF only and seldom have a line that starts with a dot,
# which scans at C speed show; only then are the rewrites skipped. Anything else goes through aiosmtplib's own,
# so the wire carries byte for byte what aiosmtplib would send (tests/test_smtp_fast_path.py holds them to it).
_normalise_line_endings = aiosmtplib.protocol.normalize_message_line_endings
_PERIOD_REGEX = aiosmtplib.protocol.PERIOD_REGEX


def normalise_line_endings(message: bytes) -> bytes:
    """aiosmtplib's ``normalize_message_line_endings``, without the rewrite when the line ends are CRLF already."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") == crlf and message.count(b"\r") == crlf:
        return message if message.endswith(b"\r\n") else message + b"\r\n"
    return _normalise_line_endings(message)


class PeriodStuffing:
    """aiosmtplib's ``PERIOD_REGEX`` (``sub`` is all it is used for), without the scan when no line starts with a
    dot. Called on CRLF-normalised messages, so a line starts at the beginning or after a LF."""

    pattern = _PERIOD_REGEX.pattern

    def sub(self, replacement: bytes, message: bytes) -> bytes:
        if message.startswith(b".") or b"\n." in message:
            return _PERIOD_REGEX.sub(replacement, message)
        return message


setattr(aiosmtplib.protocol, "normalize_message_line_endings", normalise_line_endings)  # noqa: B010
setattr(aiosmtplib.smtp, "normalize_message_line_endings", normalise_line_endings)  # noqa: B010 - SIZE= counts it
setattr(aiosmtplib.protocol, "PERIOD_REGEX", PeriodStuffing())  # noqa: B010


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    #: "none", "starttls" (when offered) or "tls" (implicit, port 465)
    security: str = "starttls"
    connections: int = 8
    messages_per_connection: int = 1000
    timeout_s: float = 30.0
    local_hostname: str | None = None


class _Client:
    __slots__ = ("smtp", "sent")

    def __init__(self, smtp: aiosmtplib.SMTP) -> None:
        self.smtp, self.sent = smtp, 0


class SmtpTransport:
    name = "smtp"
    batch_size = 1

    def __init__(self, options: SmtpOptions, tls_context: ssl.SSLContext | None = None) -> None:
        self.options = options
        self.concurrency = options.connections
        self._tls = tls_context
        self._idle: asyncio.Queue[_Client] = asyncio.Queue()
        self._clients: list[_Client] = []
        self.reconnects = 0

    def _new_smtp(self) -> aiosmtplib.SMTP:
        o = self.options
        return aiosmtplib.SMTP(
            hostname=o.host, port=o.port, username=o.username, password=o.password, timeout=o.timeout_s,
            use_tls=o.security == "tls", start_tls=None if o.security == "starttls" else False,
            tls_context=self._tls, local_hostname=o.local_hostname,
        )  # fmt: skip

    async def open(self) -> None:
        for _ in range(self.options.connections):
            client = _Client(self._new_smtp())
            self._clients.append(client)
            self._idle.put_nowait(client)  # connected lazily, by its first send

    async def close(self) -> None:
        for client in self._clients:
            if client.smtp.is_connected:
                try:
                    await asyncio.wait_for(client.smtp.quit(), 2.0)
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    client.smtp.close()
        self._clients.clear()

    async def send_batch(self, messages: list[Outgoing]) -> list[SendResult]:
        return [await self.send(message) for message in messages]

    async def send(self, message: Outgoing) -> SendResult:
        client = await self._idle.get()
        try:
            return await self._send(client, message)
        finally:
            self._idle.put_nowait(client)

    async def _send(self, client: _Client, message: Outgoing) -> SendResult:
        try:
            if client.sent >= self.options.messages_per_connection and client.smtp.is_connected:
                client.sent = 0
                await client.smtp.quit()
            if not client.smtp.is_connected:
                await client.smtp.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self._reset(client)
            return SendResult("temporary", f"cannot connect: {exc}"[:500], provider_fault=True)
        try:
            errors, reply = await client.smtp.sendmail(message.from_email, [message.to_email], message.data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            await self._rset(client)
            return classify_smtp(refused.code, refused.message) if refused else SendResult("temporary", str(exc))
        except aiosmtplib.SMTPResponseException as exc:
            await self._rset(client)
            return classify_smtp(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # the connection died mid-transaction: the relay may have the message (ambiguous); retried later
            self._reset(client)
            return SendResult("temporary", f"connection lost: {exc}"[:500], provider_fault=True)
        client.sent += 1
        return SendResult("sent", _queue_id(reply) or message.message_id)

    async def _rset(self, client: _Client) -> None:
        try:
            await client.smtp.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._reset(client)

    def _reset(self, client: _Client) -> None:
        self.reconnects += 1
        client.smtp.close()
        client.smtp, client.sent = self._new_smtp(), 0


def _queue_id(reply: str) -> str:
    """The relay's queue id from a "250 2.0.0 Ok: queued as 4BX1Y2" style reply, when it gives one."""
    marker = "queued as "
    at = reply.find(marker)
    return reply[at + len(marker) :].split()[0][:200] if at >= 0 and reply[at + len(marker) :].split() else ""
