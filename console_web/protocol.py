"""The agent console's websocket protocol, version 1: JSON frames validated with pydantic.

Every frame is an object with a ``type``. A frame from the agent may carry an ``id`` (its own, up to 64
characters): the answer to it (``ack`` or ``error``) repeats it, so a console that reconnects and resends a
frame it had no answer to can match the answer; dispositions are idempotent by call attempt as well, so a
resent disposition is saved once.

Agent -> daemon: ``join`` (a campaign), ``ready``, ``pause`` (a reason code), ``disposition`` (the call
attempt, a disposition code, the form's answers, notes, an optional callback), ``callback`` (schedule one
outside a disposition), ``preview_accept`` / ``preview_skip`` (preview dialling), ``hangup``, ``leave``,
``campaigns`` (those the agent may join now), ``ping``. Daemon -> agent: ``welcome``, ``ack``, ``error``,
``state`` (the agent's state), ``preview``, ``screen_pop``, ``history`` (the contact's earlier calls),
``call`` (the call's state), ``owed``, ``softphone``, ``pong``.

The daemon authenticates the connection before any frame: the JWT goes in the ``Sec-WebSocket-Protocol``
header as ``bearer.<token>`` (browsers cannot set Authorization on a websocket) or in an ``access_token``
query parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from crm import safe_json

VERSION = 1
MAX_FRAME_BYTES = 65_536
CODE = r"^[a-z][a-z0-9_]{0,62}$"
MAX_ID = 2**63 - 1


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = Field(None, max_length=64)


class Join(_Frame):
    type: Literal["join"]
    campaign_id: int = Field(ge=1, le=MAX_ID)


class Ready(_Frame):
    type: Literal["ready"]


class Pause(_Frame):
    type: Literal["pause"]
    reason: str = Field("break", pattern=CODE)


class CallbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    due_at: datetime
    personal: bool = Field(True, description="to this agent; false: to whoever is free")
    notes: str = Field("", max_length=2000)

    @field_validator("due_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give a time zone (e.g. Z or +01:00)")
        return value


class Disposition(_Frame):
    type: Literal["disposition"]
    attempt_id: int = Field(ge=1, le=MAX_ID)
    code: str = Field(pattern=CODE)
    answers: dict[str, Any] = Field(default_factory=dict, max_length=100)
    notes: str = Field("", max_length=5000)
    callback: CallbackRequest | None = None


class Callback(_Frame):
    type: Literal["callback"]
    contact_id: int = Field(ge=1, le=MAX_ID)
    callback: CallbackRequest


class PreviewAccept(_Frame):
    type: Literal["preview_accept"]
    contact_id: int = Field(ge=1, le=MAX_ID)


class PreviewSkip(_Frame):
    type: Literal["preview_skip"]
    contact_id: int = Field(ge=1, le=MAX_ID)
    reason: str = Field("skipped", pattern=CODE)


class Hangup(_Frame):
    type: Literal["hangup"]
    attempt_id: int = Field(ge=1, le=MAX_ID)


class Leave(_Frame):
    type: Literal["leave"]


class Ping(_Frame):
    type: Literal["ping"]


class Campaigns(_Frame):
    type: Literal["campaigns"]


AgentFrame = Annotated[
    Join | Ready | Pause | Disposition | Callback | PreviewAccept | PreviewSkip | Hangup | Leave | Ping | Campaigns,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[AgentFrame] = TypeAdapter(AgentFrame)


class FrameError(ValueError):
    """A frame the daemon refuses: answered with an ``error`` frame, the connection stays open."""

    def __init__(self, code: str, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.frame_id = code, message, frame_id

    def frame(self) -> dict[str, Any]:
        return error(self.code, self.message, self.frame_id)


def parse(text: str | bytes) -> AgentFrame:
    """One frame from the agent, validated; FrameError says what is wrong with it."""
    size = len(text.encode()) if isinstance(text, str) else len(text)
    if size > MAX_FRAME_BYTES:
        raise FrameError("too_large", f"a frame is at most {MAX_FRAME_BYTES} bytes")
    decoded = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if "\x00" in decoded or "\\u0000" in decoded:  # raw or escaped: PostgreSQL text cannot hold NUL
        raise FrameError("bad_json", "a frame may not contain NUL characters")
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
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "union_tag_not_found":
            raise FrameError("bad_frame", "a frame needs a 'type'", frame_id) from None
        if first["type"] == "union_tag_invalid" or where == "":
            raise FrameError("unknown_type", f"unknown frame type {raw.get('type')!r}", frame_id) from None
        where = where.split(".", 1)[1] if "." in where else where
        raise FrameError("bad_frame", f"{where}: {first['msg']}", frame_id) from None


# -- daemon -> agent ------------------------------------------------------------------------------------------------


def welcome(user_id: int, campaigns: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "welcome", "version": VERSION, "user_id": user_id, "campaigns": campaigns}


def ack(frame_id: str | None, **extra: Any) -> dict[str, Any]:
    return {"type": "ack", "id": frame_id, **extra}


def error(code: str, message: str, frame_id: str | None = None) -> dict[str, Any]:
    return {"type": "error", "id": frame_id, "code": code, "message": message}


def state(value: str, since: datetime, reason: str | None, campaign_id: int | None) -> dict[str, Any]:
    return {"type": "state", "state": value, "since": since.isoformat(), "reason": reason,
            "campaign_id": campaign_id, "owes_disposition": False, "pending_pause": None}  # fmt: skip
