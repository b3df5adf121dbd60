"""Applying ``schema.sql``: idempotent, serialised across nodes, with the version recorded.

``schema.sql`` is written to be re-applied on every start (``IF NOT EXISTS`` everywhere); its first line
``-- schema-version: N`` is recorded in ``schema_version``. A database already at a newer version than this
code refuses to be touched, so an old binary never runs against a newer data model.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same on every node so two starting daemons serialise.
_MIGRATION_LOCK_KEY = 0x5049564F54414C  # "PIVOTAL"
_VERSION_LINE = re.compile(r"^--\s*schema-version:\s*(\d+)\s*$", re.MULTILINE)


class SchemaError(Exception):
    """The schema file is unusable or the database is newer than this code."""


def schema_text() -> str:
    """The schema shipped in the wheel, or the repository's ``schema.sql`` in a source checkout."""
    packaged = resources.files("pivotal").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def schema_version(text: str) -> int:
    match = _VERSION_LINE.search(text)
    if match is None:
        raise SchemaError("schema.sql has no '-- schema-version: N' line")
    return int(match.group(1))


async def apply_schema(conn: asyncpg.Connection) -> int:
    """Apply the schema in one transaction; return the version now recorded."""
    text = schema_text()
    version = schema_version(text)
    checksum = hashlib.sha256(text.encode()).hexdigest()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
                   version integer PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now()
               )"""
        )
        latest = await conn.fetchrow("SELECT version, checksum FROM schema_version ORDER BY version DESC LIMIT 1")
        current = None if latest is None else latest["version"]
        if current is not None and current > version:
            raise SchemaError(
                f"database schema is version {current}, newer than this code's {version}; upgrade Pivotal"
            )
        if latest is not None and (current, latest["checksum"]) == (version, checksum):
            # Already applied: re-running would take a SHARE lock on every indexed table for nothing.
            log.debug("schema_current", version=version)
            return version
        await conn.execute(text)
        await conn.execute(
            """INSERT INTO schema_version (version, checksum) VALUES ($1, $2)
               ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum,
                   applied_at = CASE WHEN schema_version.checksum = EXCLUDED.checksum
                                     THEN schema_version.applied_at ELSE now() END""",
            version,
            checksum,
        )
    log.info("schema_applied", version=version, previous=current)
    return version
