"""Health, readiness, Prometheus metrics, request ids, structured logs."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from prometheus_client.parser import text_string_to_metric_families

from admin_api.api import Api, ApiRequest
from crm.roles import Role
from tests.conftest import AppFactory, bearer
from tests.tcp_proxy import PostgresProxy


async def test_healthz_and_readyz(client: Any) -> None:
    """Both answer 200 when the database is up."""
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    assert (await (await client.get("/readyz")).json()) == {"status": "ready"}


async def test_readyz_is_503_when_the_database_is_unreachable(
    make_client: AppFactory, role_users: Any, database_url: str
) -> None:
    """Through a real TCP hop: cut (connections refused) and black-holed (no answer within 2 s) both give 503;
    liveness still answers; readiness returns when the database does."""
    proxy = await PostgresProxy(database_url).start()
    client = await make_client(database={"url": proxy.url, "pool_min": 1, "acquire_timeout_s": 5.0})
    assert (await client.get("/readyz")).status == 200
    await proxy.cut()
    for _ in range(2):  # first the dropped connection, then a refused reconnect
        response = await client.get("/readyz")
        assert response.status == 503
        assert response.content_type == "application/problem+json"
    assert (await client.get("/healthz")).status == 200
    await proxy.resume(blackhole=True)
    started = asyncio.get_running_loop().time()
    assert (await client.get("/readyz")).status == 503
    assert asyncio.get_running_loop().time() - started < 4
    await proxy.cut()
    await proxy.resume()
    assert (await client.get("/readyz")).status == 200
    await client.close()
    await proxy.close()


async def test_metrics_parse_with_prometheus_parser(client: Any, tokens: dict[Role, str]) -> None:
    """Process, HTTP-by-route-template and pool metrics are exported in the text format."""
    await client.get("/api/users/12345", headers=bearer(tokens[Role.ADMIN]))
    response = await client.get("/metrics")
    assert response.status == 200
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    assert "process_resident_memory_bytes" in families
    assert families["pivotal_db_pool_max_connections"].samples[0].value == 5
    requests = families["pivotal_http_requests"].samples
    assert any(s.labels == {"method": "GET", "route": "/api/users/{userId}", "status": "404"} for s in requests), (
        "requests are labelled by route template, not raw path"
    )
    assert "pivotal_http_request_duration_seconds" in families


async def test_request_id_is_returned_and_logged(client: Any) -> None:
    """A generated id comes back in X-Request-ID and is bound in the request's log lines; safe ids are kept."""
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/healthz")
    generated = response.headers["X-Request-ID"]
    assert len(generated) == 32
    line = next(entry for entry in logs if entry["event"] == "http_request")
    assert line["route"] == "/healthz"
    assert line["status"] == 200
    kept = await client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert kept.headers["X-Request-ID"] == "trace-abc.123"
    forged = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith=stuff"})
    assert forged.headers["X-Request-ID"] != "bad id\twith=stuff"


async def test_problem_responses_carry_the_request_id(client: Any) -> None:
    """Errors quote the request id so a user can report it."""
    response = await client.get("/api/users")
    body = await response.json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["status"] == 401
    assert body["instance"] == "/api/users"


async def test_unexpected_errors_are_500_problems_without_a_trace(make_client: AppFactory, role_users: Any) -> None:
    """A bug in a handler is logged with its traceback and answered with a bare problem quoting the request id."""
    api = Api()

    @api.route("GET", "/test/boom", summary="Fail", tag="test", roles=None)
    async def boom(req: ApiRequest) -> None:
        raise RuntimeError("secret internals")

    client = await make_client(extra_routes=api)
    with structlog.testing.capture_logs() as logs:
        response = await client.get("/test/boom")
    assert response.status == 500
    assert response.content_type == "application/problem+json"
    text = await response.text()
    assert "secret internals" not in text
    assert "Traceback" not in text
    failure = next(entry for entry in logs if entry["event"] == "request_failed")
    assert failure["log_level"] == "error"
    assert failure["exc_info"] is True


async def test_wrong_method_is_405_problem(client: Any) -> None:
    """An unsupported method names the allowed ones."""
    response = await client.put("/healthz")
    assert response.status == 405
    assert response.content_type == "application/problem+json"
    assert "GET" in response.headers["Allow"]
