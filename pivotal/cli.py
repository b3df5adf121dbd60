"""The ``pivotal`` command: ``run``, ``migrate``, ``import contacts``, ``user create``, ``sim-carrier``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from config import Settings, SettingsError, load_settings
from pivotal import __version__
from pivotal.logs import configure_logging

log = structlog.get_logger("pivotal")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pivotal", description="Pivotal dialer and campaign engine daemon.")
    parser.add_argument("--version", action="version", version=f"pivotal {__version__}")
    parser.add_argument("--config", type=Path, help="TOML settings file (see config/pivotal.example.toml)")
    parser.add_argument("--data-dir", type=Path, help="local state: embedded database, generated secrets")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (default 8080)")

    sub.add_parser("migrate", help="apply schema.sql to the database and exit")

    imports = sub.add_parser("import", help="import a CSV file without a running daemon")
    import_sub = imports.add_subparsers(dest="import_entity", required=True, metavar="ENTITY")
    contacts = import_sub.add_parser("contacts", help="import contacts (and their accounts) from a CSV file")
    contacts.add_argument("file", type=Path)
    contacts.add_argument("--mapping", type=Path, help='JSON file {"<column>": "<field>" | null}; default: suggested')
    contacts.add_argument("--list", dest="list_name", help="add every imported contact to this static list")
    contacts.add_argument("--encoding", help="file encoding (default: detected)")
    contacts.add_argument("--delimiter", help="field delimiter (default: sniffed)")
    contacts.add_argument("--rejects", type=Path, help="write rejected rows to this CSV file")

    sim = sub.add_parser("sim-carrier", help="run the simulated Telnyx carrier (prints its webhook public key first)")
    sim.add_argument("--host", dest="sim_host", default="127.0.0.1")
    sim.add_argument("--port", dest="sim_port", type=int, default=8099)
    sim.add_argument("--webhook-url", required=True, help="where to send call webhooks (the daemon's /webhooks/telnyx)")
    sim.add_argument("--seed", type=int, default=1, help="scenario seed: the same seed replays the same calls")
    sim.add_argument("--speed", type=float, default=1.0, help="time multiplier for call scripts (>= 1 is faster)")
    sim.add_argument("--api-key", help="the only API key accepted (default: any bearer token)")
    sim.add_argument("--channel-limit", type=int, default=10, help="concurrent calls before 403 hangups")
    chaos = sim.add_argument_group("chaos (all off by default)")
    chaos.add_argument("--duplicate-prob", type=float, default=0.0, help="share of webhooks delivered twice")
    chaos.add_argument("--reorder-window-ms", type=int, default=0, help="each webhook waits 0..N ms on its own")
    chaos.add_argument("--jitter-ms", type=int, default=0, help="each webhook waits 0..N ms, a call's kept in order")
    chaos.add_argument("--drop-prob", type=float, default=0.0, help="share of webhooks whose first attempt is lost")
    chaos.add_argument("--api-latency-ms", type=float, default=0.0, help="median API latency (log-normal)")
    chaos.add_argument("--api-5xx-prob", type=float, default=0.0, help="share of call commands answered 500")

    simulate = sub.add_parser("simulate", help="bot agents working a campaign over the real websocket protocol")
    simulate.add_argument("--url", default="http://127.0.0.1:8080", help="the daemon (default: %(default)s)")
    simulate.add_argument("--campaign", type=int, required=True, help="the campaign's id (it must be running)")
    simulate.add_argument("--agents", type=int, default=10, help="how many bot agents (default: %(default)s)")
    simulate.add_argument("--duration", type=float, default=600.0, help="seconds to work (default: %(default)s)")
    simulate.add_argument("--admin-email", default="admin@pivotal.local", help="creates the bot accounts")
    simulate.add_argument("--admin-password-stdin", action="store_true", required=True,
                          help="read the admin's password from the first line of standard input")  # fmt: skip
    simulate.add_argument("--bot-password", default="pivotal-bot-agent", help="the bot accounts' password")
    simulate.add_argument("--wrap", type=float, nargs=2, default=(1.0, 4.0), metavar=("MIN", "MAX"),
                          help="seconds of wrap-up before each disposition")  # fmt: skip
    simulate.add_argument("--max-talk", type=float, help="bots hang up after at most this many seconds")
    simulate.add_argument("--rtc-url", help="the simulated carrier's softphone socket (default: the daemon's)")

    user = sub.add_parser("user", help="manage users without a running daemon")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    create = user_sub.add_parser("create", help="create a user")
    create.add_argument("--email", required=True)
    create.add_argument("--role", action="append", required=True, help="repeat for several roles")
    create.add_argument("--display-name", default="")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the password from the first line of standard input",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    server = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    if server:
        overrides["server"] = server
    return load_settings(args.config, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"pivotal: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.level, settings.logging.format)
    commands: dict[str, Callable[[argparse.Namespace, Settings], Awaitable[int]]] = {
        "run": _run,
        "migrate": _migrate,
        "user": _user_create,
        "import": _import,
        "sim-carrier": _sim_carrier,
        "simulate": _simulate,
    }
    try:
        return _asyncio_run(commands[args.command](args, settings))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Start-up failures (database unreachable, port taken, ...) are reported once, without a traceback.
        log.error("failed", command=args.command, error=f"{type(exc).__name__}: {exc}")
        return 1


def _asyncio_run(coro: Awaitable[int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


async def _sim_carrier(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from sim.carrier import Options, serve

    shares = (args.duplicate_prob, args.drop_prob, args.api_5xx_prob)
    waits = (args.reorder_window_ms, args.jitter_ms, args.api_latency_ms)
    if args.speed <= 0 or args.channel_limit < 1 or not all(0 <= p <= 1 for p in shares) or min(waits) < 0:
        print("pivotal: --speed must be positive, --channel-limit at least 1, the probabilities between 0 and 1 "
              "and the waits not negative", file=sys.stderr)  # fmt: skip
        return 2
    options = Options(
        webhook_url=args.webhook_url, seed=args.seed, speed=args.speed, api_key=args.api_key,
        channel_limit=args.channel_limit, duplicate_prob=args.duplicate_prob,
        reorder_window_ms=args.reorder_window_ms, delivery_jitter_ms=args.jitter_ms, drop_prob=args.drop_prob,
        api_latency_ms=args.api_latency_ms, api_5xx_prob=args.api_5xx_prob,
    )  # fmt: skip
    task = asyncio.ensure_future(
        serve(options, args.sim_host, args.sim_port, announce=lambda key: print(key, flush=True))
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):  # SIGINT or SIGTERM: a clean stop
        await task
    return 0


async def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Bot agents on a running daemon: the admin's password comes on standard input (never argv)."""
    from sim.bot_agents import BotOptions, ensure_bots, run_bots

    admin_password = sys.stdin.readline().rstrip("\n")
    if not admin_password or args.agents < 1 or args.duration <= 0:
        print("pivotal: give the admin's password on standard input; --agents and --duration must be positive",
              file=sys.stderr)  # fmt: skip
        return 2
    url = args.url.rstrip("/")
    emails = await ensure_bots(url, args.admin_email, admin_password, args.agents, args.bot_password)
    options = BotOptions(url, args.campaign, args.bot_password, wrap_s=tuple(args.wrap), max_talk_s=args.max_talk,
                         rtc_url=args.rtc_url)  # fmt: skip
    stats = await run_bots(emails, options, args.duration)
    hours = (time.monotonic() - stats.started) / 3600
    print(f"{args.agents} bot agents, {hours * 60:.1f} min: {stats.calls} calls, {len(stats.acked)} dispositions "
          f"acknowledged, {len(stats.errors)} errors")  # fmt: skip
    for error in stats.errors[:20]:
        print(f"  {error}")
    return 0 if not stats.errors else 1


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from pivotal.app import build_app
    from pivotal.server import Server

    await Server(build_app(settings), settings).serve()
    return 0


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncpg

    from pivotal.database import database_url
    from pivotal.schema import apply_schema

    async with database_url(settings) as url:
        conn = await asyncpg.connect(url)
        try:
            version = await apply_schema(conn)
        finally:
            await conn.close()
    print(f"schema at version {version}")
    return 0


async def _user_create(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from admin_api.models import UserCreateBody
    from crm.audit import SYSTEM
    from crm.passwords import PasswordHasher
    from crm.users import EmailTaken, UserStore
    from pivotal.database import create_pool, database_url
    from pivotal.schema import apply_schema

    password = sys.stdin.readline().rstrip("\r\n")
    try:
        body = UserCreateBody(email=args.email, password=password, roles=args.role, display_name=args.display_name)
    except ValidationError as exc:
        error = exc.errors()[0]
        print(f"pivotal: {'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    async with database_url(settings) as url:
        pool = await create_pool(url, settings.database.model_copy(update={"pool_min": 1, "pool_max": 2}))
        try:
            async with pool.acquire() as conn:
                await apply_schema(conn)
            users = UserStore(pool)
            try:
                user = await users.create(
                    SYSTEM,
                    email=body.email,
                    password_hash=await PasswordHasher(settings.auth.bcrypt_rounds).hash(body.password),
                    roles=body.roles,
                    display_name=body.display_name,
                )
            except EmailTaken as exc:
                print(f"pivotal: {exc}", file=sys.stderr)
                return 1
        finally:
            await pool.close()
    print(f"created user {user.id} {user.email} with roles {', '.join(user.roles)}")
    return 0


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    from pivotal.import_command import import_contacts_command

    return await import_contacts_command(args, settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
