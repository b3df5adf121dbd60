"""Telnyx's wire formats, as the simulator writes them: timestamps and error envelopes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def error(status: int, code: str, title: str, detail: str = "", pointer: str | None = None) -> web.Response:
    entry: dict[str, Any] = {"code": code, "title": title, "detail": detail or title}
    if pointer:
        entry["source"] = {"pointer": pointer}
    return web.json_response({"errors": [entry]}, status=status)


async def json_object(request: web.Request, *, empty_ok: bool = True) -> dict[str, Any] | None:
    """The request's JSON object body ({} when there is none and ``empty_ok``), or None when it is not one
    (answer 400)."""
    try:
        body = await request.json() if request.can_read_body or not empty_ok else {}
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def not_an_object() -> web.Response:
    return error(400, "10015", "Bad Request", "The body is not a JSON object.")
