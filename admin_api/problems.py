"""RFC 9457 problem details: every error the API returns, and the middleware that makes sure of it."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from admin_api.services import REQUEST_ID
from crm.users import EmailTaken, LastAdmin, UserNotFound

log = structlog.get_logger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raise anywhere in a handler to answer with problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title or _TITLES.get(status, "Error")
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


def problem_response(request: web.Request, problem: Problem) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.path,
        **problem.extensions,
    }
    request_id = request.get(REQUEST_ID)
    if request_id:
        body["request_id"] = request_id
    return web.json_response(body, status=problem.status, content_type=PROBLEM_CONTENT_TYPE, headers=problem.headers)


def _from_http_exception(exc: web.HTTPException) -> Problem:
    details = {
        404: "no route matches this path",
        405: "this route does not accept that method",
        413: "the request body is larger than the configured limit",
    }
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return Problem(exc.status, details.get(exc.status, exc.reason), headers=headers)


#: Domain refusals that map onto HTTP without each handler translating them.
DOMAIN_ERRORS: dict[type[Exception], int] = {UserNotFound: 404, EmailTaken: 409, LastAdmin: 409}


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except Problem as problem:
        return problem_response(request, problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_response(request, _from_http_exception(exc))
    except tuple(DOMAIN_ERRORS) as exc:
        return problem_response(request, Problem(DOMAIN_ERRORS[type(exc)], str(exc)))
    except TimeoutError:
        # Raised by the bounded pool: every connection busy for database.acquire_timeout_s.
        log.warning("database_busy", path=request.path, method=request.method)
        return problem_response(
            request, Problem(503, "the database is busy; try again shortly", headers={"Retry-After": "1"})
        )
    except Exception:
        # The one boundary of a request: log everything, tell the caller nothing but the request id.
        log.exception("request_failed", path=request.path, method=request.method)
        return problem_response(request, Problem(500, "an unexpected error occurred; quote the request_id to support"))
