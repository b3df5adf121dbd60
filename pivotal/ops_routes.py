"""Operator endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from admin_api.api import Api, ApiRequest
from admin_api.openapi import build_openapi
from admin_api.problems import Problem
from pivotal import __version__
from pivotal.http_middleware import METRICS

api = Api()

READY_TIMEOUT_S = 2.0


class Health(BaseModel):
    status: str


ENDPOINTS = web.AppKey("endpoints", list)


@api.route("GET", "/healthz", summary="Liveness: the process answers", tag="operations", roles=None, response=Health)
async def healthz(req: ApiRequest) -> Health:
    return Health(status="ok")


@api.route("GET", "/readyz", summary="Readiness: the database answers", tag="operations", roles=None, response=Health)
async def readyz(req: ApiRequest) -> Health:
    """503 while PostgreSQL does not answer within 2 s, so a load balancer sends traffic elsewhere."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await req.services.pool.fetchval("SELECT 1")
    except (TimeoutError, OSError) as exc:
        raise Problem(503, f"database unreachable: {type(exc).__name__}") from None
    except Exception as exc:  # any driver error means "not ready", never a 500
        raise Problem(503, f"database unreachable: {exc}") from None
    return Health(status="ready")


@api.route(
    "GET", "/metrics", summary="Prometheus metrics", tag="operations", roles=None, media_type=CONTENT_TYPE_LATEST
)
async def metrics(req: ApiRequest) -> web.Response:
    body = generate_latest(req.request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@api.route(
    "GET",
    "/api/openapi.json",
    summary="This API's OpenAPI 3.1 document",
    tag="operations",
    roles=None,
    media_type="application/json",
)
async def openapi(req: ApiRequest) -> web.Response:
    document = build_openapi(req.request.app[ENDPOINTS], title="Pivotal admin API", version=__version__)
    return web.json_response(document)
