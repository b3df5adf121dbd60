"""The one asyncpg pool of the daemon, and where its URL comes from."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from config import DatabaseSettings, Settings
from pivotal.embedded_pg import embedded_postgres

_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: object) -> bytes:
    return _JSONB_VERSION + json.dumps(value).encode()


def _decode_jsonb(data: bytes) -> object:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, so no caller hand-serialises. Binary format (a version byte, then
    # the text), so binary COPY can carry jsonb too.
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query (one round trip saved per acquire).

    asyncpg still rolls back an open transaction and drops listeners. What the reset query would also undo
    (``SET``, session advisory locks, ``LISTEN``) is never done on pooled connections: settings go in
    ``server_settings`` below, locks are transaction-scoped, and LISTEN needs a dedicated connection.
    """


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """A pool whose ``acquire`` (and so ``fetch``, ``execute``...) waits a bounded time for a connection.

    asyncpg's own default is to wait forever; an exhausted pool would then hang every request. The
    TimeoutError becomes a 503 at the HTTP boundary.
    """

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    server_settings = {"application_name": "pivotal"}
    if settings.statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    pool = BoundedPool(
        url,
        acquire_timeout=settings.acquire_timeout_s,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init_connection,
        reset=_keep_session,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        server_settings=server_settings,
        timeout=settings.acquire_timeout_s,  # connecting: the same bound
    )
    await pool
    return pool


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured URL, or an embedded PostgreSQL started for the duration of the block."""
    if settings.database.url is not None:
        yield settings.database.url.get_secret_value()
        return
    async with embedded_postgres(settings.data_dir) as url:
        yield url
