"""The SMTP provider's DATA fast path: byte for byte what aiosmtplib's own rewrites give, and on the wire."""

from __future__ import annotations

import aiosmtplib.protocol
import aiosmtplib.smtp
import pytest

from dispatch.providers import smtp
from dispatch.providers.base import Outgoing
from dispatch.providers.smtp import SmtpOptions, SmtpTransport
from sim.smtp_sink import RecordingHandler

CASES = [
    b"",
    b"\r\n",
    b"Subject: x\r\n\r\nbody\r\n",
    b"Subject: x\r\n\r\nno final line end",
    b"lone LF\nin the middle\r\n",
    b"lone CR\rin the middle\r\n",
    b"ends with a lone CR\r",
    b"ends with a lone LF\n",
    b"\n\r\r\n\n",
    b".starts with a dot\r\n",
    b"a\r\n.dot line\r\n..two dots\r\n",
    b"a\n.dot after a lone LF\r\n",
    b"a\r.dot after a lone CR\r\n",
    b"dot . in the middle\r\nand at the end.\r\n",
    b"x" * 20_000 + b"\r\n" + b"y" * 998 + b"\r\n",
]


@pytest.mark.parametrize("message", CASES)
def test_the_fast_path_gives_what_aiosmtplib_would(message: bytes) -> None:
    ours = smtp.PeriodStuffing().sub(b"..", smtp.normalise_line_endings(message))
    theirs = smtp._PERIOD_REGEX.sub(b"..", smtp._normalise_line_endings(message))
    assert ours == theirs


def test_aiosmtplib_uses_the_fast_path() -> None:
    assert aiosmtplib.protocol.normalize_message_line_endings is smtp.normalise_line_endings
    assert getattr(aiosmtplib.smtp, "normalize_message_line_endings") is smtp.normalise_line_endings  # noqa: B009 - SIZE=
    assert isinstance(aiosmtplib.protocol.PERIOD_REGEX, smtp.PeriodStuffing)


async def test_lines_that_start_with_a_dot_arrive_as_they_were(sink: tuple[RecordingHandler, int]) -> None:
    handler, port = sink
    body = b"From: a@pivotal.test\r\nTo: b@pivotal.test\r\nSubject: dots\r\n\r\n.one\r\n..two\r\nplain\r\n.\r\n"
    transport = SmtpTransport(SmtpOptions(port=port, security="none", connections=1))
    await transport.open()
    try:
        result = await transport.send(Outgoing(1, "a@pivotal.test", "b@pivotal.test", "m1@pivotal.test", body))
    finally:
        await transport.close()
    assert result.kind == "sent", result
    ((_, _, rcpt, data),) = handler.accepted
    assert rcpt == "b@pivotal.test"
    assert data.replace(b"\r\n", b"\n") == body.replace(b"\r\n", b"\n")
