"""Run the real daemon as a child process and read its JSON log lines: the harness of the lifecycle tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PIVOTAL = str(Path(sys.executable).with_name("pivotal"))
SLOW_APP = str(Path(__file__).with_name("slow_app.py"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIVOTAL_") and k != "NOTIFY_SOCKET"}
    env.update(extra)
    return env


class Daemon:
    """A child process whose stderr is parsed as JSON log lines and stdout kept as text."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.env = env
        self.logs: list[dict[str, Any]] = []
        self.stdout: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> Daemon:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self.process.stdout
        assert self.process.stderr
        self._readers = [
            asyncio.create_task(self._read(self.process.stderr, is_log=True)),
            asyncio.create_task(self._read(self.process.stdout, is_log=False)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader, *, is_log: bool) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            if is_log:
                try:
                    self.logs.append(json.loads(line))
                except ValueError:
                    self.logs.append({"event": "<unparsed>", "line": line})
            else:
                self.stdout.append(line)
            self._changed.set()

    async def wait_for_log(self, event: str, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for entry in self.logs:
                    if entry.get("event") == event:
                        return entry
                if self.process and self.process.returncode is not None:
                    raise AssertionError(f"daemon exited {self.process.returncode} before {event}: {self.logs}")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await self._changed.wait()

    def events(self) -> list[str]:
        return [str(entry.get("event")) for entry in self.logs]

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            await asyncio.gather(*self._readers)
        return code

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        for reader in self._readers:
            reader.cancel()
