"""A local SMTP server (aiosmtpd) that accepts mail and records who got what: the tests' and benchmarks' relay.

Each accepted message appends one line to the log (``<unix time> <X-Pivotal-Message> <recipient>``), written
and flushed before the 250 reply, so the log is what a relay accepted even if the sender is killed a moment
later. Fault injection by recipient: ``tempfail*@`` gets 451, ``permfail*@`` 550, ``throttle*@`` 454 (SES's
throttling reply); ``--throttle-every N`` answers 454 to every Nth message.

    python -m sim.smtp_sink --port 2525 --log /tmp/sink.log
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import time
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class RecordingHandler:
    def __init__(self, log_path: str | None = None, throttle_every: int = 0) -> None:
        self._log = open(log_path, "a", buffering=1, encoding="utf-8") if log_path else None  # noqa: SIM115
        self.throttle_every = throttle_every
        self.accepted: list[tuple[float, str, str, bytes]] = []  # (at, ledger id, recipient, data) in memory
        self.keep_data = log_path is None
        self.count = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:  # fmt: skip
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.3.0 Temporary failure, try later"
        if local.startswith("permfail"):
            return "550 5.1.1 User unknown"
        if local.startswith("throttle"):
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        if self.throttle_every and self.count % self.throttle_every == 0:
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded"
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        ledger_id = _header(data, b"X-Pivotal-Message")
        now = time.time()
        for rcpt in envelope.rcpt_tos:
            if self._log is not None:
                self._log.write(f"{now:.6f} {ledger_id} {rcpt}\n")
            self.accepted.append((now, ledger_id, rcpt, data if self.keep_data else b""))
        return f"250 2.0.0 Ok: queued as {ledger_id}"


def _header(data: bytes, name: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[: len(name) + 1].lower() == name.lower() + b":":
            return line[len(name) + 1 :].strip().decode("ascii", "replace")
    return "-"


def controller(handler: Any, port: int = 0) -> Controller:
    """A sink in a thread of this process (tests). Port 0: a free one (the controller itself cannot take 0)."""
    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
    return Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--log", required=True)
    parser.add_argument("--throttle-every", type=int, default=0)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = RecordingHandler(args.log, args.throttle_every)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(handler, enable_SMTPUTF8=True, data_size_limit=40 * 2**20), host="127.0.0.1", port=args.port
        )  # fmt: skip
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    print(f"listening {args.port} pid {os.getpid()}", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
