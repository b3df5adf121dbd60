"""The supervisor dashboard's websocket protocol, version 1: JSON frames, validated with pydantic.

Daemon -> dashboard: ``snapshot`` (on connect: every agent, every campaign, the shift's chart series),
``agents`` (the agents that changed since the last frame, and those who left), ``campaigns`` (every campaign's
figures, once a second, with any new chart points), ``ack``, ``error``, ``pong``. Dashboard -> daemon:
``force_pause`` (an agent, a reason), ``force_logout`` (an agent), ``ping``. Times are epoch milliseconds.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from console_web.protocol import CODE, MAX_ID, FrameError
from crm import safe_json

VERSION = 1
MAX_FRAME_BYTES = 4096


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = Field(None, max_length=64)


class ForcePause(_Frame):
    type: Literal["force_pause"]
    user_id: int = Field(ge=1, le=MAX_ID)
    reason: str = Field("supervisor", pattern=CODE)


class ForceLogout(_Frame):
    type: Literal["force_logout"]
    user_id: int = Field(ge=1, le=MAX_ID)


class Ping(_Frame):
    type: Literal["ping"]


SupervisorFrame = Annotated[ForcePause | ForceLogout | Ping, Field(discriminator="type")]
_ADAPTER: TypeAdapter[SupervisorFrame] = TypeAdapter(SupervisorFrame)


def parse(text: str | bytes) -> SupervisorFrame:
    """One frame from a dashboard, validated; FrameError says what is wrong with it."""
    if len(text) > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"a frame is at most {MAX_FRAME_BYTES} bytes")
    try:
        raw = safe_json.loads(text)
    except ValueError:
        raise FrameError("bad_json", "a frame is a JSON object") from None
    if not isinstance(raw, dict):
        raise FrameError("bad_json", "a frame is a JSON object")
    frame_id = raw.get("id") if isinstance(raw.get("id"), str) and len(raw["id"]) <= 64 else None
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "union_tag_not_found":
            raise FrameError("bad_frame", "a frame needs a 'type'", frame_id) from None
        if first["type"] == "union_tag_invalid":
            raise FrameError("unknown_type", f"unknown frame type {raw.get('type')!r}", frame_id) from None
        where = ".".join(str(part) for part in first["loc"][1:])
        raise FrameError("bad_frame", f"{where}: {first['msg']}", frame_id) from None


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))
