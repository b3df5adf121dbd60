"""Benchmark: what the e-mail throughput figures cost on this machine before the daemon does anything - the
baselines ``bench/email_send.py`` is measured against. Each mode drives one part alone, with no daemon, and
reads the CPU the part used from /proc.

    .venv/bin/python bench/email_ceilings.py relay [--messages 20000] [--connections 16]
    .venv/bin/python bench/email_ceilings.py standin [--recipients 200000]
    .venv/bin/python bench/email_ceilings.py ledger [--recipients 100000]

- relay: a minimal raw SMTP client (uvloop, no parsing) sends the throughput benchmark's message (same HTML,
  same derived text part, same headers) to the aiosmtpd relay in its own process: the relay's CPU per message,
  and the rate the whole machine could reach if the relay had every core to itself.
- standin: a raw client posts SendGrid requests of 1,000 personalizations, built by the daemon's own encoder
  from the benchmark's template, to the HTTP stand-in: its CPU per recipient.
- ledger: PostgreSQL's CPU per recipient for the ledger the issue asks for (one row per recipient): the
  daemon's own functions create the rows, read them and mark them sending then sent in batches of 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from email_send import ROOT, daemon_env, prepare, start_sink, template
from throwaway import cpu_between, cpu_seconds, free_port, migrate, postgres_pids, throwaway_database

CORES = os.cpu_count() or 1


async def measured(pids: Callable[[], list[int]], work: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of ``pids``) of ``work``."""
    before, started = cpu_seconds(pids()), time.perf_counter()
    await work()
    return time.perf_counter() - started, cpu_between(before, cpu_seconds(pids()))


def benchmark_message() -> bytes:
    """The throughput benchmark's message: its template with the merge fields and links filled as the daemon
    fills them (tokens of the same length), its derived text part, the same headers."""
    from dispatch.mime import Envelope, build
    from dispatch.text_part import html_to_text
    from dispatch.tokens import Signer

    signer = Signer(b"0" * 32)
    html = template().replace("{{ contact.first_name }}", "First1234").replace("{{ account.name }}", "Acme")
    html = html.replace("{{ unsubscribe_url }}", "https://t.pivotal.example/e/u/" + signer.sign("u", 1234))
    for n in range(10):
        token = signer.sign("c", 1234, f"https://example.com/report/{n}?utm_source=pivotal&utm_medium=email")
        html = html.replace(f"https://example.com/report/{n}?utm_source=pivotal&amp;utm_medium=email",
                            f"https://t.pivotal.example/e/c/{token}")  # fmt: skip
    html = html.replace("</body>", f'<img src="https://t.pivotal.example/e/o/{signer.sign("o", 1234)}.gif"></body>')
    envelope = Envelope("Pivotal", "news@pivotal.example", "person1234@acme.example",
                        "The ABM report for First1234 at Acme", "c1.r1234@pivotal.example",
                        "https://t.pivotal.example/e/u/" + signer.sign("u", 1234), None, 1234)  # fmt: skip
    return build(envelope, html, html_to_text(html))


async def relay(args: argparse.Namespace) -> None:
    message = benchmark_message()
    stuffed = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        sink = start_sink(port, Path(tmp) / "sink.log")
        try:

            async def connection(count: int) -> None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await reader.readline()
                writer.write(b"EHLO bench.pivotal.example\r\n")
                while (await reader.readline())[3:4] != b" ":
                    pass
                for n in range(count):
                    for command in (b"MAIL FROM:<news@pivotal.example>\r\n",
                                    b"RCPT TO:<person%d@acme.example>\r\n" % n, b"DATA\r\n"):  # fmt: skip
                        writer.write(command)
                        await reader.readline()
                    writer.write(stuffed)
                    await reader.readline()
                writer.write(b"QUIT\r\n")
                await reader.readline()
                writer.close()

            async def send_all() -> None:
                per = args.messages // args.connections
                await asyncio.gather(*(connection(per) for _ in range(args.connections)))

            wall, cpu = await measured(lambda: [sink.pid], send_all)
        finally:
            sink.terminate()
            sink.wait()
    sent = args.messages // args.connections * args.connections
    per, lines = cpu / sent, message.count(b"\r\n")
    print(
        f"aiosmtpd relay alone (its own process), the throughput benchmark's message ({len(message):,} bytes, "
        f"{lines:,} lines), {args.connections} connections, minimal raw client on uvloop"
    )
    print(f"  {sent / wall:,.0f} messages/s; relay CPU {per * 1e6:,.0f} us per message")
    print(
        f"  ceiling with all {CORES} cores for the relay and none for the daemon or PostgreSQL: "
        f"{CORES / per:,.0f} messages/s   (issue target: >= 2,000/s end to end)"
    )


async def standin(args: argparse.Namespace) -> None:
    import aiohttp

    from dispatch.merge import MergeVariant
    from dispatch.providers.base import Merged, Outgoing
    from dispatch.providers.http_api import sendgrid_body
    from dispatch.tokens import Signer

    variant = MergeVariant("The ABM report for {{ contact.first_name }} at {{ account.name }}", "", template(), "",
                           links_base="https://t.pivotal.example")  # fmt: skip
    signer = Signer(b"0" * 32)
    messages = []
    for n in range(1000):
        fields = {"contact": {"first_name": f"First{n}"}, "account": {"name": "Acme"}, "campaign": {"name": "B"}}
        token, unsubscribe = signer.sign("m", n), signer.sign("u", n)
        links = {"message_token": token, "unsubscribe_token": unsubscribe, "postal_address": "1 Main Street",
                 "unsubscribe_url": f"https://t.pivotal.example/e/u/{unsubscribe}",
                 "open_url": f"https://t.pivotal.example/e/o/{token}.gif"}  # fmt: skip
        merged = Merged(variant, variant.subject_for(fields, links), variant.values(fields, links, None),
                        links["unsubscribe_url"])  # fmt: skip
        messages.append(Outgoing(n, "news@pivotal.example", f"person{n}@acme.example", f"m{n}@pivotal.example",
                                 b"", merged, "Pivotal"))  # fmt: skip
    body = sendgrid_body(messages)
    port = free_port()
    command = [sys.executable, "-m", "sim.mail_api", "--port", str(port), "--key", "k"]
    api = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)  # noqa: ASYNC220 - before the loop runs anything
    assert api.stdout is not None
    api.stdout.readline()
    requests = args.recipients // 1000
    try:
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as session:
            url = f"http://127.0.0.1:{port}/v3/mail/send"

            async def lane(count: int) -> None:
                for _ in range(count):
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
                        if answer.status != 202:
                            raise SystemExit(f"the stand-in answered {answer.status}: {await answer.text()}")

            async def post_all() -> None:
                await asyncio.gather(*(lane(requests // 4) for _ in range(4)))

            wall, cpu = await measured(lambda: [api.pid], post_all)
    finally:
        api.terminate()
        api.wait()
    recipients = requests // 4 * 4 * 1000
    per = cpu / recipients
    print(f"SendGrid stand-in alone (its own process): requests of 1,000 personalizations ({len(body):,} bytes),"
          " 4 at once")  # fmt: skip
    print(
        f"  {recipients / wall:,.0f} recipients/s; stand-in CPU {per * 1e6:.1f} us per recipient "
        f"(50,000/s leaves {CORES / 50_000 * 1e6:.0f} us per recipient for everything on {CORES} cores)"
    )


async def ledger_floor(args: argparse.Namespace) -> None:
    from dispatch import ledger
    from dispatch.ledger import Finish, LedgerWriter

    async with throwaway_database(args.database_url) as url:
        with tempfile.TemporaryDirectory() as tmp:
            migrate(tmp, daemon_env(url))
        campaign = await prepare(url, args.recipients, 25, 8, None)
        pool = await asyncpg.create_pool(url, min_size=4, max_size=8)
        assert pool is not None
        try:
            async with pool.acquire() as conn:
                profile, variant = await conn.fetchrow(
                    """SELECT c.sender_profile_id, v.id FROM campaigns c JOIN email_variants v ON v.campaign_id = c.id
                        WHERE c.id = $1""",
                    campaign,
                )

            async def create() -> None:
                async with pool.acquire() as conn:
                    await ledger.create_rows(conn, campaign, profile, "smtp", [(variant, 1.0)])

            rows: list[ledger.Pending] = []

            async def read() -> None:
                cursor = 0
                while batch := await ledger.fetch_due(pool, campaign, cursor, 1000):
                    rows.extend(batch)
                    cursor = batch[-1].id

            async def mark_and_finish() -> None:
                writer = LedgerWriter(pool)
                writer.start()
                for at in range(0, len(rows), 1000):
                    chunk = rows[at : at + 1000]
                    await writer.mark_sending([row.id for row in chunk])
                    for row in chunk:
                        writer.finish(Finish(row.id, "sent", f"provider-{row.id}"))
                await writer.close()

            steps = [("create the rows", create), ("read them (with the guards' data)", read),
                     ("mark sending, then sent", mark_and_finish)]  # fmt: skip
            results = [(name, *await measured(postgres_pids, work)) for name, work in steps]
        finally:
            await pool.close()
    count = len(rows)
    print(f"the ledger in PostgreSQL (one row per recipient, as the issue asks): {count:,} recipients, batches "
          "of 1,000, the daemon's own functions")  # fmt: skip
    total = 0.0
    for name, wall, cpu in results:
        total += cpu
        print(f"  {name:<36} {cpu / count * 1e6:6.1f} us PostgreSQL CPU per recipient ({wall:.1f} s)")
    print(
        f"  together {total / count * 1e6:.1f} us: PostgreSQL alone, with every core, reaches "
        f"{CORES / (total / count):,.0f} recipients/s   (issue target: >= 50,000/s end to end)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["relay", "standin", "ledger"])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--recipients", type=int, default=0)
    default_url = os.environ.get("PIVOTAL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-url", default=default_url)
    args = parser.parse_args()
    if args.mode == "relay":
        import uvloop

        uvloop.install()
        asyncio.run(relay(args))
    elif args.mode == "standin":
        args.recipients = args.recipients or 200_000
        asyncio.run(standin(args))
    else:
        args.recipients = args.recipients or 100_000
        asyncio.run(ledger_floor(args))


if __name__ == "__main__":
    main()
