"""What the daemon benchmarks share: a throwaway database on a given server, a free loopback port, and waiting
for the daemon to be ready."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

#: the daemon's command, beside the interpreter running the benchmark
PIVOTAL = str(Path(sys.executable).with_name("pivotal"))


def migrate(data_dir: str, env: dict[str, str]) -> None:
    """``pivotal migrate`` against the database in ``env``; exits the benchmark with its error if it fails."""
    done = subprocess.run([PIVOTAL, "--data-dir", data_dir, "migrate"], env=env, capture_output=True)
    if done.returncode:
        raise SystemExit(done.stderr.decode())


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


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) each process has used so far (gone ones left out): subtract two of these
    with ``cpu_between``."""
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return used


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two ``cpu_seconds`` readings (a process started in between counts whole)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (its backends do the queries' work)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuSampler:
    """Every 0.25 s, the CPU the daemon, the relay or stand-in, and PostgreSQL have used: what each costs per
    message in the steady part of a run."""

    def __init__(self, parts: dict[str, Callable[[], list[int]]]) -> None:
        self.parts = parts
        self.samples: list[tuple[float, dict[str, dict[int, float]]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            self.samples.append((time.time(), {name: cpu_seconds(pids()) for name, pids in self.parts.items()}))
            await asyncio.sleep(0.25)

    def per_item(self, start: float, end: float, items: int) -> str:
        """ "daemon 812 us, relay 1,104 us, ..." of CPU per item between two wall-clock times."""
        if items <= 0 or len(self.samples) < 2:
            return "not measured"
        first = min(self.samples, key=lambda sample: abs(sample[0] - start))
        last = min(self.samples, key=lambda sample: abs(sample[0] - end))
        share = items * (last[0] - first[0]) / (end - start) if end > start else 0
        if share <= 0:
            return "not measured"
        return ", ".join(f"{name} {cpu_between(first[1][name], last[1][name]) / share * 1e6:,.1f} us"
                         for name in self.parts)  # fmt: skip
