"""Shared fixtures: one real PostgreSQL database per test session, apps on real sockets, users per role.

``PIVOTAL_TEST_DATABASE_URL`` names a server to use (``.ci/run`` sets it); without it an embedded
PostgreSQL (pgserver) is started in a temporary directory. Either way the session creates its own uniquely
named database and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from config import Settings
from crm.audit import SYSTEM
from crm.passwords import PasswordHasher
from crm.roles import Role
from crm.users import UserStore
from pivotal.app import build_app
from pivotal.schema import apply_schema
from sim.smtp_sink import RecordingHandler, controller

PASSWORD = "correct horse battery"
JWT_SECRET = "test-secret-" + "x" * 40


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server's URL (maintenance database)."""
    url = os.environ.get("PIVOTAL_TEST_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")  # type: ignore[attr-defined]
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database with the schema applied, dropped when the session ends."""
    name = f"pivotal_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await apply_schema(conn)
    finally:
        await conn.close()
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from pivotal.database import _init_connection

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=_init_connection)
    yield pool
    await pool.close()


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database": {"url": database_url, "pool_min": 1, "pool_max": 5},
        "auth": {"jwt_secret": JWT_SECRET, "bcrypt_rounds": 4},
        "logging": {"format": "json"},
        "telephony": {"sandbox": False},  # tests start their own simulator where they need one
        "orders": {"allocation_interval_s": 0},  # tests allocate when they mean to (POST /api/orders/allocate)
    }
    for key, value in overrides.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) and key in values else value
    return Settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def reset_database(pool: asyncpg.Pool) -> None:
    """Empty the tables the tests write, so every test starts from the same state."""
    await pool.execute("TRUNCATE users, user_roles, revoked_tokens, audit_log RESTART IDENTITY CASCADE")


@pytest.fixture
async def clean_db(pool: asyncpg.Pool) -> asyncpg.Pool:
    await reset_database(pool)
    return pool


@pytest.fixture
async def role_users(clean_db: asyncpg.Pool) -> dict[Role, int]:
    """One active user per role, e-mail ``<role>@test.example``, all with :data:`PASSWORD`."""
    store = UserStore(clean_db)
    password_hash = await PasswordHasher(4).hash(PASSWORD)
    # the client user belongs to an organisation, as every client user must
    organisation = await clean_db.fetchval("SELECT id FROM client_organisations WHERE name = 'Test client'")
    if organisation is None:
        organisation = await clean_db.fetchval(
            "INSERT INTO client_organisations (name) VALUES ('Test client') RETURNING id"
        )
    ids = {}
    for role in Role:
        user = await store.create(SYSTEM, email=f"{role}@test.example", password_hash=password_hash, roles=[role],
                                  client_organisation_id=organisation if role == Role.CLIENT else None)  # fmt: skip
        ids[role] = user.id
    return ids


AppFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def make_client(aiohttp_client: Any, database_url: str, tmp_path: Path) -> AppFactory:
    """Start the real application on a real socket; keyword arguments override settings sections."""

    async def make(**overrides: Any) -> TestClient[web.Request, web.Application]:
        extra = {k: overrides.pop(k) for k in ("clock", "extra_routes") if k in overrides}
        settings = make_settings(database_url, tmp_path, **overrides)
        app = build_app(settings, **extra)
        client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
        return client

    return make


@pytest.fixture
async def client(make_client: AppFactory, role_users: dict[Role, int]) -> TestClient[web.Request, web.Application]:
    return await make_client()


async def login(client: TestClient[web.Request, web.Application], email: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["access_token"]
    return token


@pytest.fixture
async def tokens(client: TestClient[web.Request, web.Application]) -> dict[Role, str]:
    """A bearer token per role."""
    return {role: await login(client, f"{role}@test.example") for role in Role}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def world() -> AsyncIterator[tuple[Any, Any, Any]]:
    """A simulated carrier, an SDK client for it and a verifying webhook receiver (tests/sim_world.py)."""
    from tests.sim_world import sim_world

    async with sim_world() as parts:
        yield parts


@pytest.fixture
async def dialer_db(clean_db: asyncpg.Pool) -> asyncpg.Pool:
    pool = clean_db
    await pool.execute(
        """TRUNCATE campaigns, campaign_members, call_attempts, call_events, agent_sessions, callbacks, leads,
                    scripts, qualification_forms, static_lists, list_members, contacts, accounts,
                    telephony_connections, telephony_credentials, caller_id_numbers, suppressions CASCADE"""
    )
    await pool.execute("DELETE FROM disposition_catalogues WHERE code <> 'default'")
    # 60 contacts in 20 accounts (three lines each: the multi-line rule is in play), all in New York.
    await pool.execute(
        """INSERT INTO accounts (id, name, domain, registrable_domain) OVERRIDING SYSTEM VALUE
           SELECT a, 'Account ' || a, 'a' || a || '.example', 'a' || a || '.example' FROM generate_series(1, 20) a;
           INSERT INTO contacts (id, account_id, first_name, last_name, phone_e164, timezone) OVERRIDING SYSTEM VALUE
           SELECT c, 1 + c % 20, 'First' || c, 'Last' || c, '+1212555' || lpad(c::text, 4, '0'), 'America/New_York'
             FROM generate_series(1, 60) c;"""
    )
    return pool


@pytest.fixture
def sink() -> Iterator[tuple[RecordingHandler, int]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, recording what it accepts."""
    handler = RecordingHandler()
    server = controller(handler)
    server.start()
    try:
        yield handler, server.port
    finally:
        server.stop()
