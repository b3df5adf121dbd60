"""A TCP proxy that a test can cut or turn into a black hole: a real unreachable database (not a closed pool
object), or a real dropped network between a browser and the daemon."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self
from urllib.parse import parse_qs, urlsplit, urlunsplit


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self._socket_dir: str | None = None
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.blackhole = False
        self.port = 0

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._socket_dir and self._socket_dir.startswith("/"):
            return await asyncio.open_unix_connection(f"{self._socket_dir}/.s.PGSQL.{self._target[1]}")
        return await asyncio.open_connection(*self._target)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.blackhole:
            with contextlib.suppress(ConnectionError):
                await reader.read()  # hold the connection open, answer nothing
            writer.close()
            return
        up_reader, up_writer = await self._open_upstream()
        self._writers.add(up_writer)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        """Refuse new connections and drop the live ones."""
        assert self._server is not None
        self._server.close()
        closing = list(self._writers)
        self._writers.clear()
        for writer in closing:
            writer.close()
        for writer in closing:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def close(self) -> None:
        await self.cut()

    async def resume(self, *, blackhole: bool = False) -> None:
        self.blackhole = blackhole
        await self.start()


class PostgresProxy(TcpProxy):
    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 5432)
        self._socket_dir = parse_qs(parts.query).get("host", [None])[0]
        self._parts = parts

    @property
    def url(self) -> str:
        netloc = f"{self._parts.username or 'postgres'}@127.0.0.1:{self.port}"
        return urlunsplit(("postgresql", netloc, self._parts.path, "", ""))
