"""Benchmark: authenticated requests/s and latency of a list route, 1 and 50 concurrent clients.

Starts the real daemon (``pivotal run``) as a child process on a fresh embedded PostgreSQL in a temporary
directory (or, with ``--database-url``, in a throwaway database created on that server), signs in as the
bootstrap admin, creates users so the list has a full page, then drives ``GET /api/users?limit=50`` with
keep-alive clients. ``GET /healthz`` (no auth, no database) is measured the same way as the floor the API
is compared with. This is the baseline later issues compare against.

    .venv/bin/python bench/http_api.py [--seconds 5] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(data_dir: Path, database_url: str | None, port: int) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_")}
    # bcrypt at 4 rounds only shortens the set-up (120 users); no measured request hashes a password.
    env.update(PIVOTAL_LOGGING__FORMAT="json", PIVOTAL_DATABASE__POOL_MAX="10", PIVOTAL_AUTH__BCRYPT_ROUNDS="4")
    if database_url:
        env["PIVOTAL_DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        PIVOTAL,
        "--data-dir",
        str(data_dir),
        "run",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(60):
        async for raw in process.stdout:
            line = raw.decode()
            if "one-time password" in line:
                password = line.rsplit(": ", 1)[1].strip()
                break
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            try:
                if (await session.get(f"{base}/readyz")).status == 200:
                    return process, password
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)


async def _drive(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        # Warm-up: open the connections and let the pool fill.
        await asyncio.gather(*(session.get(url) for _ in range(concurrency)))
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] * 1000 if len(values) > 1 else values[0] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement time per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case; the median round is reported")
    parser.add_argument("--database-url", help="PostgreSQL server to create a throwaway database on")
    parser.add_argument("--users", type=int, default=120, help="users created so the list has full pages")
    args = parser.parse_args()

    dropper = None
    database_url = None
    if args.database_url:
        name = f"pivotal_bench_{uuid.uuid4().hex[:8]}"
        dropper = await asyncpg.connect(args.database_url)
        await dropper.execute(f'CREATE DATABASE "{name}"')
        database_url = urlunsplit(urlsplit(args.database_url)._replace(path="/" + name))

    with tempfile.TemporaryDirectory(prefix="pivotal-bench-") as tmp:
        port = _free_port()
        process, password = await _start(Path(tmp), database_url, port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                response = await session.post(
                    f"{base}/api/auth/login", json={"email": "admin@pivotal.local", "password": password}
                )
                token = (await response.json())["access_token"]
                auth = {"Authorization": f"Bearer {token}"}
                for i in range(args.users):
                    await session.post(
                        f"{base}/api/users",
                        json={"email": f"bench{i}@bench.example", "password": "bench password", "roles": ["agent"]},
                        headers=auth,
                    )
            print(
                f"pivotal HTTP API benchmark: median of {args.rounds} rounds of {args.seconds:.0f} s per case, "
                f"daemon and clients on one "
                f"{os.cpu_count()}-core machine, database: {'server' if database_url else 'embedded'}"
            )
            print(f"{'case':<44}{'clients':>8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
            for label, path, headers in (
                ("GET /healthz (floor: no auth, no DB)", "/healthz", {}),
                ("GET /api/users?limit=50 (authenticated)", "/api/users?limit=50", auth),
            ):
                for concurrency in (1, 50):
                    rounds = [await _drive(base + path, headers, concurrency, args.seconds) for _ in range(args.rounds)]
                    rate, latencies = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
                    print(
                        f"{label:<44}{concurrency:>8}{rate:>10.0f}{_pct(latencies, 0.5):>9.2f}"
                        f"{_pct(latencies, 0.99):>9.2f}"
                    )
        finally:
            process.terminate()
            await process.wait()
    if dropper is not None:
        await dropper.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await dropper.close()


if __name__ == "__main__":
    asyncio.run(main())
