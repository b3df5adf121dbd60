"""An embedded PostgreSQL (the ``pgserver`` package) for running with no database server configured.

It lives in ``<data_dir>/pg``, survives restarts (the cluster is initialised once) and is stopped when the
daemon stops. pgserver listens on a Unix socket only, so it never takes a TCP port from anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def _start(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver only keeps a lock file there.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver  # imported here: it is heavy and only needed without a database URL

    return pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def embedded_postgres(data_dir: Path) -> AsyncIterator[str]:
    """Start (or reuse) the embedded server and yield its connection URL; stop it on exit."""
    pgdata = data_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    first = not (pgdata / "PG_VERSION").exists()
    loop = asyncio.get_running_loop()
    started = loop.time()
    server = await loop.run_in_executor(None, _start, pgdata)
    url: str = server.get_uri()
    log.info(
        "embedded_postgres_started",
        pgdata=str(pgdata),
        initialised=first,
        seconds=round(loop.time() - started, 2),
        hint="set PIVOTAL_DATABASE_URL to use a PostgreSQL server instead",
    )
    try:
        yield url
    finally:
        await loop.run_in_executor(None, server.cleanup)
        log.info("embedded_postgres_stopped", pgdata=str(pgdata))
