"""The command line: bad settings, migrate, user create without a running daemon."""

from __future__ import annotations

import subprocess
from pathlib import Path

import asyncpg

from pivotal.schema import schema_text, schema_version
from tests.conftest import reset_database
from tests.daemon import PIVOTAL, clean_environment


def _run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([PIVOTAL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_bad_setting_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    """One line on stderr naming the setting and the problem; exit status 2; no traceback."""
    result = _run(["run"], clean_environment(PIVOTAL_SERVER__PORT="eighty", PIVOTAL_DATA_DIR=str(tmp_path)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pivotal: invalid setting server.port: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_unreachable_database_fails_once_without_traceback(tmp_path: Path) -> None:
    """A start-up failure is one error log line and exit 1."""
    env = clean_environment(
        PIVOTAL_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        PIVOTAL_DATA_DIR=str(tmp_path),
        PIVOTAL_LOGGING__FORMAT="json",
    )
    result = _run(["run", "--port", "0"], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert '"event": "failed"' in result.stderr


async def test_migrate_twice(database_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    """`pivotal migrate` applies the schema idempotently and records its version."""
    env = clean_environment(PIVOTAL_DATABASE_URL=database_url, PIVOTAL_DATA_DIR=str(tmp_path))
    version = schema_version(schema_text())
    for _ in range(2):
        result = _run(["migrate"], env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"schema at version {version}"
    assert await pool.fetchval("SELECT max(version) FROM schema_version") == version


async def test_user_create_from_stdin(database_url: str, tmp_path: Path, pool: asyncpg.Pool) -> None:
    """Creates a user with several roles reading the password from stdin; a second time is refused."""
    await reset_database(pool)
    env = clean_environment(
        PIVOTAL_DATABASE_URL=database_url, PIVOTAL_DATA_DIR=str(tmp_path), PIVOTAL_AUTH__BCRYPT_ROUNDS="4"
    )
    args = [
        "user",
        "create",
        "--email",
        "sup@cli.example",
        "--role",
        "supervisor",
        "--role",
        "agent",
        "--password-stdin",
    ]
    result = _run(args, env, stdin="a good long password\n")
    assert result.returncode == 0, result.stderr
    assert "created user" in result.stdout
    roles = await pool.fetch(
        "SELECT role FROM user_roles JOIN users ON users.id = user_id WHERE email = 'sup@cli.example' ORDER BY role"
    )
    assert [r["role"] for r in roles] == ["agent", "supervisor"]
    again = _run(args, env, stdin="a good long password\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    weak = _run(["user", "create", "--email", "x@cli.example", "--role", "agent", "--password-stdin"], env, "short\n")
    assert weak.returncode == 2
    assert "password" in weak.stderr
    bad_role = _run(
        ["user", "create", "--email", "y@cli.example", "--role", "wizard", "--password-stdin"],
        env,
        "long enough password\n",
    )
    assert bad_role.returncode == 2
    assert "roles" in bad_role.stderr


def test_sim_carrier_prints_its_key_first_and_stops_cleanly(tmp_path: Path) -> None:
    """`pivotal sim-carrier`: line one is the webhook public key (Base64 of 32 bytes), also served over HTTP."""
    import base64
    import signal
    import time
    import urllib.request

    from tests.daemon import free_port

    port = free_port()
    env = clean_environment(PIVOTAL_DATA_DIR=str(tmp_path))
    argv = [PIVOTAL, "sim-carrier", "--port", str(port), "--webhook-url", "http://127.0.0.1:9/hook", "--seed", "4",
            "--speed", "10", "--duplicate-prob", "0.2", "--reorder-window-ms", "300",
            "--api-latency-ms", "5"]  # fmt: skip
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        key = process.stdout.readline().strip()
        assert len(base64.b64decode(key, validate=True)) == 32
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/public_key", timeout=2) as response:
                    assert response.read().decode() == key
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    bad = _run(["sim-carrier", "--webhook-url", "http://x/", "--drop-prob", "2"], env)
    assert bad.returncode == 2
    assert "probabilities between 0 and 1" in bad.stderr
