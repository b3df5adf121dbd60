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
