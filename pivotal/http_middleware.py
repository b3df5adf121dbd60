"""Per-request plumbing: request id, structured access log, metrics, in-flight tracking for shutdown."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import structlog
from aiohttp import web

from admin_api.services import REQUEST_ID
from pivotal.metrics import Metrics, route_template

log = structlog.get_logger("pivotal.http")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

METRICS = web.AppKey("metrics", Metrics)


def _request_id(request: web.Request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    # A caller's id is kept so a trace crosses services, but only if it cannot forge log structure.
    return offered if _SAFE_REQUEST_ID.match(offered) else uuid.uuid4().hex


@web.middleware
async def observe_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    structlog.contextvars.bind_contextvars(request_id=request_id)
    metrics = request.app[METRICS]
    route = route_template(request)
    started = time.perf_counter()
    status = 500
    metrics.http_in_flight.inc()
    try:
        response: web.StreamResponse = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # Cut off: the client went away or shutdown's grace period ran out.
        status = 499
        log.warning("request_cancelled", method=request.method, route=route, path=request.path)
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.http_in_flight.dec()
        metrics.observe(request.method, route, status, elapsed)
        if route != "/metrics":
            log.info(
                "http_request",
                method=request.method,
                route=route,
                path=request.path,
                status=status,
                ms=round(elapsed * 1000, 2),
            )
        structlog.contextvars.unbind_contextvars("request_id")


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, streamed ones included, carries the request id."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id
