"""What the daemon benchmarks share: a throwaway database on a given server, a free loopback port, and waiting
for the daemon to be ready."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg


@contextlib.asynccontextmanager
async def throwaway_database(server_url: str) -> AsyncIterator[str]:
    """A new, uniquely named database on the server at ``server_url``, dropped afterwards; yields its URL."""
    name = f"pivotal_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(endpoint: str, timeout_s: float = 60.0) -> None:
    """Until ``GET /readyz`` answers 200 (exits the benchmark if it never does)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(int(timeout_s / 0.2)):
            try:
                async with session.get(f"{endpoint}/readyz") as ready:
                    if ready.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the daemon did not become ready")
