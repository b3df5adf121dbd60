"""The agent websocket protocol's frames: what is accepted, and the error for what is not."""

from __future__ import annotations

import json

import pytest

from console_web.protocol import Disposition, FrameError, Join, Pause, parse


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ({"type": "join", "campaign_id": 3, "id": "c1"}, Join),
        ({"type": "pause"}, Pause),
        ({"type": "disposition", "attempt_id": 9, "code": "qualified", "answers": {"budget": 5000},
          "callback": {"due_at": "2026-11-25T10:00:00+00:00", "personal": False}}, Disposition),
    ],
)  # fmt: skip
def test_frames_accepted(frame: dict[str, object], kind: type) -> None:
    assert isinstance(parse(json.dumps(frame)), kind)


@pytest.mark.parametrize(
    ("text", "code", "message", "frame_id"),
    [
        ("not json", "bad_json", "a frame is a JSON object", None),
        ("[1]", "bad_json", "a frame is a JSON object", None),
        ("[" * 10000 + "]" * 10000, "bad_json", "a frame is a JSON object", None),
        ('{"type": "fly", "id": "x"}', "unknown_type", "unknown frame type 'fly'", "x"),
        ('{"id": "y"}', "bad_frame", "a frame needs a 'type'", "y"),
        ('{"type": "join", "campaign_id": 0, "id": "z"}', "bad_frame", "campaign_id: Input should be greater", "z"),
        ('{"type": "join", "campaign_id": 1, "admin": true}', "bad_frame", "admin: Extra inputs are not permitted",
         None),
        ('{"type": "pause", "reason": "DROP TABLE"}', "bad_frame", "reason: String should match pattern", None),
        ('{"type": "disposition", "attempt_id": 1, "code": "x", "callback": {"due_at": "2026-11-25T10:00:00"}}',
         "bad_frame", "callback.due_at: Value error, give a time zone", None),
        ('{"type": "ready", "pad": "' + "x" * 70_000 + '"}', "too_large", "at most 65536 bytes", None),
        ('{"type": "ready", "pad": "' + "\u00e9" * 33_000 + '"}', "too_large", "at most 65536 bytes", None),
        ('{"type": "hangup", "attempt_id": 100000000000000000000000000}', "bad_frame",
         "attempt_id: Input should be less", None),
        ('{"type": "pause", "id": "a\\u0000b"}', "bad_json", "NUL", None),
        ('{"type": "pause", "id": "a\u0000b"}', "bad_json", "NUL", None),
    ],
)  # fmt: skip
def test_frames_refused(text: str, code: str, message: str, frame_id: str | None) -> None:
    with pytest.raises(FrameError) as refused:
        parse(text)
    assert refused.value.code == code
    assert message in refused.value.message
    assert refused.value.frame() == {"type": "error", "id": frame_id, "code": code, "message": refused.value.message}
