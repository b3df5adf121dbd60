"""The one asyncpg pool of the daemon, and where its URL comes from."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import asyncpg

from config import DatabaseSettings, Settings
from pivotal.embedded_pg import embedded_postgres


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, so no caller hand-serialises.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query (one round trip saved per acquire).

    asyncpg still rolls back an open transaction and drops listeners. What the reset query would also undo
    (``SET``, session advisory locks, ``LISTEN``) is never done on pooled connections: settings go in
    ``server_settings`` below, locks are transaction-scoped, and LISTEN needs a dedicated connection.
    """


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    server_settings = {"application_name": "pivotal"}
    if settings.statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        init=_init_connection,
        reset=_keep_session,
        server_settings=server_settings,
        timeout=settings.acquire_timeout_s,
    )
    return pool


@contextlib.asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    """The configured URL, or an embedded PostgreSQL started for the duration of the block."""
    if settings.database.url is not None:
        yield settings.database.url.get_secret_value()
        return
    async with embedded_postgres(settings.data_dir) as url:
        yield url
